"""Without the Pulumi CLI, every command that needs the engine says so, and how to get it."""

from __future__ import annotations

import pytest

from dorc.targets.pulumi.engine import PULUMI_MISSING, PULUMI_MISSING_HINT, find_pulumi_cli

EXPECTED = (
    "error: the Pulumi CLI is not installed: `dorc deploy`, `dorc destroy` and `dorc promote --target pulumi` "
    "drive it through Pulumi's Automation API\n"
    "  fix: install it (https://www.pulumi.com/docs/install/), run `pulumi login` (or set PULUMI_BACKEND_URL), "
    "and `pip install 'dorc[pulumi]'`. `dorc plan` works without it\n"
)


@pytest.fixture
def no_pulumi_cli(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"  # not /usr/bin: a machine may have pulumi there
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "no-pulumi"))
    assert find_pulumi_cli() is None


@pytest.mark.parametrize("args", [
    ["deploy", "census", "raw", "--env", "prod"],
    ["deploy", "infra", "--env", "prod"],
    ["destroy", "census", "raw", "--env", "prod", "--yes"],
    ["promote", "census", "raw", "--to", "prod", "--skip-checks"],
])
def test_the_exact_message(cli, census_repo, no_pulumi_cli, args):
    r = cli(*args, "--config-repo", census_repo)
    assert r.exit_code == 2
    assert r.stderr.endswith(EXPECTED), r.stderr
    assert "Traceback" not in r.output
    assert PULUMI_MISSING in r.stderr and PULUMI_MISSING_HINT in r.stderr


def test_plan_still_works(cli, census_repo, no_pulumi_cli):
    r = cli("plan", "census", "raw", "--env", "prod", "--config-repo", census_repo)
    assert r.exit_code == 0, r.output
    assert "census-raw-function1-prod" in r.stdout
