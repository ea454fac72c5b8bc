"""The two ways a config is loaded build the same thing.

parse_config first builds the Config from plain data (libyaml's events, no
positions); only when that finds a problem, or meets something it leaves to
the node walk, does it walk pyyaml's nodes, which report PATH:LINE:COL. These
tests run both on the same text and compare.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cronwarden import config as cfgmod
from cronwarden.config import Config, ConfigError, parse_config
from cronwarden.configkeys import Fallback, _DataCtx
from cronwarden.configtypes import MonitorConfig, Severity, new_monitor_config

ROOT = Path(__file__).resolve().parent.parent
ZONES = ("UTC", "Europe/Riga", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Asia/Kolkata")
CRONS = ("{m} * * * *", "*/15 * * * *", "{m} {h} * * 1-5", "@daily", "0 9-17 * * mon-fri", "{m} {h} 1,15 * *")


def fast(text: str, path: Path = Path("cw.yaml")) -> Config | None:
    """The fast path alone: a Config, or None when it hands the file to the node walk."""
    try:
        return cfgmod._build(cfgmod._load_data(text), _DataCtx(), path)
    except Fallback:
        return None


def walk(text: str, path: Path = Path("cw.yaml")) -> Config:
    """The node walk alone."""
    return cfgmod._parse_nodes(text, path)


def big_config(n: int) -> str:
    """`n` monitors using every monitor key, with channels, routes, defaults and maintenance."""
    lines = [
        "server: {listen: '127.0.0.1:0', database: ./cw.db, max_body: 64KiB, retention: {runs: 50, days: 7}}",
        "defaults:",
        "  grace: 1h",
        "  channels: [ops]",
        "  escalate: [{after: 30m, channels: [pager]}]",
        "channels:",
        "  ops: {type: log}",
        "  pager: {type: webhook, url: 'http://127.0.0.1:9/hook', secret_env: HOOK_SECRET}",
        "  mail: {type: email, to: [a@example.com], from: cw@example.com, smtp: {host: mx, port: 587, tls: starttls}}",
        "routes:",
        "  critical: [pager, ops]",
        "maintenance:",
        "  - {monitors: [m000001, m000002], cron: '0 3 * * 0', duration: 2h, timezone: Europe/Riga}",
        "  - {tags: [batch], cron: '@daily', duration: 30m}",
        "monitors:",
    ]
    for i in range(n):
        k = i // 2
        if i % 2 == 0:
            body = f"every: {('1h', '2h', '90m', '1d', 3600)[k % 5]}"
        else:
            expr = CRONS[k % len(CRONS)].format(m=k % 60, h=(k // 60) % 24)
            body = f"cron: '{expr}', timezone: {ZONES[k % len(ZONES)]}"
        extra = (
            "", ", severity: critical", ", channels: [mail]", ", tags: [batch, nightly]",
            ", rules: ['records == 0', \"errors > 0 and done == true\"]", ", max_runtime: 2h, slow_after: 1h",
            f", depends_on: [m{max(0, i - 7):06d}]", ", escalate: [{after: 15m, channels: [pager]}]",
            ", description: null, runbook: 'https://wiki.example.com/x'",
            f", key: 1a2b3c4d-0000-4000-8000-{i:012d}", ", alert_after: 3, recover_after: 2, repeat: 0",
            ", max_silence: 10m, grace: 5m",
        )[i % 12]
        lines.append(f"  m{i:06d}: {{{body}{extra}}}")
    lines.append("  block-style:\n    cron: \"30 3 * * *\"\n    timezone: Europe/Riga\n    tags:\n      - a\n      - b")
    return "\n".join(lines) + "\n"


def test_the_example_config_is_built_the_same_both_ways() -> None:
    text = (ROOT / "config.example.yaml").read_text()
    path = ROOT / "config.example.yaml"
    built = fast(text, path)
    assert built is not None  # a valid file never needs the node walk
    assert built == walk(text, path) == parse_config(text, path)


def test_a_generated_large_config_is_built_the_same_both_ways() -> None:
    text = big_config(5000)
    built = fast(text)
    assert built is not None
    walked = walk(text)
    assert built == walked
    assert len(built.monitors) == 5001 and built.maintenance == walked.maintenance
    # Equal values met again and again are one object, not one per monitor.
    assert len({id(m.cron) for m in built.monitors.values() if m.cron == "@daily"}) == 1
    assert len({id(m.timezone) for m in built.monitors.values() if m.timezone == "Asia/Tokyo"}) == 1
    assert len({id(m.rules) for m in built.monitors.values() if m.rules}) == 1
    assert len({id(m.channels) for m in built.monitors.values() if m.channels == ("ops",)}) == 1


def test_monitors_written_alike_are_read_once_and_keep_their_own_names() -> None:
    text = "monitors:\n" + "".join(f"  m{i}: {{every: 1h, alert_after: 2}}\n" for i in range(3))
    built = fast(text)
    assert built is not None and built == walk(text)
    assert [(m.name, m.every, m.alert_after) for m in built.monitors.values()] == [
        ("m0", 3600, 2), ("m1", 3600, 2), ("m2", 3600, 2)]


def test_past_the_limit_of_bodies_kept_monitors_are_built_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cfgmod, "SAME_BODY_LIMIT", 3)
    text = big_config(600)
    assert fast(text) == walk(text)


@pytest.mark.parametrize("other", ["true", "1.0"])
def test_a_body_equal_in_python_to_one_read_before_is_read_on_its_own(other: str) -> None:
    # True == 1 == 1.0 in Python, and they hash alike; only 1 is a whole number here
    text = f"monitors:\n  a: {{every: 1h, alert_after: 1}}\n  b: {{every: 1h, alert_after: {other}}}\n"
    assert fast(text) is None
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("f.yaml"))
    assert info.value.problems == [f"f.yaml:3:31: alert_after: expected a whole number, found {other.title()}"]


@pytest.mark.parametrize("text", [
    # keys are read as written, whatever YAML would make of them unquoted
    "monitors:\n  on: {every: 1h}\n  '1.5': {every: 1h}\n  null: {every: 1h}\n",
    "monitors: {a: {every: 60, grace: 0}}\n",
    "monitors:\n  a: &body {every: 1h, tags: [x]}\n  b: *body\n",  # aliases
    "monitors:\n  a: {every: 1h, description: 'it''s \\n quoted', runbook: \"x\\ty\"}\n",
    "%YAML 1.1\n---\nmonitors: {a: {every: 1h}}\n...\n",
    "monitors: {a: {every: 1h, channels: []}}\nchannels:\nroutes: {}\n",
    "monitors: {a: {cron: '0 0 29 2 *', timezone: Pacific/Auckland, tags: solo}}\n",
])
def test_small_valid_files_are_built_the_same_both_ways(text: str) -> None:
    built = fast(text)
    assert built is not None
    assert built == walk(text)


@pytest.mark.parametrize("text", [
    "monitors: {a: {every: 1h}, a: {every: 2h}}\n",  # duplicate key
    "base: &b {every: 1h}\nmonitors: {a: {<<: *b}}\n",  # merge key
    "monitors: {a: {every: 1h, grace: *nowhere}}\n",  # undefined alias
    "monitors: {a: {every: 1h}}\n---\nmonitors: {}\n",  # two documents
    "",  # no document
    "monitors: {a: {every: 1h, tags: [2001-13-45]}}\n",  # a timestamp that is no date
    "monitors: {a: {every: soon}}\n",
])
def test_a_bad_file_is_handed_to_the_node_walk_and_reported_with_positions(text: str) -> None:
    assert fast(text) is None
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("f.yaml"))
    with pytest.raises(ConfigError) as walked:
        walk(text, Path("f.yaml"))
    assert info.value.problems == walked.value.problems
    assert all(p.startswith("f.yaml:") and p.split(":")[1].isdigit() and p.split(":")[2].isdigit()
               for p in info.value.problems)


def test_what_the_fast_path_leaves_to_the_node_walk_still_loads() -> None:
    text = "monitors: {a: !!map {every: !!int '60'}, b: {every: 1h, tags: [!!str 1]}}\n"  # explicit tags
    assert fast(text) is None
    assert parse_config(text, Path("f.yaml")) == walk(text, Path("f.yaml"))
    assert parse_config(text, Path("f.yaml")).monitors["b"].tags == ("1",)


def test_a_problem_in_a_large_file_is_reported_at_its_line_and_column() -> None:
    text = big_config(3000).replace("  m002344: {every: 90m", "  m002344: {every: 1hour", 1)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith("  m002344: {every: 1hour"))
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("big.yaml"))
    assert info.value.problems == [f"big.yaml:{line}:20: every: bad duration '1hour': use whole seconds or units "
                                   f"s, m, h, d, w (e.g. '90s', '1h30m')"]


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100_000), st.text(max_size=12),
                    st.sampled_from(["1h", "5m", "UTC", "Europe/Riga", "*/5 * * * *", "@daily", "ops", "warning",
                                     "critical", "log", "x == 1", "127.0.0.1:0"]))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["every", "cron", "timezone", "grace", "channels", "type",
                                                        "severity", "rules", "tags", "a", "listen", "after"]),
                                                       c, max_size=3)), max_leaves=12)
monitor_bodies = st.fixed_dictionaries({"every": st.sampled_from(["1h", "30m", 60, 0, "x"])},
                                       optional={"grace": st.sampled_from(["1m", 0, -1, "1h"]),
                                                 "severity": st.sampled_from(["info", "critical", "loud"]),
                                                 "channels": st.sampled_from([["ops"], "ops", ["nope"], []]),
                                                 "rules": st.sampled_from([["a == 1"], ["a =="], "a == 1"]),
                                                 "tags": values, "timezone": st.sampled_from(["UTC", "Mars/Base"])})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["a", "b", "on", "1.5"]), monitor_bodies, max_size=3),
       st.dictionaries(st.sampled_from(["server", "defaults", "channels", "routes", "maintenance", "bogus"]), values,
                       max_size=2),
       st.booleans())
def test_whenever_the_fast_path_builds_a_config_the_node_walk_builds_the_same(monitors: dict, other: dict,
                                                                               flow: bool) -> None:
    data = {**other, "channels": {"ops": {"type": "log"}}, "monitors": monitors}
    text = yaml.safe_dump(data, default_flow_style=flow)
    built = fast(text)
    try:
        walked = walk(text)
    except ConfigError:
        assert built is None
    else:
        assert built == walked


@pytest.mark.parametrize("kwargs", [
    {"name": "a"},
    {"name": "b", "every": 60, "grace": 0, "channels": ("ops",), "severity": Severity.CRITICAL},
    {"name": "c", "cron": "@daily", "timezone": "Asia/Tokyo", "tags": ("x", "y"), "max_silence": 5, "key": "k"},
])
def test_the_loaders_monitor_builder_makes_what_init_makes(kwargs: dict) -> None:
    import dataclasses

    built, init = new_monitor_config(**kwargs), MonitorConfig(**kwargs)
    assert type(built) is MonitorConfig and built == init and hash(built) == hash(init)
    assert [getattr(built, f.name) for f in dataclasses.fields(MonitorConfig)] == \
        [getattr(init, f.name) for f in dataclasses.fields(MonitorConfig)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.grace = 1  # type: ignore[misc]
    assert dataclasses.replace(built, grace=7).grace == 7
