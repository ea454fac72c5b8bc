"""build/make-pyz: one file that runs cronwarden with nothing but a Python interpreter.

The file is built into a temporary folder (never the checkout's dist/), then run
by the base interpreter (outside any virtual environment) with a clean
environment: no PYTHONPATH, a temporary HOME and SHIV_ROOT."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKE_PYZ = REPO / "build" / "make-pyz"
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")
SHIV_MISSING = 3  # make-pyz's exit status when shiv cannot be installed

pytestmark = pytest.mark.timeout(300)


def _interpreter() -> str:
    """The Python the user would have: the one under this venv, when there is one."""
    base = getattr(sys, "_base_executable", None)
    return base if base and os.access(base, os.X_OK) else sys.executable


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert MAKE_PYZ.is_file(), "build/make-pyz is missing (build/ is git-ignored: the script must be added with -f)"
    out = tmp_path_factory.mktemp("dist") / "cronwarden.pyz"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(MAKE_PYZ), str(out)], capture_output=True, text=True, env=env, timeout=240)
    if proc.returncode == SHIV_MISSING:
        pytest.skip(f"shiv could not be installed, so the single-file build cannot be made: "
                    f"{proc.stderr.strip()[-500:]}")
    assert proc.returncode == 0, f"make-pyz failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert out.is_file() and os.access(out, os.X_OK)
    assert not (REPO / "src" / "build").exists()
    return out


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "SHIV_ROOT": str(tmp_path / "shiv"),
        "LANG": "C.UTF-8",
    }


def _config(folder: Path, monitors: str = "  nightly: {every: 1h}\n") -> Path:
    path = folder / "cronwarden.yaml"
    path.write_text("server:\n  listen: 127.0.0.1:0\n  database: ./cw.db\nmonitors:\n" + monitors)
    return path


def test_the_pyz_carries_its_own_dependencies(pyz: Path, tmp_path: Path, clean_env: dict[str, str]) -> None:
    """Imports, C extensions included, come from what the file unpacked into SHIV_ROOT."""
    modules = "cronwarden, aiohttp, aiosqlite, yaml, yarl._quoting_c, multidict._multidict, aiohttp._http_parser"
    code = (f"import {modules}\n"  # one-line statements: this is an interactive console reading stdin
            f"print(*[f'FROM {{m.__name__}} {{m.__file__}}' for m in ({modules})], sep='\\n')\n")
    proc = subprocess.run([_interpreter(), str(pyz)], input=code, capture_output=True, text=True,
                          env={**clean_env, "SHIV_INTERPRETER": "1"}, cwd=tmp_path, timeout=60)
    found = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        line = line.lstrip("> ")  # the interactive console's prompts
        if line.startswith("FROM "):
            _, name, path = line.split(" ", 2)
            found[name] = path
    assert len(found) == 7, proc.stdout + proc.stderr
    for name, path in found.items():
        assert path.startswith(clean_env["SHIV_ROOT"]), (name, path)


def test_the_pyz_checks_a_config(pyz: Path, tmp_path: Path, clean_env: dict[str, str]) -> None:
    config = _config(tmp_path)
    # -S: not even the interpreter's own site-packages; the file has all it needs
    proc = subprocess.run([_interpreter(), "-S", str(pyz), "check", "--config", str(config)],
                          capture_output=True, text=True, env=clean_env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{config}: OK (1 monitors, 0 channels)"

    config.write_text("monitors:\n  bad: {every: soon}\n")
    proc = subprocess.run([_interpreter(), str(pyz), "check", "--config", str(config)],
                          capture_output=True, text=True, env=clean_env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert f"{config}:2:" in proc.stderr


def test_the_pyz_serves_and_answers_a_ping(pyz: Path, tmp_path: Path, clean_env: dict[str, str]) -> None:
    config = _config(tmp_path)
    proc = subprocess.Popen([_interpreter(), str(pyz), "serve", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env, cwd=tmp_path)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 60
        buffer = b""
        while url is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no 'listening on' line within 60 s:\n" + "\n".join(lines)
            ready, _, _ = select.select([proc.stderr], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(proc.stderr.fileno(), 65536)
            assert chunk, f"serve exited ({proc.wait()}):\n" + buffer.decode() + "\n".join(lines)
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            for raw in done:
                lines.append(raw.decode(errors="replace"))
                if match := LISTENING.search(lines[-1]):
                    url = match.group(1)

        with urllib.request.urlopen(f"{url}/ping/nightly", timeout=10) as resp:
            assert resp.status == 200
            assert resp.read().decode().strip() == "OK"
        with urllib.request.urlopen(f"{url}/api/v1/monitors/nightly", timeout=10) as resp:
            assert b'"up"' in resp.read()

        proc.send_signal(signal.SIGTERM)
        _, tail = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    log = "\n".join(lines) + "\n" + (buffer + tail).decode(errors="replace")
    assert proc.returncode == 0, log
    assert "cronwarden stopped" in log
    assert (tmp_path / "cw.db").is_file()
    assert list((tmp_path / "shiv").iterdir()), "nothing was unpacked into SHIV_ROOT"
