"""Promotion gates that must hold without --force, rehearsed against LocalStack: each test is
one way a build that never ran successfully used to reach preprod or prod, and shows the refusal.

Each test uses its own instance name: the functions of all tests live in one LocalStack."""

from __future__ import annotations

import json
import shutil

import pytest

from dorc.api import plan_layer, run_records
from dorc.project import find_project
from dorc.targets.localstack.backend import LocalStackBackend
from helpers import chain_main, make_project

pytestmark = pytest.mark.localstack

HANDLER = """
VERSION = {version!r}

def handler(event, context):
    if VERSION == "broken" or (isinstance(event, dict) and event.get("fail")):
        return {{"statusCode": 500, "body": "asked to fail"}}
    return {{"statusCode": 200, "body": {{"version": VERSION, "from": context.function_name}}}}
"""
STACK_SETTINGS = "config:\n  aws:region: eu-west-2\n"


def _project(tmp_path, instance: str, *, name: str = "rehearsal", dirname: str = "proj", layers=None):
    """``<instance>/daily``: extract -> load (or ``layers``), with preprod and prod settings."""
    layers = layers or {f"{instance}/daily": {
        "main": chain_main("extract", "load"),
        "functions": {"extract": HANDLER.format(version="v1"), "load": HANDLER.format(version="v1")}}}
    root = make_project(tmp_path, layers, name=name, dirname=dirname)
    for key in layers:
        for env in ("preprod", "prod"):
            (root / "src" / key / f"Pulumi.{env}.yaml").write_text(STACK_SETTINGS)
    return root


def _edit(root, instance: str, version: str, function: str = "extract") -> None:
    (root / "src" / instance / "daily" / "src" / function / "lambda.py").write_text(HANDLER.format(version=version))


@pytest.fixture
def ls(dorc_localstack):
    """``--endpoint`` and ``--target localstack --endpoint`` for this session's LocalStack."""
    ep = dorc_localstack.endpoint
    return {"ep": ep, "run": ["--localstack", "--endpoint", ep], "target": ["--target", "localstack", "--endpoint", ep]}


def test_a_no_deploy_run_of_older_deployed_code_does_not_vouch_for_the_local_build(cli, tmp_path, ls):
    """v1 deployed and run; the sources broken since; ``--no-deploy`` runs v1 again and succeeds:
    that run is recorded as a run of v1's packages, not of the broken sources, and the broken
    build is not promoted."""
    root = _project(tmp_path, "nodeploy")
    repo = ["--config-repo", str(root)]
    assert cli("run", "nodeploy", "daily", *ls["run"], "-q", *repo).exit_code == 0
    _edit(root, "nodeploy", "broken")
    r = cli("run", "nodeploy", "daily", *ls["run"], "--no-deploy", "--json", *repo)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"][0]["output"]["body"]["version"] == "v1"  # the deployed code ran

    deployed_run, no_deploy_run = run_records(project=find_project(root))[::-1][-2:]
    key = "nodeploy/daily"
    assert no_deploy_run["sources"] == {}  # the local (broken) sources did not run
    assert no_deploy_run["packages"][key] == deployed_run["packages"][key]  # v1's packages did
    assert no_deploy_run["plan_digests"][key] == deployed_run["plan_digests"][key]

    r = cli("promote", "nodeploy", "daily", "--to", "preprod", *ls["target"], *repo)
    assert r.exit_code == 1
    assert "refused: the last run of nodeploy/daily with this build did not succeed (stale; localstack run" in r.stderr
    assert "ran other packages (what was deployed, not this build)" in r.stderr
    assert "dorc run nodeploy daily --local or --localstack" in r.stderr
    project = find_project(root)
    assert LocalStackBackend(project, ls["ep"]).deployed(plan_layer(project, "nodeploy", "daily", "preprod")) is None


