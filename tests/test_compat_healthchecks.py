"""Existing Healthchecks clients keep working: the `healthchecks-io` package
from PyPI (not ours) pinging through its own API."""

from __future__ import annotations

import pytest

from conftest import DaemonFactory, Receiver
from test_daemon_e2e import config

healthchecks_io = pytest.importorskip("healthchecks_io")

UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


async def test_the_healthchecks_io_client_pings_by_uuid_and_by_slug(daemon: DaemonFactory,
                                                                    receiver: Receiver) -> None:
    d = await daemon(config(receiver, f"  backup: {{every: 1h, key: {UUID}}}\n  sync: {{every: 1h}}",
                            server="  ping_key: pk-compat"))
    client = healthchecks_io.AsyncClient(ping_key="pk-compat", ping_url=f"{d.url}/ping/")
    try:
        assert (await client.start_ping(uuid=UUID))[0]
        assert (await client.success_ping(uuid=UUID, data="42 files"))[0]
        assert (await client.fail_ping(slug="sync", data="disk full"))[0]
        got = await receiver.wait_for(lambda b: b["event"] == "failed")
        assert got.body["monitor"] == "sync" and "disk full" in got.body["log"]
        assert (await client.exit_code_ping(exit_code=0, slug="sync"))[0]
        await receiver.wait_for(lambda b: b["event"] == "recovered")
        assert (await client.exit_code_ping(exit_code=4, uuid=UUID))[0]
        await receiver.wait_for(lambda b: b["monitor"] == "backup" and b["run"]["exit_status"] == 4)
    finally:
        await client._client.aclose()
    detail = await d.api("monitors/backup")
    assert detail["pings"] == 3
    assert [r["exit_status"] for r in detail["runs"]] == [4, 0]
    assert detail["runs"][1]["output"] == "42 files" and detail["runs"][1]["duration_s"] is not None
