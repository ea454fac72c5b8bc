#!/usr/bin/env python3
"""Timer wheel costs: schedule, reschedule, cancel and fire per timer at
1,000, 100,000 and 1,000,000 timers. The cost per operation must not grow
with the number of timers.

    python bench/wheel.py [--sizes 1000,100000,1000000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cronwarden.wheel import TimerWheel  # noqa: E402

from _common import machine_line, table  # noqa: E402


def measure(n: int, rng: random.Random) -> list[object]:
    now = 1_800_000_000.0
    # Deadlines spread over a day, as 100,000 monitors' are.
    deadlines = [now + rng.uniform(0, 86400) for _ in range(n)]
    wheel = TimerWheel()
    t0 = time.perf_counter()
    for key, when in enumerate(deadlines):
        wheel.schedule(key, when)
    t1 = time.perf_counter()
    for key in range(n):  # a ping moves each deadline later
        wheel.schedule(key, deadlines[key] + 3600)
    t2 = time.perf_counter()
    for key in range(0, n, 2):
        wheel.cancel(key)
    t3 = time.perf_counter()
    fired = 0
    horizon = now + 2 * 86400
    step = 86400 * 2 / 2000
    t = now
    while t < horizon:  # 2,000 timer wake-ups over two days
        t += step
        fired += len(wheel.pop_due(t))
    t4 = time.perf_counter()
    ns = 1e9
    return [f"{n:,}", f"{(t1 - t0) / n * ns:.0f}", f"{(t2 - t1) / n * ns:.0f}", f"{(t3 - t2) / (n / 2) * ns:.0f}",
            f"{(t4 - t3) / max(1, fired) * ns:.0f}", f"{fired:,}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    args = parser.parse_args()
    print(machine_line())
    rng = random.Random(7)
    rows = [measure(int(n), rng) for n in args.sizes.split(",")]
    print(table(["timers", "schedule ns", "reschedule ns", "cancel ns", "fire ns/timer", "fired"], rows))


if __name__ == "__main__":
    main()
