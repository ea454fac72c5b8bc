"""Metrics, badges and the OpenAPI document against the real daemon."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from prometheus_client.parser import text_string_to_metric_families

from conftest import DaemonFactory, Receiver
from test_daemon_e2e import config


async def test_metrics_parse_with_prometheus_clients_own_parser(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  a: {every: 1h}\n  b: {every: 1h}"))
    await d.ping("a/start")
    await d.ping("a")
    await d.ping("b/fail")
    await receiver.wait_for(lambda body: body["event"] == "failed")
    status, text = await d.request("GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("cronwarden_monitor_up", (("monitor", "a"),))] == 1
    assert samples[("cronwarden_monitor_up", (("monitor", "b"),))] == 0
    assert samples[("cronwarden_monitor_pings_total", (("monitor", "a"),))] == 2
    assert samples[("cronwarden_monitor_alerts_total", (("monitor", "b"),))] == 1
    assert samples[("cronwarden_monitor_state", (("monitor", "b"), ("state", "down")))] == 1
    assert ("cronwarden_monitor_last_success_timestamp_seconds", (("monitor", "a"),)) in samples
    assert ("cronwarden_monitor_last_duration_seconds", (("monitor", "a"),)) in samples
    for name in ("cronwarden_wheel_lateness_seconds", "cronwarden_outbox_backlog", "cronwarden_pings",
                 "cronwarden_delivery_failures", "cronwarden_database_ok"):
        assert name in families, name
    # three pings, one after the other: each answered after its own commit
    assert samples[("cronwarden_database_commits_total", ())] >= 3


async def test_badges_show_a_monitors_state_and_a_tags_worst(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  a: {every: 1h, tags: [prod]}\n  b: {every: 1h, tags: [prod]}"))
    await d.ping("a")
    await d.ping("b/fail")
    status, text = await d.request("GET", "/badge/a.svg")
    assert status == 200
    assert ET.fromstring(text).get("aria-label") == "a: up"
    status, text = await d.request("GET", "/badge/tag/prod.svg")
    assert ET.fromstring(text).get("aria-label") == "prod: down"
    assert (await d.request("GET", "/badge/nope.svg"))[0] == 404


async def test_every_api_route_is_in_the_openapi_document_and_the_reverse(daemon: DaemonFactory,
                                                                          receiver: Receiver) -> None:
    from cronwarden.config import parse_config
    from cronwarden.daemon import Daemon
    from cronwarden.http import build_app
    from pathlib import Path

    d = await daemon(config(receiver, "  a: {every: 1h}"))
    document = await d.api("openapi.json")
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    app = build_app(Daemon(parse_config("monitors: {a: {every: 1h}}\n", Path("/nonexistent/x.yaml"))))
    routes = {(r.resource.canonical, r.method) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api/v1/") and r.method != "HEAD"}
    assert routes == documented
