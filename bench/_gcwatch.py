"""Run ``cronwarden`` with the garbage collector's pauses logged (a diagnostic).

``python bench/_gcwatch.py serve --config FILE`` is ``python -m cronwarden
serve --config FILE`` plus one stderr line per collection that took over
1 ms: ``GCPAUSE gen=G ms=M at=EPOCH``. Only a ``gc.callbacks`` hook is added;
the daemon's code is unchanged. Used by startup.py and lateness.py --gc-log.
"""

from __future__ import annotations

import gc
import sys
import time

_started = [0.0]


def _watch(phase: str, info: dict) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _started[0]) * 1000
    if ms >= 1.0:
        print(f"GCPAUSE gen={info['generation']} ms={ms:.1f} at={time.time():.3f}", file=sys.stderr, flush=True)


gc.callbacks.append(_watch)

from cronwarden.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
