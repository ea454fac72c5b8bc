"""Prometheus metrics at ``/metrics``, made with prometheus-client.

A custom collector reads the daemon's state when Prometheus scrapes, so a
ping costs no metric bookkeeping beyond two counters in a dict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .api import DAEMON
from .monitor import Status, effective_status

if TYPE_CHECKING:
    from .daemon import Daemon

METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics")
COLLECTOR: web.AppKey["DaemonCollector"] = web.AppKey("metrics_collector")


class DaemonCollector:
    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self.backlog = 0  # refreshed by the handler (an async read) before each scrape

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        now = daemon.clock.now()
        up = GaugeMetricFamily("cronwarden_monitor_up", "1 unless the monitor is down (paused counts as up)",
                               labels=["monitor"])
        state = GaugeMetricFamily("cronwarden_monitor_state", "1 for the monitor's current state",
                                  labels=["monitor", "state"])
        success = GaugeMetricFamily("cronwarden_monitor_last_success_timestamp_seconds",
                                    "when the last successful run ended", labels=["monitor"])
        duration = GaugeMetricFamily("cronwarden_monitor_last_duration_seconds",
                                     "duration of the last timed run", labels=["monitor"])
        pings = CounterMetricFamily("cronwarden_monitor_pings", "pings received since the daemon started",
                                    labels=["monitor"])
        alerts = CounterMetricFamily("cronwarden_monitor_alerts", "alerts raised since the daemon started",
                                     labels=["monitor"])
        for name in sorted(daemon.states):
            cfg, st = daemon.config.monitors[name], daemon.states[name]
            status = effective_status(cfg, st, now)
            up.add_metric([name], 0.0 if status is Status.DOWN else 1.0)
            state.add_metric([name, status.value], 1.0)
            if st.last_success is not None:
                success.add_metric([name], st.last_success.timestamp())
            if st.last_duration is not None:
                duration.add_metric([name], st.last_duration)
            counts = daemon.counters.get(name, (0, 0))
            pings.add_metric([name], counts[0])
            alerts.add_metric([name], counts[1])
        yield from (up, state, success, duration, pings, alerts)
        yield GaugeMetricFamily("cronwarden_monitors", "monitors in the config", value=len(daemon.states))
        yield GaugeMetricFamily("cronwarden_wheel_lateness_seconds",
                                "how late the timer fired its last deadline", value=daemon.stats.last_lateness)
        yield GaugeMetricFamily("cronwarden_wheel_max_lateness_seconds",
                                "the latest the timer has fired a deadline since start",
                                value=daemon.stats.max_lateness)
        yield GaugeMetricFamily("cronwarden_outbox_backlog", "alerts waiting for delivery", value=self.backlog)
        failures = CounterMetricFamily("cronwarden_delivery_failures", "delivery attempts that failed",
                                       labels=["channel"])
        for channel, (worker, _task) in sorted(daemon.workers.items()):
            failures.add_metric([channel], worker.failures_total)
        yield failures
        yield CounterMetricFamily("cronwarden_pings", "pings received since the daemon started",
                                  value=daemon.stats.pings)
        yield GaugeMetricFamily("cronwarden_database_ok", "1 while database writes succeed",
                                value=0.0 if daemon.store.last_error else 1.0)
        yield CounterMetricFamily("cronwarden_database_commits", "group commits (one fsync each) since the "
                                  "daemon started: pings over commits is how many pings share an fsync",
                                  value=daemon.store.commits)


async def handle(request: web.Request) -> web.Response:
    registry, collector = request.app[METRICS], request.app[COLLECTOR]
    try:
        collector.backlog = await request.app[DAEMON].store.outbox_backlog()
    except Exception:
        collector.backlog = -1
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application, daemon: "Daemon") -> None:
    registry = CollectorRegistry(auto_describe=False)
    collector = DaemonCollector(daemon)
    registry.register(collector)  # type: ignore[arg-type]
    app[METRICS], app[COLLECTOR] = registry, collector
    app.router.add_get("/metrics", handle)
