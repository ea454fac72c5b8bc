"""Hostile and broken HTTP input: each gets a clear status and the daemon is unharmed."""

from __future__ import annotations

import asyncio
import os

from conftest import DaemonFactory, DaemonProcess, Receiver
from test_daemon_e2e import config

SECRETS = {"CW_API_TOKEN": "tok-5f3e9a1c", "CW_HOOK_SECRET": "hook-8b2d7e4f", "CW_SMTP_PASS": "smtp-1a9c3b7d"}


async def raw(d: DaemonProcess, data: bytes, read: bool = True) -> bytes:
    host, port = d.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10) if read else b""
    writer.close()
    return answer


async def test_broken_requests_get_a_4xx_and_the_daemon_keeps_serving(daemon: DaemonFactory,
                                                                      receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  job: {every: 1h}"))
    assert (await raw(d, b"GET /ping/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")).startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))
    assert (await raw(d, b"GET /ping/job HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
            ).startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))
    many = b"".join(b"X-%d: y\r\n" % i for i in range(500))
    assert (await raw(d, b"GET /ping/job HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")).startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))
    assert (await raw(d, b"BREW /ping/job HTTP/1.1\r\nHost: x\r\n\r\n")).startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))
    assert (await raw(d, b"PATCH /ping/job HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 405")
    assert (await raw(d, b"\x16\x03\x01garbage\r\n\r\n")).startswith((b"HTTP/1.1 400", b"HTTP/1.0 400"))
    status, _ = await d.request("GET", "/nowhere")
    assert status == 404
    status, _ = await d.request("DELETE", "/api/v1/monitors")
    assert status == 405
    # Invalid UTF-8 in a body is kept as output, not refused.
    assert await d.ping("job", method="POST", data=b"\xff\xfe\x00 broken \xc3") == (200, "OK")
    assert "broken" in (await d.api("monitors/job"))["runs"][0]["output"]
    assert await d.ping("job") == (200, "OK")


async def test_a_huge_body_is_truncated_by_its_tail_without_being_buffered_whole(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  job: {every: 1h}", server="  max_body: 4KiB"))

    async def body():  # type: ignore[no-untyped-def]
        for _ in range(200):  # 50 MiB, streamed
            yield os.urandom(128 * 1024).hex().encode()[:262144]
        yield b"THE END"

    assert await d.ping("job", method="POST", data=body()) == (200, "OK")
    output = (await d.api("monitors/job"))["runs"][0]["output"]
    assert len(output) == 4096 and output.endswith("THE END")


async def test_thousands_of_idle_and_slow_connections_do_not_stop_pings(daemon: DaemonFactory,
                                                                         receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  job: {every: 1h}"))
    host, port = d.url.removeprefix("http://").split(":")
    idle = []
    for _ in range(2000):
        idle.append(await asyncio.open_connection(host, int(port)))
    slow_reader, slow = await asyncio.open_connection(host, int(port))
    slow.write(b"GET /ping/job HTTP/1.1\r\nHo")  # a client that stalls mid-headers
    await slow.drain()
    try:
        for _ in range(20):
            assert await d.ping("job") == (200, "OK")
        status, _ = await d.request("GET", "/healthz")
        assert status == 200
    finally:
        for _, writer in idle:
            writer.close()
        slow.close()


async def test_no_secret_appears_in_logs_api_dashboard_or_alerts(daemon: DaemonFactory,
                                                                 receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  job: {every: 1h}", server="  api_token_env: CW_API_TOKEN",
                            extra_channels="  mail: {type: email, to: [ops@example.com], from: cw@example.com, "
                                           "smtp: {host: 127.0.0.1, port: 9, username: u, "
                                           "password_env: CW_SMTP_PASS}, timeout: 1s}\n"
                                           f"  signed: {{type: webhook, url: '{receiver.url}', "
                                           "secret_env: CW_HOOK_SECRET}"),
                     env=SECRETS)
    d.config_path.write_text(d.config_path.read_text().replace("  job: {every: 1h}",
                                                               "  job: {every: 1h, channels: [hook, mail, signed]}"))
    import signal
    d.signal(signal.SIGHUP)
    await d.wait_for_log("configuration reloaded")
    await d.ping("job/fail", method="POST", data=b"output")
    await receiver.wait_for(lambda b: b["event"] == "failed")
    await d.wait_for_log("alert .* to channel mail failed")
    auth = {"Authorization": f"Bearer {SECRETS['CW_API_TOKEN']}"}
    seen = []
    for path in ("/api/v1/monitors/job", "/api/v1/incidents/1", "/api/v1/openapi.json", "/metrics", "/healthz"):
        seen.append((await d.request("GET", path, headers=auth))[1])
    seen.append((await d.request("GET", "/monitors/job", cookies={"cronwarden_token": SECRETS["CW_API_TOKEN"]}))[1])
    seen += [str(g.body) + str(g.headers) for g in receiver.got]
    seen += d.lines
    everything = "\n".join(seen)
    for name, value in SECRETS.items():
        assert value not in everything, name


async def test_another_sites_page_cannot_post_to_the_api_or_the_dashboard(daemon: DaemonFactory,
                                                                          receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  job: {every: 1h}"))
    for path in ("/api/v1/monitors/job/pause", "/monitors/job/pause"):
        status, _ = await d.request("POST", path, data=b'{"for": "1h"}',
                                    headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
        assert status == 403, path
        status, _ = await d.request("POST", path, headers={"Sec-Fetch-Site": "cross-site"})
        assert status == 403, path
    assert (await d.api("monitors/job"))["status"] != "paused"
    status, _ = await d.request("POST", "/api/v1/monitors/job/pause", json={"for": "1h"})  # the CLI's way
    assert status == 200


async def test_a_remote_client_past_rate_limit_gets_429_with_retry_after_and_nothing_recorded(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Pings from one non-loopback address beyond server.rate_burst, faster than
    server.rate_limit, are answered 429 with Retry-After and a one-line reason, and
    are not recorded; other addresses and the box's own jobs go on. (Tests talk only
    to 127.0.0.1, which is never limited: the server in front of the daemon's ping
    handler gives each request the remote address the test names.)"""
    import aiohttp
    from aiohttp import web

    from conftest import local_app
    from cronwarden.config import parse_config
    from cronwarden.daemon import Daemon
    from cronwarden.http import answer_ping

    d = Daemon(parse_config("server: {listen: '127.0.0.1:0', database: cw.db, rate_limit: 1, rate_burst: 3}\n"
                            "monitors: {job: {every: 1h}}\n", tmp_path / "c.yaml"))
    await d.start()

    async def as_remote(request: web.Request) -> web.StreamResponse:
        return await answer_ping(d, request.clone(remote=request.query["from"]), request.match_info["tail"])

    app = web.Application()
    app.router.add_get("/ping/{tail:.*}", as_remote)
    try:
        async with local_app(app) as port, aiohttp.ClientSession() as session:
            async def ping(remote: str) -> tuple[int, str, str | None]:
                async with session.get(f"http://127.0.0.1:{port}/ping/job", params={"from": remote}) as resp:
                    return resp.status, await resp.text(), resp.headers.get("Retry-After")

            assert [await ping("192.0.2.7") for _ in range(3)] == [(200, "OK", None)] * 3
            status, text, retry_after = await ping("192.0.2.7")
            assert status == 429 and retry_after is not None and int(retry_after) >= 1
            assert text == "too many pings from 192.0.2.7: at most 1/s (server.rate_limit)\n"
            assert (await ping("192.0.2.8"))[0] == 200 and (await ping("127.0.0.1"))[0] == 200
            assert await d.store.ping_count("job") == 5
    finally:
        await d.stop()


async def test_a_ping_that_fails_unexpectedly_gets_500_and_the_next_ping_is_answered(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A fault inside the ping path (here: Daemon.ping raising) is answered 500 with a
    one-line reason, on the fast path and through the route alike, and the daemon goes
    on answering pings."""
    import aiohttp

    from cronwarden.config import parse_config
    from cronwarden.daemon import Daemon

    d = Daemon(parse_config("server: {listen: '127.0.0.1:0', database: cw.db}\n"
                            "monitors: {job: {every: 1h}, boom: {every: 1h}}\n", tmp_path / "c.yaml"))
    await d.start()
    real_ping = d.ping

    async def faulty(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "boom":
            raise RuntimeError("a bug")
        return await real_ping(name, *args, **kwargs)

    d.ping = faulty  # type: ignore[method-assign]
    assert d.bound is not None
    url = f"http://127.0.0.1:{d.bound[1]}/ping"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/boom") as resp:  # the fast path
                assert (resp.status, await resp.text()) == (500, "internal error; see the daemon's log\n")
            async with session.post(f"{url}/boom", data=b"x", headers={"Expect": "100-continue"}) as resp:  # routed
                assert (resp.status, await resp.text()) == (500, "internal error; see the daemon's log\n")
            async with session.get(f"{url}/job/start") as resp:
                assert (resp.status, await resp.text()) == (200, "OK")
        assert await d.store.ping_count("job") == 1 and await d.store.ping_count("boom") == 0
    finally:
        await d.stop()
