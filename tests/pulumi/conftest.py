"""Fixtures for the Pulumi target's tests: private copies of pipeline-config, throw-away
projects, and one offline run per stack, shared by the tests that read it.

Every program runs in-process under Pulumi's mocks (``dorc.targets.pulumi.preview``); nothing here
needs the Pulumi CLI, plugins or AWS.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

try:
    import pulumi  # noqa: F401
    import pulumi_aws  # noqa: F401
except ImportError as exc:  # a developer without the extra may leave these out; CI installs it and must not
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        raise
    sys.stderr.write(f"tests/pulumi left out: the Pulumi target needs pip install 'dorc[pulumi]' ({exc})\n")
    collect_ignore_glob = ["test_*.py"]

from pulumi_helpers import copy_pipeline_config  # noqa: E402


@pytest.fixture(scope="session")
def census_root(tmp_path_factory) -> Path:
    """One private copy of pipeline-config for the whole session (builds land in its .dorc)."""
    return copy_pipeline_config(tmp_path_factory.mktemp("census"))


@pytest.fixture(scope="session")
def census(census_root):
    from dorc.project import find_project

    return find_project(census_root)


@pytest.fixture(scope="session")
def stack_run(census):
    """``stack_run(instance, layer, env)`` -> ``ProgramRun``, each stack run once per session."""
    from dorc.targets.pulumi.preview import run_stack

    cache: dict = {}

    def get(instance: str, layer: str | None = None, env: str | None = None):
        key = (instance, layer, env)
        if key not in cache:
            cache[key] = run_stack(census, instance, layer, env)
        return cache[key]

    return get


@pytest.fixture
def dorc_cli(monkeypatch, capsys):
    """``dorc_cli("plan", ...)`` -> (exit code, stdout, stderr): ``dorc.cli.main()`` in-process."""
    from dorc import cli

    def run(*args: str):
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["dorc", *map(str, args)])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return int(code), out.out, out.err

    return run


def pytest_collection_modifyitems(items):
    """pulumi_aws warns about its own deprecated modules when they are imported; not ours."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws"))
