"""Shared fixtures: the in-process CLI, throw-away projects and an isolated copy of pipeline-config."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import OUTSIDE_VARS, copy_pipeline_config, make_project

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path_factory):
    for var in OUTSIDE_VARS:
        monkeypatch.delenv(var, raising=False)
    # a developer's running `dorc daemon` never serves the tests' `dorc` processes (test_daemon.py
    # starts its own in a folder of its own)
    monkeypatch.setenv("DORC_DAEMON_DIR", str(tmp_path_factory.getbasetemp() / "no-daemon"))


@pytest.fixture(autouse=True)
def _stop_local_aws_servers():
    """A local run inside a test starts its config repo's local AWS server: the test stops it."""
    yield
    from dorc_sim.awsserver.control import stop_started_here

    stop_started_here()


@pytest.fixture(scope="session", autouse=True)
def _stop_subprocess_servers(tmp_path_factory):
    """Servers that `dorc` subprocesses started on the tests' config repos: stopped by their PIDs."""
    yield
    from dorc_sim.aws import stop_server

    for info in tmp_path_factory.getbasetemp().rglob("local-aws/server.json"):
        stop_server(info.parent)


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

    monkeypatch.setenv("COLUMNS", "2000")  # dorc wraps its lines at the terminal's width; keep them whole

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
