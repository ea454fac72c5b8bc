"""SIGHUP: re-read the config, and apply it or refuse it whole.

Reloads run one at a time (a storm of signals queues up on a lock, and the
last one reads the final file), and a file that is still changing (an editor
mid-write) is read again until two reads agree. A bad file is refused with
its problems logged, and so is one that would leave the API without a token
on a non-loopback address; the running config then stays in force. What a
reload cannot change (the listen address, the database) keeps its old value
until a restart. Monitors that stay keep their state and history; removed
ones keep their history and stop alerting; pending alerts of removed
channels are given up.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import delivery
from . import store as sql
from .adopt import Adopter
from .config import Config, ConfigError, ServerConfig, parse_config
from .store import Statement

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("cronwarden")

SETTLE_READS = 20  # reads 50 ms apart before a file still changing is refused


async def reload_from(daemon: "Daemon", path: str | None) -> bool:
    async with daemon.reload_lock:
        daemon.notifier.reloading()  # systemd: RELOADING=1 ... READY=1, so `systemctl reload` waits
        ok = False
        try:
            ok = await _reload(daemon, path or str(daemon.config.path))
        finally:
            daemon.notifier.ready(f"{daemon.status_line()}; configuration reloaded" if ok else
                                  f"{daemon.status_line()}; reload refused (see the log), the previous "
                                  f"configuration stays in force")
        return ok


async def _reload(daemon: "Daemon", path: str) -> bool:
    try:
        text = await settled_text(path)
        # 100,000 monitors take seconds to parse: off the event loop, so pings are answered
        # meanwhile. The cyclic GC stays off while the parse creates its millions of objects
        # (it would stop everything to scan them again and again), as at start-up.
        collecting = gc.isenabled()
        gc.disable()
        try:
            new = await asyncio.to_thread(parse_config, text, Path(path))
        finally:
            if collecting:
                gc.enable()
        if not daemon.config.server.is_loopback and not new.server.api_token():
            raise ConfigError([f"{path}:1:1: refusing a config that leaves the API without a token while "
                               f"listening on {daemon.config.server.host}: set server.api_token_env and "
                               f"that environment variable"])
    except ConfigError as exc:
        daemon.stats.reload_errors += 1
        for problem in exc.problems:
            log.error("%s", problem)
        log.error("reload refused: %d problem(s) in %s; the running config stays in force",
                  len(exc.problems), path)
        return False
    await apply_config(daemon, new)
    if gc.isenabled():
        gc.freeze()  # the new config lives until the next reload: full collections skip it
    return True


async def settled_text(path: str, attempts: int = SETTLE_READS) -> str:
    """The file's text once two reads 50 ms apart agree (an editor may be mid-write)."""
    try:
        text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
        for _ in range(attempts):
            await asyncio.sleep(0.05)
            again = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
            if again == text:
                return text
            text = again
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}:1:1: cannot read the file: {exc}"]) from None
    raise ConfigError([f"{path}:1:1: the file kept changing while it was read; send SIGHUP again"])


async def apply_config(daemon: "Daemon", new: Config) -> None:
    old = daemon.config
    for key in ("host", "port", "database"):
        if getattr(old.server, key) != getattr(new.server, key):
            log.warning("server.%s changed: restart the daemon for it to take effect", key)
    new = replace(new, server=_keep_bind(old.server, new.server))
    now = daemon.clock.now()
    statements: list[Statement] = []
    for name in list(daemon.states):
        if name not in new.monitors:
            del daemon.states[name]
            daemon.history.pop(name, None)
            daemon.wheel.cancel(name)
            statements.append(sql.mark_removed(name, now.timestamp()))
            daemon.unsaved.pop(name, None)  # its pings past the mark are of a monitor gone
            daemon.ping_ids.pop(name, None)
    added = [name for name in new.monitors if name not in daemon.states]
    stored = await daemon.store.load_monitors(added)
    daemon.states.update(Adopter(now, statements).adopt_all(added, stored))
    for name in added:
        if name in stored and stored[name][1] is not None:
            # Back, new again: its row holds every ping so far (those of its old self are
            # not put back into the new state after a crash).
            daemon.ping_ids[name] = daemon.last_ping_id
            statements.append(daemon.state_row(name, daemon.states[name]))
    del stored
    old_windows = daemon.windows
    daemon.adopt_config(new)
    await daemon.store.write(statements)
    # A deadline depends on the monitor's config, its state and its maintenance windows:
    # only monitors where one of those changed are scheduled again.
    windows_changed = {name for name in old_windows.keys() | daemon.windows.keys()
                       if old_windows.get(name) != daemon.windows.get(name)}
    for name in daemon.states:
        if name in windows_changed or old.monitors.get(name) != new.monitors[name]:
            daemon._schedule(name)
    removed_channels = [name for name in old.channels if name not in new.channels]
    removed_workers = daemon._sync_workers()
    daemon.stats.reloads += 1
    log.info("configuration reloaded: %d monitors, %d channels", len(new.monitors), len(new.channels))
    # Removed channels: their workers finish the requests under way (answered and
    # recorded), then their pending rows are given up. Alerts planned under the old config
    # are committed by now (the writer takes writes in order) and none planned since goes
    # to a removed channel, so every such row is there to be given up, and no attempt is
    # recorded after the give-up. (Given up before the new config was in force, a ping
    # planned meanwhile left its row pending for ever.)
    await asyncio.gather(*(delivery.finish(*entry) for entry in removed_workers))
    if removed_channels:
        given_up = await daemon.store.give_up_channels(removed_channels, now.timestamp())
        if given_up:
            log.warning("%d pending alert(s) for removed channel(s) %s were given up", given_up,
                        ", ".join(removed_channels))


def _keep_bind(old: ServerConfig, new: ServerConfig) -> ServerConfig:
    """Listen address and database cannot change without a restart."""
    return replace(new, host=old.host, port=old.port, database=old.database)
