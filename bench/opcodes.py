#!/usr/bin/env python3
"""Python opcodes per ping, by function: where the interpreter's work on a ping goes.

Runs what ``instructions.py`` counts (``_instr_harness.py``: the server and 20 clients
in one process; keep-alive, a new connection per ping, or ``direct`` calls of
``Daemon.ping``) with ``sys.settrace`` counting every opcode executed, per function,
over ``--count`` pings per client after a warm-up. The counts are exact and the same
from run to run (the group commits falling differently aside), so a change of a few
opcodes per ping shows; they weigh every opcode alike, so read them next to
``instructions.py``. The clients' own functions are in the totals (listed too).
Tracing makes the run ~20x slower; nothing here is timed.

    python bench/opcodes.py                                  # daemon and bare, keep-alive
    python bench/opcodes.py --servers daemon --modes direct --top 40 --src /tmp/snap
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import _instr_harness as h  # noqa: E402


def where(frame: FrameType) -> str:
    code = frame.f_code
    if code.co_filename == "<string>" and "self" in frame.f_locals:  # a generated method: whose?
        return f"{type(frame.f_locals['self']).__qualname__}.{code.co_name} (generated)"
    return f"{code.co_qualname} ({'/'.join(code.co_filename.split('/')[-2:])}:{code.co_firstlineno})"


async def traced(directory: Path, count: int, mode: str, server: str) -> tuple[Counter[str], Counter[str], int]:
    """Opcodes and calls per function over `count` pings per client, after the warm-up."""
    port, stop, daemon = await (h.serve_daemon(directory) if server == "daemon" else h.serve_bare())
    paths = h.client_paths()
    if mode == "direct":
        def send(n: int, offset: int) -> list[Any]:
            return [h.call_daemon(daemon, p, n, offset) for p in paths]
    else:
        def send(n: int, offset: int) -> list[Any]:
            return [h.client(port, p, n, offset, mode == "close") for p in paths]
    await asyncio.gather(*send(h.WARM_UP, 0))
    ops: Counter[str] = Counter()
    calls: Counter[str] = Counter()

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        key = where(frame)
        calls[key] += 1
        frame.f_trace_opcodes = True

        def local(frame: FrameType, event: str, arg: object) -> Any:
            if event == "opcode":
                ops[key] += 1
            return local
        return local

    sys.settrace(tracer)
    try:
        await asyncio.gather(*send(count, h.WARM_UP))
    finally:
        sys.settrace(None)
    await stop()  # type: ignore[operator]
    return ops, calls, count * len(paths)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="daemon,bare", help="comma list of daemon, bare")
    ap.add_argument("--modes", default="keepalive", help="comma list of keepalive, close, direct (daemon only)")
    ap.add_argument("--count", type=int, default=100, help="traced pings per client (20 clients)")
    ap.add_argument("--top", type=int, default=25, help="functions listed per cell")
    c.add_run_options(ap)
    args = ap.parse_args()
    print(c.machine_line())
    print("measuring", c.use_source(args.src))
    sys.path.insert(0, str(c.SOURCE or c.REPO / "src"))
    c.time_limit(args.max_seconds or 120 + 2 * args.count)
    workdir = Path(tempfile.mkdtemp(prefix="cw-opcodes-", dir=args.dir))
    try:
        for mode in [m for m in args.modes.split(",") if m]:
            for server in [s for s in args.servers.split(",") if s]:
                if mode == "direct" and server != "daemon":
                    continue
                ops, calls, pings = h.run(traced(workdir, args.count, mode, server))
                print(f"\n{mode} {server}: {sum(ops.values()) / pings:,.0f} opcodes per ping "
                      f"(all Python, the clients' included; {pings:,} pings traced)")
                rows = [[f"{n / pings:,.1f}", f"{calls[key] / pings:.2f}", key[:100]]
                        for key, n in ops.most_common(args.top)]
                print(c.table(["opcodes/ping", "calls/ping", "function"], rows))
    finally:
        c.finish([], workdir, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
