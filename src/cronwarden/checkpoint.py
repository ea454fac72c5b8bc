"""Monitor states written behind routine pings, and put back after a crash.

A routine ping (one that raises nothing and notes nothing: nearly all of them) changes
its monitor's state in memory, and its ping row (and run row) is committed before it
is answered, as every ping's is; but its monitor's state row is not rewritten then.
That row, the state as JSON upserted by name, was a fifth of the daemon's own work per
ping (`bench/README.md`). A checkpoint writes the rows of every monitor changed that way
since the last one, then moves the mark. Every other change of a state (an alert, a
note, a person's action, a Tick) writes its row in the transaction of the change, as
before.

The mark (the meta key ``state_mark``) is a ping id: every ping up to it is in its
monitor's stored state. A row written past the mark also holds ``ping_id``, the last
ping folded into that state. Start-up puts back the pings past the mark that their
monitor's row does not hold, through the same state machine (after a crash: a clean
stop checkpoints), and checkpoints at once. A checkpoint runs every CHECKPOINT_SECONDS,
after CHECKPOINT_PINGS pings, before a retention pass and when the daemon stops, so a
crash leaves at most about twice that many pings to put back (a monitor held mid-commit
during a checkpoint keeps the mark at its first ping not written). Schema 4's migration sets the
mark at the last ping of a database from before (each of its rows held every ping).

Put back after a crash, a ping is stepped with the config of the new start (a config
changed meanwhile applies to it), and only its state counts: what it raised was decided
when it came (an alert wrote the row). A monitor removed and back in the config is new
again: its older pings are not put back into it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable

from . import fastjson, monitor, transitions
from .store import Statement, StoreError

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("cronwarden")

MARK = "state_mark"
CHECKPOINT_SECONDS = 60.0
# Under sustained load a checkpoint writes a row per monitor pinged since the last one:
# ~150 ms of the one core for 10,000 monitors, ~3 us per ping when it came every 50,000
# pings, half that now. A crash leaves up to about two checkpoints' pings to put back at
# start-up, ~12 us each (50,000 took 0.6 s at 10,000 monitors, bench/README.md): up to
# ~2.4 s after a crash at full load (~1.2 s with 50,000).
CHECKPOINT_PINGS = 100_000
CHUNK = 500  # rows per transaction of a checkpoint: the pings between wait ~10 ms at most, not ~100


async def load_mark(daemon: "Daemon") -> None:
    """Start-up: the mark and the last ping id from the database (before recover())."""
    row = await daemon.store.fetchone("SELECT COALESCE(MAX(id), 0) FROM pings")
    daemon.last_ping_id = int(row[0]) if row else 0
    row = await daemon.store.fetchone("SELECT value FROM meta WHERE key = ?", (MARK,))
    daemon.mark = int(row[0]) if row else None


def mark_statement(mark: int) -> Statement:
    return ("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (MARK, mark))


def replay(daemon: "Daemon", pings: Iterable[tuple], stored: dict[str, tuple[str, float | None]]) -> int:
    """Fold into daemon.states the `pings` (id, monitor, at, kind, exit_status, rid), in
    id order, that their monitor's stored row (`stored`: load_monitors()) does not hold;
    the monitors changed are left unsaved. Returns how many were folded in. What a ping
    raised when it came was decided then (an alert wrote its row): here only its state
    counts."""
    held: dict[str, float] = {}  # monitor -> the last ping id its stored row holds
    folded = 0
    for ping_id, name, at, kind, exit_status, rid in pings:
        state = daemon.states.get(name)
        if state is None:
            continue  # removed from the config
        have = held.get(name)
        if have is None:
            row = stored.get(name)
            if row is not None and row[1] is not None:
                # Removed, and back in the config (new again): its pings are of its old self.
                have = held[name] = float("inf")
            else:
                have = held[name] = (fastjson.loads_own(row[0]).get("ping_id", 0) or 0) if row else 0
        if ping_id <= have:
            continue
        event = monitor.ping_event(monitor.PingKind(kind), rid, exit_status, None)
        try:
            decision = transitions.step(daemon.config.monitors[name], state, event,
                                        datetime.fromtimestamp(at, timezone.utc))
        except monitor.IllegalEvent:
            continue
        daemon.states[name] = decision.state
        daemon.ping_ids[name] = held[name] = ping_id
        daemon._leave_unsaved(name, ping_id)
        folded += 1
    return folded


async def pings_past(daemon: "Daemon", mark: int, names: set[str] | None = None) -> list[tuple]:
    """The pings past `mark` (of `names` only, if given: through the index by monitor, not
    every ping past the mark), in id order, as replay() takes them."""
    columns = "SELECT id, monitor, at, kind, exit_status, rid FROM pings"
    if names is None:
        return await daemon.store.fetchall(f"{columns} WHERE id > ? ORDER BY id", (mark,), tuples=True)
    rows: list[tuple] = []
    for name in sorted(names):
        rows += await daemon.store.fetchall(f"{columns} WHERE monitor = ? AND id > ?", (name, mark), tuples=True)
    return sorted(rows)


def rows_of_unsaved(daemon: "Daemon", names: Iterable[str]) -> list[Statement]:
    """The state rows of `names` as they are in memory."""
    states = daemon.states
    return [daemon.state_row(name, states[name]) for name in names if name in states]


async def checkpoint(daemon: "Daemon") -> None:
    """Write the rows of the unsaved monitors, then move the mark to the last ping id
    handed out before them. A monitor between its plan and its commit waits for the next
    checkpoint (its row must not get ahead of a change that may yet fail), and keeps the
    mark below its first ping not written. Checkpoints run one at a time (the loop's,
    retention's and stop()'s): one that moved the mark while another still had rows to
    write would move it past them."""
    async with daemon.checkpoint_lock:
        await _checkpoint(daemon)


async def _checkpoint(daemon: "Daemon") -> None:
    unsaved = daemon.unsaved
    inflight = daemon._inflight
    last = daemon.last_ping_id
    names = sorted(name for name in unsaved if name not in inflight)
    daemon.unsaved = {name: first for name, first in unsaved.items() if name in inflight}

    def keep(name: str) -> None:  # unsaved again, from its first ping not written
        daemon.unsaved[name] = min(unsaved[name], daemon.unsaved.get(name, unsaved[name]))

    try:
        for start in range(0, len(names), CHUNK):
            chunk = []
            for name in names[start:start + CHUNK]:
                if name in inflight:  # held since the checkpoint began: its state may not be committed
                    keep(name)
                else:
                    chunk.append(name)
            await daemon.store.write(rows_of_unsaved(daemon, chunk))
        # Every ping up to `last` is in a row written, or of a monitor still unsaved.
        new_mark = min([last, *(first - 1 for first in daemon.unsaved.values())])
        await daemon.store.write([mark_statement(new_mark)])
    except BaseException:  # StoreError, or cancelled (stop() cancels the task that runs it)
        for name in names:
            keep(name)
        raise
    finally:
        # Monitors kept for the next checkpoint: the loop may have found `unsaved` empty
        # meanwhile (a checkpoint of retention or stop() empties it first) and be waiting.
        if daemon.unsaved:
            daemon.unsaved_wake.set()
    daemon.mark = new_mark
    for name in [name for name, ping_id in daemon.ping_ids.items() if ping_id <= new_mark]:
        del daemon.ping_ids[name]


async def checkpoint_loop(daemon: "Daemon") -> None:
    """Checkpoint every CHECKPOINT_SECONDS, or sooner after CHECKPOINT_PINGS pings since
    the last one. (Counted from the last checkpoint, not from the mark: a monitor held
    during a checkpoint keeps the mark up to one checkpoint behind, and counting from it
    would checkpoint again a second later, before monitors are pinged twice.) With no
    monitor unsaved it waits for one (daemon.unsaved_wake) instead of looking every second:
    an idle daemon wakes only for its deadlines."""
    last, last_id = time.monotonic(), daemon.last_ping_id
    while True:
        if not daemon.unsaved:
            daemon.unsaved_wake.clear()
            await daemon.unsaved_wake.wait()
            # counted from the first ping not written (more may have come before this ran)
            last, last_id = time.monotonic(), min(daemon.unsaved.values(), default=daemon.last_ping_id + 1) - 1
        await asyncio.sleep(1.0)
        if not daemon.unsaved:
            continue
        if time.monotonic() - last >= CHECKPOINT_SECONDS or daemon.last_ping_id - last_id >= CHECKPOINT_PINGS:
            last_id = daemon.last_ping_id
            try:
                await checkpoint(daemon)
            except StoreError as exc:
                log.error("checkpoint of monitor states failed (retried): %s", exc)
            last = time.monotonic()
