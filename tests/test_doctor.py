"""``dorc doctor``: through the CLI, on a machine the test controls (PATH, pyenv, uv, caches and
Pulumi's home in tmp_path), so that what is missing is known."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from dorc.doctor import RUNTIMES
from dorc_sim.sandbox.isolation import probe

OWN_RUNTIME = f"python3.{sys.version_info[1]}"
MISSING = next(r for r in reversed(RUNTIMES) if r != OWN_RUNTIME)  # python3.13, unless dorc runs on it


def _fake_python(path: Path, version: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version.replace('.', ' ')}\n")
    path.chmod(0o755)


@pytest.fixture
def bare(tmp_path, monkeypatch) -> Path:
    """A machine with no Python but dorc's own, no LocalStack install, no Docker, no Pulumi CLI."""
    probe()  # the sandbox is probed once per process: on the real PATH, not this one
    (tmp_path / "bin").mkdir()
    env = {"PATH": str(tmp_path / "bin"), "PYENV_ROOT": str(tmp_path / "pyenv"),
           "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PULUMI_HOME": str(tmp_path / "pulumi"), "DOCKER_HOST": f"unix://{tmp_path / 'docker.sock'}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in list(os.environ):
        if key.startswith("DORC_PYTHON") or key == "DORC_LOCALSTACK_HOME":
            monkeypatch.delenv(key)
    return tmp_path


def _line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.strip().startswith(("✓ " + name + " ", "✗ " + name + " ")))


def _fix_after(output: str, name: str) -> str:
    lines = output.splitlines()
    i = lines.index(_line(output, name))
    return lines[i + 1].strip() if lines[i + 1].strip().startswith("fix:") else ""


def test_a_missing_runtime_says_so_and_how_to_get_it(cli, bare):
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    line = _line(result.stdout, MISSING)
    assert line.strip().startswith("✗") and "missing" in line
    assert f"run on Python {sys.version_info[0]}.{sys.version_info[1]}" in line and "dorc's own" in line
    fix = _fix_after(result.stdout, MISSING)
    wanted = MISSING.removeprefix("python")
    assert f"pyenv install {wanted}" in fix and f"uv python install {wanted}" in fix
    own = _line(result.stdout, OWN_RUNTIME)
    assert own.strip().startswith("✓") and sys.executable in own and "dorc's own" in own


def test_an_installed_runtime_shows_where_it_was_found(cli, bare):
    minor = MISSING.split(".")[1]
    _fake_python(bare / "pyenv" / "versions" / f"3.{minor}.2" / "bin" / MISSING, f"3.{minor}.2")
    line = _line(cli("doctor").stdout, MISSING)
    assert line.strip().startswith("✓")
    assert f"Python 3.{minor}.2 at {bare / 'pyenv' / 'versions'}" in line and f"(pyenv 3.{minor}.2)" in line


def test_json_lists_every_check_with_its_fix(cli, bare):
    result = cli("doctor", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert [c["name"] for c in doc["checks"] if c["group"] == "runtimes"][:3] == list(RUNTIMES)
    assert set(checks[MISSING]) == {"group", "name", "ok", "detail", "hint"}
    assert checks[MISSING]["ok"] is False and "pyenv install" in checks[MISSING]["hint"]
    assert checks[OWN_RUNTIME]["ok"] is True and checks[OWN_RUNTIME]["hint"] is None
    assert doc["ok"] is False
    isolation = probe()
    assert checks["sandbox"]["ok"] is (isolation.level == "full")
    assert checks["sandbox"]["detail"] == isolation.line.removeprefix("sandbox: ")
    assert checks["AWS SDK"]["ok"] is True and "botocore" in checks["AWS SDK"]["detail"]


def test_strict_fails_when_something_is_missing(cli, bare):
    assert cli("doctor", "--strict").exit_code == 1
    assert cli("doctor").exit_code == 0


def test_localstack_not_installed_names_what_it_needs(cli, bare):
    out = cli("doctor").stdout
    line = _line(out, "LocalStack")
    assert line.strip().startswith("✗") and "host mode not installed" in line
    fix = _fix_after(out, "LocalStack")
    if OWN_RUNTIME in ("python3.13", "python3.14"):
        assert "dorc localstack install" in fix
    else:  # no Python 3.13 on this pretend machine
        assert "needs Python 3.13" in fix and "pyenv install 3.13" in fix
    assert "LocalStack running" in out


def test_docker_and_pulumi_missing_then_found(cli, bare, monkeypatch):
    out = cli("doctor").stdout
    docker = _line(out, "Docker")
    assert docker.strip().startswith("✗") and f"no engine answers at unix://{bare / 'docker.sock'}" in docker
    assert "no `docker` CLI on PATH" in docker and "docs.docker.com" in _fix_after(out, "Docker")
    assert _line(out, "Pulumi CLI").strip().startswith("✗")
    assert "pulumi.com/docs/install" in _fix_after(out, "Pulumi CLI")

    for tool in ("docker", "pulumi"):
        (bare / "bin" / tool).write_text("#!/bin/sh\nexit 0\n")
        (bare / "bin" / tool).chmod(0o755)
    with _fake_docker_engine(bare / "docker.sock"):
        out = cli("doctor").stdout
    docker = _line(out, "Docker")
    assert docker.strip().startswith("✓") and "engine answers" in docker and str(bare / "bin" / "docker") in docker
    assert _line(out, "Pulumi CLI").strip().startswith("✓") and str(bare / "bin" / "pulumi") in _line(out, "Pulumi CLI")


class _fake_docker_engine:
    """A unix socket that answers ``GET /_ping`` as the Docker engine does."""

    def __init__(self, path: Path):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.server.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:  # a timeout: look at stop again
                continue
            with conn:
                request = conn.recv(1024)
                if request.startswith(b"GET /_ping "):
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()
