"""Shared fixtures: the in-process CLI, throw-away projects and an isolated copy of pipeline-config."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO_ROOT, copy_pipeline_config, make_project

pytest_plugins = ["pytester"]

# Variables of the user's shell that would change what dorc does or where it looks.
_OUTSIDE_VARS = ("CONFIG_REPO_PATH", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "DORC_ENV")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for var in _OUTSIDE_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session", autouse=True)
def _warm_imports():
    """Import moto/boto3 once, so that timing assertions measure dorc and not a cold import."""
    import boto3  # noqa: F401
    from moto import mock_aws  # noqa: F401


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli("run", "census", "raw", "--local", ...)`` -> CliResult: ``dorc.cli.main()`` in-process."""
    from dorc import cli as dorc_cli

    def run(*args: str) -> CliResult:
        capsys.readouterr()  # drop anything printed before
        monkeypatch.setattr(sys, "argv", ["dorc", *map(str, args)])
        code = None
        try:
            dorc_cli.main()
        except SystemExit as exc:
            code = exc.code
        if code is None:
            code = 0
        captured = capsys.readouterr()
        return CliResult(int(code), captured.out, captured.err)

    return run


def run_dorc_subprocess(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m dorc ...`` in a real child process."""
    env = {k: v for k, v in os.environ.items() if k not in _OUTSIDE_VARS}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([sys.executable, "-m", "dorc", *map(str, args)], cwd=cwd or REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def census_repo(tmp_path) -> Path:
    """A private copy of pipeline-config (without its .dorc state)."""
    return copy_pipeline_config(tmp_path)


@pytest.fixture
def project_factory(tmp_path):
    """``project_factory(layers, **kw)`` -> root of a new project under this test's tmp_path."""
    counter = iter(range(1000))

    def make(layers: dict, **kw) -> Path:
        kw.setdefault("dirname", f"proj{next(counter)}")
        return make_project(tmp_path, layers, **kw)

    return make
