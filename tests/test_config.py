"""Config loading: typed results, and every problem reported with PATH:LINE:COL."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cronwarden.cli import main
from cronwarden.config import ConfigError, Severity, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cronwarden.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.replace(str(path), "F") for p in info.value.problems]


def test_the_example_config_loads() -> None:
    config = load_config(ROOT / "config.example.yaml")
    assert "nightly-backup" in config.monitors
    backup = config.monitors["nightly-backup"]
    assert backup.cron == "0 2 * * *"
    assert backup.grace == 30 * 60
    assert backup.max_runtime == 2 * 3600
    assert backup.severity is Severity.CRITICAL
    assert backup.channels == ("console",)


def test_defaults_are_inherited_and_monitor_keys_override_them(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults: {grace: 10m, alert_after: 3, repeat: 0, channels: [a], timezone: Europe/Riga}
        channels: {a: {type: log}, b: {type: log}}
        monitors:
          one: {every: 5m}
          two: {cron: "*/5 * * * *", grace: 90s, channels: [b]}
    """)
    config = load_config(path)
    one, two = config.monitors["one"], config.monitors["two"]
    assert (one.every, one.grace, one.alert_after, one.repeat, one.channels) == (300, 600, 3, 0, ("a",))
    assert one.timezone == "Europe/Riga"
    assert (two.grace, two.channels) == (90, ("b",))


def test_the_database_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
        server: {database: state/cw.db, max_body: 2KiB, listen: "127.0.0.1:0"}
        monitors: {a: {every: 60}}
    """)
    config = load_config(path)
    assert config.server.database == tmp_path / "state" / "cw.db"
    assert config.server.max_body == 2048
    assert config.server.port == 0


def test_every_problem_is_reported_at_once_with_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        server:
          lisen: 127.0.0.1:8470
        channels:
          ops: {type: webhok, url: "http://127.0.0.1:9"}
        monitors:
          backup:
            cron: "61 * * * *"
            timezone: Europe/Rigga
            grace: soon
          both:
            every: 5m
            cron: "* * * * *"
          neither:
            grace: 1m
          routed:
            every: 1m
            channels: [nope]
    """)
    assert "F:2:3: unknown key 'lisen' in server (did you mean 'listen'?)" in found
    assert any(p.startswith("F:4:15: unknown channel type 'webhok'") and "'webhook'" in p for p in found)
    assert any(p.startswith("F:7:11: cron: ") for p in found)
    assert any(p.startswith("F:8:15: timezone: unknown timezone 'Europe/Rigga'") and "Europe/Riga" in p
               for p in found)
    assert any(p.startswith("F:9:12: grace: bad duration 'soon'") for p in found)
    assert "F:10:3: monitor 'both' has both of 'every' and 'cron': it needs exactly one" in found
    assert "F:13:3: monitor 'neither' has neither of 'every' and 'cron': it needs exactly one" in found
    assert any(p.startswith("F:17:15: monitor 'routed' uses unknown channel 'nope'") for p in found)
    assert len(found) == 8, found


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        monitors:
          a: {every: 1m}
          a: {every: 2m}
    """)
    assert found == ["F:3:3: duplicate key 'a' in monitors (first defined on line 2)"]


def test_wrong_types_are_named(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        monitors:
          a: {every: 1m, alert_after: many, channels: {x: 1}, severity: loud}
    """)
    assert any("alert_after: expected a whole number, found 'many'" in p for p in found)
    assert any("channels: expected a list of strings, found a mapping" in p for p in found)
    assert any("severity must be info, warning or critical" in p for p in found)


def test_a_bad_monitor_name_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        monitors:
          Bad Name: {every: 1m}
    """)
    assert found == ["F:2:3: monitor name 'Bad Name' must be a slug matching [a-z0-9][a-z0-9_.-]*"]


def test_a_rule_that_does_not_parse_points_at_its_column(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        monitors:
          a:
            every: 1m
            rules: ["records == 0", "errors >> 1"]
    """)
    assert len(found) == 1
    assert found[0].startswith("F:4:38: ")  # the second '>' inside the quoted rule


def test_yaml_syntax_errors_carry_a_position(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        monitors:
          a: {every: 1m
    """)
    assert len(found) == 1 and found[0].startswith("F:") and "YAML syntax error" in found[0]


def test_secrets_come_only_from_environment_variable_names(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        server: {api_token_env: "s3cr3t-token!"}
        monitors: {a: {every: 1m}}
    """)
    assert found == ["F:1:25: api_token_env: 's3cr3t-token!' is not an environment variable name "
                     "(secrets are read from the variable it names)"]


def test_env_placeholders_are_not_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKURL", "http://127.0.0.1:1/x")
    path = write(tmp_path, """
        channels: {h: {type: webhook, url: "${HOOKURL}"}}
        monitors: {a: {every: 1m, channels: [h]}}
    """)
    assert load_config(path).channels["h"].url == "${HOOKURL}"


def test_check_prints_problems_and_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "monitors:\n  a: {every: 1m, grac: 5m}\n")
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:18: unknown key 'grac' in monitor 'a' (did you mean 'grace'?)" in err


def test_check_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(ROOT / "config.example.yaml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_every_config_key_is_documented_in_the_readme() -> None:
    from cronwarden.config import all_documented_keys

    readme = (ROOT / "README.md").read_text()
    missing = [f"{section}.{key}" for section, keys in all_documented_keys().items()
               for key in keys if f"`{key.split('.')[-1]}`" not in readme]
    assert not missing, f"keys missing from README.md: {missing}"


def test_an_unknown_channel_in_defaults_escalate_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        channels: {pager: {type: log}}
        defaults: {escalate: [{after: 15m, channels: [pagr]}]}
        monitors: {a: {every: 1h}}
    """)
    assert len(found) == 1 and "defaults escalate uses unknown channel 'pagr' (did you mean 'pager'?)" in found[0]