def test_prod_refused_when_another_checkout_runs_other_code_in_preprod(cli, tmp_path, ls):
    """Checkout A promotes v1 to preprod and its preprod run fails; checkout B deploys v2 there
    and runs it successfully. A's deployment record still says v1: A must not promote to prod."""
    a = _project(tmp_path, "checkout", dirname="a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    repo_a, repo_b = ["--config-repo", str(a)], ["--config-repo", str(b)]

    assert cli("run", "checkout", "daily", "--local", "-q", *repo_a).exit_code == 0
    assert cli("promote", "checkout", "daily", "--to", "preprod", *ls["target"], *repo_a).exit_code == 0
    r = cli("run", "checkout", "daily", *ls["run"], "--no-deploy", "--env", "preprod", "--event", '{"fail": true}',
            "-q", *repo_a)
    assert r.exit_code == 1  # A's build failed its own preprod run

    _edit(b, "checkout", "v2")
    assert cli("run", "checkout", "daily", "--local", "-q", *repo_b).exit_code == 0
    assert cli("promote", "checkout", "daily", "--to", "preprod", *ls["target"], *repo_b).exit_code == 0
    assert cli("run", "checkout", "daily", *ls["run"], "--no-deploy", "--env", "preprod", "-q",
               *repo_b).exit_code == 0  # B's code succeeded in preprod, after A's deployment

    project = find_project(a)
    backend = LocalStackBackend(project, ls["ep"])
    record = backend.deployed(plan_layer(project, "checkout", "daily", "preprod"))
    running = backend.running(record).packages
    assert running["extract"] != record.packages["extract"] and running["load"] == record.packages["load"]

    for extra in ([], ["--force", "--skip-checks"]):
        r = cli("promote", "checkout", "daily", "--to", "prod", *extra, *ls["target"], *repo_a)
        assert r.exit_code == 1, r.output
        assert "refused: what preprod runs is not what its deployment record says (localstack):" in r.stderr
        assert (f"function extract: runs code {running['extract'][:12]}, recorded "
                f"{record.packages['extract'][:12]}") in r.stderr
        assert "function load" not in r.stderr
        assert "another checkout" in r.stderr
    assert backend.deployed(plan_layer(project, "checkout", "daily", "prod")) is None


def test_a_settings_change_after_the_last_run_is_not_the_build_that_ran(cli, tmp_path, ls):
    """The functions' sources are unchanged, but ``__main__.py`` changed a timeout and a
    variable after the last successful run: that run did not run these settings."""
    root = _project(tmp_path, "settings")
    repo = ["--config-repo", str(root)]
    assert cli("run", "settings", "daily", "--local", "-q", *repo).exit_code == 0
    main = root / "src/settings/daily/__main__.py"
    main.write_text(main.read_text().replace("name='extract'", "name='extract', timeout=3, "
                                                               "environment={'MODE': 'strict'}"))

    r = cli("promote", "settings", "daily", "--to", "preprod", *ls["target"], *repo)
    assert r.exit_code == 1
    assert ("did not succeed (stale; local run" in r.stderr
            and "ran other settings (the definition or its settings changed since)" in r.stderr)

    assert cli("run", "settings", "daily", "--local", "-q", *repo).exit_code == 0  # these settings, run
    r = cli("promote", "settings", "daily", "--to", "preprod", *ls["target"], *repo)
    assert r.exit_code == 0, r.output


def test_a_layer_is_refused_where_its_hand_over_target_is_not_deployed(cli, tmp_path, ls):
    """daily hands over to report: promoting daily alone would deploy a state machine that
    starts one that does not exist, failing only at run time."""
    root = _project(tmp_path, "chain", layers={
        "chain/daily": {"main": chain_main("extract", handover="report"),
                        "functions": {"extract": HANDLER.format(version="v1")}},
        "chain/report": {"main": chain_main("summary"), "functions": {"summary": HANDLER.format(version="v1")}},
    })
    repo = ["--config-repo", str(root)]
    assert cli("run", "chain", "daily", "--local", "-q", *repo).exit_code == 0  # daily, then report

    r = cli("promote", "chain", "daily", "--to", "preprod", *ls["target"], *repo)
    assert r.exit_code == 1
    assert ("refused: chain/daily hands over to chain/report, and chain/report is not deployed to preprod on "
            "localstack") in r.stderr
    assert "dorc promote chain report --to preprod" in r.stderr

    assert cli("promote", "chain", "report", "--to", "preprod", *ls["target"], *repo).exit_code == 0
    assert cli("promote", "chain", "daily", "--to", "preprod", *ls["target"], *repo).exit_code == 0
    r = cli("run", "chain", "daily", *ls["run"], "--no-deploy", "--env", "preprod", "--json", *repo)
    assert r.exit_code == 0, r.output  # the whole chain runs in preprod
    assert [s["function"] for s in json.loads(r.stdout)["steps"]] == ["extract", "summary"]


def test_a_deploy_refuses_functions_of_another_project(cli, tmp_path, ls):
    """Two projects with the same instance and layer deploy the same names to one endpoint:
    the second must not take over the first one's functions."""
    ours = _project(tmp_path, "owner", name="rehearsal", dirname="ours")
    theirs = _project(tmp_path, "owner", name="warehouse", dirname="theirs")
    _edit(theirs, "owner", "theirs")
    assert cli("run", "owner", "daily", *ls["run"], "-q", "--config-repo", str(ours)).exit_code == 0

    r = cli("run", "owner", "daily", *ls["run"], "--config-repo", str(theirs))
    assert r.exit_code == 2  # nothing deployed, nothing ran
    assert "refused to deploy owner/daily (localstack): the endpoint holds resources of the same names" in r.stderr
    for name in ("function owner-daily-extract-localstack", "function owner-daily-load-localstack",
                 "state machine owner-daily-localstack"):
        assert f"{name} belongs to project 'rehearsal' (tag dorc:project), not 'warehouse'" in r.stderr
    assert "another endpoint or account" in r.stderr and "from project 'rehearsal'" in r.stderr

    r = cli("deploy", "owner", "daily", "--env", "localstack", *ls["target"], "--config-repo", str(theirs))
    assert r.exit_code == 2 and "belongs to project 'rehearsal'" in r.stderr
    r = cli("run", "owner", "daily", *ls["run"], "--no-deploy", "--json", "--config-repo", str(ours))
    assert r.exit_code == 0  # ours still runs our code
    assert json.loads(r.stdout)["steps"][0]["output"]["body"]["version"] == "v1"
