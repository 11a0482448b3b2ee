"""Promotion rehearsed against LocalStack: preprod and prod are two environments of the same
plan deployed there. No Pulumi engine, no mocks: the real commands, the real deployments."""

from __future__ import annotations

import json

import pytest

from dorc.api import plan_layer
from dorc.project import find_project
from dorc.targets.localstack.backend import LocalStackBackend
from helpers import chain_main, make_project

pytestmark = pytest.mark.localstack

HANDLER = """
VERSION = {version!r}

def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        return {{"statusCode": 500, "body": "asked to fail"}}
    return {{"statusCode": 200, "body": {{"version": VERSION, "from": context.function_name}}}}
"""
STACK_SETTINGS = "config:\n  aws:region: eu-west-2\n"


@pytest.fixture
def shop(tmp_path):
    root = make_project(tmp_path, {"shop/daily": {
        "main": chain_main("extract", "load"),
        "functions": {"extract": HANDLER.format(version="v1"), "load": HANDLER.format(version="v1")},
    }}, name="rehearsal")
    for env in ("preprod", "prod"):
        (root / "src/shop/daily" / f"Pulumi.{env}.yaml").write_text(STACK_SETTINGS)
    return root


def _edit(root, version):
    (root / "src/shop/daily/src/extract/lambda.py").write_text(HANDLER.format(version=version))


def test_promotion_rehearsal(cli, shop, dorc_localstack):
    ep = dorc_localstack.endpoint
    repo = ["--config-repo", str(shop)]
    lstack = ["--target", "localstack", "--endpoint", ep]

    # nothing deployed yet: prod has no source
    r = cli("promote", "shop", "daily", "--to", "prod", *lstack, *repo)
    assert r.exit_code == 1 and "not deployed to preprod" in r.stderr

    # the local build has not run: refused; after a local run, promoted to preprod
    r = cli("promote", "shop", "daily", "--to", "preprod", *lstack, *repo)
    assert r.exit_code == 1 and "did not succeed" in r.stderr
    assert cli("run", "shop", "daily", "--local", "-q", *repo).exit_code == 0
    r = cli("promote", "shop", "daily", "--to", "preprod", *lstack, *repo)
    assert r.exit_code == 0, r.output
    assert "first deployment of preprod" in r.output

    # preprod has not run since it was deployed: refused
    r = cli("promote", "shop", "daily", "--to", "prod", *lstack, *repo)
    assert r.exit_code == 1 and "last run" in r.stderr and "preprod" in r.stderr

    # a failed preprod run: refused; --skip-checks would pass it, a successful run does
    r = cli("run", "shop", "daily", "--localstack", "--no-deploy", "--env", "preprod", "--endpoint", ep,
            "--event", '{"fail": true}', "-q", *repo)
    assert r.exit_code == 1
    r = cli("promote", "shop", "daily", "--to", "prod", *lstack, *repo)
    assert r.exit_code == 1 and "FAILED" in r.stderr
    assert cli("run", "shop", "daily", "--localstack", "--no-deploy", "--env", "preprod", "--endpoint", ep,
               "-q", *repo).exit_code == 0

    # first promotion to prod: the very packages preprod runs
    r = cli("promote", "shop", "daily", "--to", "prod", "--json", *lstack, *repo)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["from"] == "preprod" and summary["drift"] == []
    project = find_project(shop)
    backend = LocalStackBackend(project, ep)
    preprod_plan = plan_layer(project, "shop", "daily", "preprod")
    prod_plan = plan_layer(project, "shop", "daily", "prod")
    preprod_code = backend.running_packages(preprod_plan)
    assert backend.running_packages(prod_plan) == preprod_code == summary["packages"]

    # drift: a function edited after preprod was deployed
    _edit(shop, "v2")
    r = cli("promote", "shop", "daily", "--to", "prod", *lstack, *repo)
    assert r.exit_code == 1
    assert "drift" in r.stderr and "function extract: package differs" in r.stderr
    assert "function load" not in r.stderr

    # --force promotes preprod's packages, not the edited build: prod still runs v1, byte for byte
    r = cli("promote", "shop", "daily", "--to", "prod", "--force", *lstack, *repo)
    assert r.exit_code == 0, r.output
    assert "promoted despite drift" in r.output
    assert backend.running_packages(prod_plan) == preprod_code
    r = cli("run", "shop", "daily", "--localstack", "--no-deploy", "--env", "prod", "--endpoint", ep, "--json",
            *repo)
    assert r.exit_code == 0
    assert json.loads(r.stdout)["steps"][0]["output"]["body"]["version"] == "v1"
