"""The command line's own behaviour: logging format, refusing unsafe starts."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cronwarden.cli import setup_logging


def test_under_journald_log_lines_carry_no_timestamp(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging("INFO")
    logging.getLogger("cronwarden").info("hello")
    err = capsys.readouterr().err
    assert err.strip() == "INFO cronwarden: hello"
    monkeypatch.delenv("JOURNAL_STREAM")
    setup_logging("INFO")
    logging.getLogger("cronwarden").warning("again")
    line = capsys.readouterr().err.strip()
    assert line.endswith("WARNING cronwarden: again") and line[:4].isdigit()  # a timestamp first
    logging.getLogger().handlers.clear()


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server: {listen: '0.0.0.0:0', database: cw.db}\nmonitors: {a: {every: 1h}}\n")
    result = subprocess.run([sys.executable, "-m", "cronwarden", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API token" in result.stderr
    assert not (tmp_path / "cw.db").exists()


def test_serve_refuses_a_bad_file_with_every_problem_and_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server: {listen: '127.0.0.1:0', database: cw.db}\nmonitors:\n  a: {every: soon}\n"
                      "  b: {cron: '* * *'}\n")
    result = subprocess.run([sys.executable, "-m", "cronwarden", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{config}:3:14: every: bad duration 'soon'" in result.stderr
    assert f"{config}:4:13: cron: " in result.stderr
    assert not (tmp_path / "cw.db").exists()
