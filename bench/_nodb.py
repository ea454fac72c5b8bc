"""Run ``cronwarden`` with pings answered without their commit (a diagnostic: the floor).

``python bench/_nodb.py serve --config FILE`` is ``python -m cronwarden serve
--config FILE``, except that a write starting with a ping's row resolves at once
and is never stored: the ping goes through the same HTTP path, the state
machine, the wheel and the statements, and only the group commit (SQLite, its
thread, the fsync) is left out. What it serves per second is the ceiling for
durable pings with this Python path; ping_throughput.py --floor runs it next
to the daemon and the bare server. A checkpoint's rows (routine pings' states,
cronwarden.checkpoint) are built as in the daemon and not stored either. Other writes
(start-up, Ticks, actions) are committed as usual; the alert rows of a ping
are skipped with it (at 10,000 monitors the benchmark's pings raise none; its
smoke run's tiny runs raise some "slow" alerts). Never a way to run
cronwarden: an acknowledged ping here is not stored.
"""

from __future__ import annotations

import asyncio
import sys

from cronwarden import store

_write = store.Store.write


_STATE_ROW = store.upsert_monitor("m", 0.0, "{}")[0]


def _write_unless_ping(self: store.Store, statements: list, **options: bool) -> "asyncio.Future[int]":
    if statements and (statements[0][0].startswith("INSERT INTO pings ")
                       or all(sql == _STATE_ROW for sql, _ in statements)):
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done.set_result(0)
        return done
    return _write(self, statements, **options)


store.Store.write = _write_unless_ping  # type: ignore[method-assign]

from cronwarden.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
