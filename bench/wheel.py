#!/usr/bin/env python3
"""Timer wheel costs: schedule, reschedule, cancel and fire per timer at
1,000, 100,000 and 1,000,000 timers. The cost per operation must not grow
with the number of timers.

Deadlines are spread over a day; each is then moved an hour later (a ping),
half are cancelled, and the rest fired by 2,000 wake-ups spread over two days.
"fire ns/timer" is the whole time of those wake-ups, the ones that found
nothing due included, divided by the timers fired; "wake-up us" is the same
time per wake-up. "next_time ns" is one next_time() call (the daemon asks
once per wake-up) on the wheel as it stands before the wake-ups. All figures
are CPU time of this process (time.process_time), so other work on the
machine inflates them less than it would wall-clock time.

    python bench/wheel.py [--sizes 1000,100000,1000000] [--src DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import machine_line, table, use_source  # noqa: E402

WAKE_UPS = 2000


def measure(n: int, rng: random.Random) -> list[object]:
    from cronwarden.wheel import TimerWheel

    clock = time.process_time
    now = 1_800_000_000.0
    # Deadlines spread over a day, as 100,000 monitors' are.
    deadlines = [now + rng.uniform(0, 86400) for _ in range(n)]
    wheel = TimerWheel()
    wheel.pop_due(now)  # the daemon's timer task looks once at start-up, before any ping
    t0 = clock()
    for key, when in enumerate(deadlines):
        wheel.schedule(key, when)
    t1 = clock()
    for key in range(n):  # a ping moves each deadline later
        wheel.schedule(key, deadlines[key] + 3600)
    t2 = clock()
    for key in range(0, n, 2):
        wheel.cancel(key)
    t3 = clock()
    wheel.next_time()
    t4 = clock()
    for _ in range(WAKE_UPS):
        wheel.next_time()
    t5 = clock()
    fired = 0
    step = 86400 * 2 / WAKE_UPS
    t = now
    for _ in range(WAKE_UPS):  # wake-ups over two days
        t += step
        fired += len(wheel.pop_due(t))
    t6 = clock()
    ns = 1e9
    return [f"{n:,}", f"{(t1 - t0) / n * ns:.0f}", f"{(t2 - t1) / n * ns:.0f}", f"{(t3 - t2) / (n / 2) * ns:.0f}",
            f"{(t6 - t5) / max(1, fired) * ns:.0f}", f"{(t6 - t5) / WAKE_UPS * 1e6:.1f}",
            f"{(t5 - t4) / WAKE_UPS * ns:.0f}", f"{fired:,}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--src", help="cronwarden source tree to measure instead of this repository's "
                        "(e.g. from `git archive HEAD src | tar -x -C DIR`)")
    args = parser.parse_args()
    print(machine_line())
    print("measuring", use_source(args.src))
    if args.src:
        from _common import SOURCE  # set by use_source
        sys.path.insert(0, str(SOURCE))
    rng = random.Random(7)
    rows = [measure(int(n), rng) for n in args.sizes.split(",")]
    print(table(["timers", "schedule ns", "reschedule ns", "cancel ns", "fire ns/timer", "wake-up us",
                 "next_time ns", "fired"], rows))


if __name__ == "__main__":
    main()
