"""What start-up leaves the garbage collector with when it had it off (as `serve` does)."""

from __future__ import annotations

import gc
from pathlib import Path

from cronwarden.config import parse_config
from cronwarden.daemon import GC_THRESHOLDS, Daemon


async def test_serving_freezes_what_start_up_built_and_collects_less_often(tmp_path: Path) -> None:
    config = parse_config("server: {listen: '127.0.0.1:0', database: cw.db}\nmonitors: {a: {every: 1h}}\n",
                          tmp_path / "c.yaml")
    thresholds = gc.get_threshold()
    daemon = Daemon(config)
    gc.disable()  # as `cronwarden serve` does while it reads the config
    try:
        await daemon.start()
        assert gc.isenabled() and gc.get_threshold() == GC_THRESHOLDS == (5000, 10, 100)
        assert gc.get_freeze_count() > 0
    finally:
        await daemon.stop()
        gc.enable()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
