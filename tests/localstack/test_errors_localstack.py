"""LocalStack forgets what it held when it restarts (without persistence), while dorc's
deployment records still say it is deployed: ``--no-deploy`` then says so, instead of a
``StateMachineDoesNotExist`` traceback."""

from __future__ import annotations

import json

import pytest

from helpers import OK_HANDLER, chain_main, make_project

pytestmark = pytest.mark.localstack


def test_no_deploy_after_a_localstack_restart_says_to_deploy_again(cli, dorc_localstack, tmp_path):
    root = make_project(tmp_path, {"gone/main": {"main": chain_main("a", "b"),
                                                 "functions": {"a": OK_HANDLER, "b": OK_HANDLER}}}, name="rst")
    args = ["--localstack", "--endpoint", dorc_localstack.endpoint, "--config-repo", root]
    assert cli("run", "gone", "main", *args).exit_code == 0
    runs_before = sorted((root / ".dorc/runs").glob("*.json"))
    # a restart without persistence: the state machine is gone, the deployment record is not
    sfn = dorc_localstack.client("stepfunctions", region_name="eu-west-2")
    [machine] = [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "gone-main-localstack"]
    sfn.delete_state_machine(stateMachineArn=machine["stateMachineArn"])

    r = cli("run", "gone", "main", "--no-deploy", "--json", *args)
    assert "Traceback" not in r.output
    assert r.exit_code == 2  # nothing ran
    err = json.loads(r.stdout)["error"]
    assert err["message"] == (f"gone/main is recorded as deployed but LocalStack at {dorc_localstack.endpoint} "
                              "does not have it (restarted?): missing state machine gone-main-localstack")
    assert err["hint"].startswith("run without --no-deploy")
    assert "error: gone/main is recorded as deployed but LocalStack" in r.stderr
    assert sorted((root / ".dorc/runs").glob("*.json")) == runs_before  # nothing ran, nothing recorded

    r = cli("run", "gone", "main", *args)  # what the message says to do
    assert r.exit_code == 0 and "pipeline succeeded" in r.stdout
