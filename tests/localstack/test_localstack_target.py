"""The LocalStack target's edges: a vendored requirement, repairs, unreachable endpoints, time-outs."""

from __future__ import annotations

import socket

import pytest

from dorc.api import run_pipeline
from dorc.project import find_project
from helpers import OK_HANDLER, chain_main, make_project

pytestmark = pytest.mark.localstack

VENDORED = """
import os

import humanize  # not installed on this machine: only the package's vendored copy can provide it


def handler(event, context):
    here = os.path.realpath(humanize.__file__)
    root = os.path.realpath(os.environ["LAMBDA_TASK_ROOT"])
    return {"statusCode": 200, "body": {"words": humanize.intword(331449281),
                                        "from_package": here.startswith(root + os.sep)}}
"""


def test_a_vendored_requirement_is_importable_in_localstack(dorc_localstack, tmp_path):
    with pytest.raises(ImportError):  # only the package's vendored copy may provide it
        __import__("humanize")
    root = make_project(tmp_path, {"vend/main": {"main": chain_main("f1"),
                                                 "functions": {"f1": {"lambda.py": VENDORED,
                                                                      "requirements.txt": "humanize==4.17.0\n"}}}},
                        name="vendored")
    result = run_pipeline("vend", "main", target="localstack", project=find_project(root),
                          endpoint=dorc_localstack.endpoint, record=False)
    assert result.succeeded, result.error
    assert result.output["body"] == {"words": "331.4 million", "from_package": True}


def test_a_rerun_repairs_a_half_done_deployment(dorc_localstack, tmp_path):
    root = make_project(tmp_path, {"rep/main": {"main": chain_main("a", "b"),
                                                "functions": {"a": OK_HANDLER, "b": OK_HANDLER}}}, name="repair")
    project = find_project(root)
    ep = dorc_localstack.endpoint
    assert run_pipeline("rep", "main", target="localstack", project=project, endpoint=ep, record=False).succeeded
    # lose part of the deployment, as a deploy interrupted half way would leave it
    lam = dorc_localstack.client("lambda", region_name=project.settings.region)
    lam.delete_function(FunctionName="rep-main-b-localstack")
    result = run_pipeline("rep", "main", target="localstack", project=project, endpoint=ep, record=False)
    assert result.succeeded, result.error
    assert [s.function for s in result.steps] == ["a", "b"]


def test_an_unreachable_endpoint_is_a_clear_error_with_exit_2(cli, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    root = make_project(tmp_path, {"x/main": {"main": chain_main("f1"), "functions": {"f1": OK_HANDLER}}})
    r = cli("run", "x", "main", "--localstack", "--endpoint", f"http://127.0.0.1:{port}", "--config-repo", root)
    assert r.exit_code == 2
    assert f"LocalStack is not reachable at http://127.0.0.1:{port}" in r.stderr
    assert "dorc localstack start" in r.stderr
    assert "Traceback" not in r.output


def test_an_execution_that_does_not_finish_is_stopped_with_a_clear_message(cli, dorc_localstack, tmp_path):
    slow = "import time\n\ndef handler(event, context):\n    time.sleep(30)\n    return {'statusCode': 200, 'body': ''}\n"
    root = make_project(tmp_path, {"slow/main": {"main": chain_main("f1", f1="timeout=60"),
                                                 "functions": {"f1": slow}}}, name="slow")
    r = cli("run", "slow", "main", "--localstack", "--endpoint", dorc_localstack.endpoint, "--timeout", "3",
            "--json", "--config-repo", root)
    assert r.exit_code == 1
    import json

    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "dorc.ExecutionTimeout"
    assert "did not finish within 3 s" in doc["error"]["message"]


def test_deploy_then_destroy_twice(cli, dorc_localstack, tmp_path):
    root = make_project(tmp_path, {"gone/main": {"main": chain_main("f1"), "functions": {"f1": OK_HANDLER}}},
                        name="destroy")
    (root / "src/gone/main/Pulumi.preprod.yaml").write_text("config:\n  aws:region: eu-west-2\n")
    args = ["--env", "preprod", "--target", "localstack", "--endpoint", dorc_localstack.endpoint, "--config-repo", root]
    r = cli("deploy", "gone", "main", *args)
    assert r.exit_code == 0, r.output
    lam = dorc_localstack.client("lambda", region_name="eu-west-2")
    assert lam.get_function(FunctionName="gone-main-f1-preprod")["Configuration"]["State"] == "Active"
    r = cli("destroy", "gone", "main", *args, "--yes")
    assert r.exit_code == 0, r.output
    assert "deleted function gone-main-f1-preprod" in r.output
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="gone-main-f1-preprod")
    r = cli("destroy", "gone", "main", *args, "--yes")  # nothing left: still fine
    assert r.exit_code == 0, r.output
    r = cli("destroy", "gone", "main", "--env", "preprod", "--target", "localstack", "--config-repo", root)
    assert r.exit_code == 2 and "without --yes" in r.stderr


TRIGGERED = """
def handler(event, context):
    detail = event.get("detail", {}) if isinstance(event, dict) else {}
    return {"statusCode": 200, "body": {"key": detail.get("object", {}).get("key")}}
"""


def test_an_s3_trigger_starts_the_pipeline_when_an_object_lands(dorc_localstack, tmp_path):
    import time

    main = chain_main("f1").replace(
        "    functions=[", "    trigger=S3Trigger(name='arrivals', bucket_name='{project}-holding-{env}', key_prefix='incoming/'),\n    functions=[")
    main = main.replace("from dorc import ", "from dorc import S3Trigger, ")
    root = make_project(tmp_path, {"trig/main": {"main": main, "functions": {"f1": TRIGGERED}}}, name="trig")
    project = find_project(root)
    ep = dorc_localstack.endpoint
    first = run_pipeline("trig", "main", target="localstack", project=project, endpoint=ep, record=False)
    assert first.succeeded, first.error
    sfn = dorc_localstack.client("stepfunctions", region_name="eu-west-2")
    arn = first.execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
    s3 = dorc_localstack.client("s3", region_name="eu-west-2")
    s3.put_object(Bucket="trig-holding-localstack", Key="elsewhere/x.json", Body=b"{}")  # not under the prefix
    s3.put_object(Bucket="trig-holding-localstack", Key="incoming/2020.json", Body=b"{}")
    deadline = time.monotonic() + 30
    triggered = []
    while time.monotonic() < deadline and not triggered:
        runs = sfn.list_executions(stateMachineArn=arn)["executions"]
        triggered = [r for r in runs if r["executionArn"] != first.execution_arn and r["status"] != "RUNNING"]
        time.sleep(0.5)
    assert len(triggered) == 1, runs
    out = sfn.describe_execution(executionArn=triggered[0]["executionArn"])
    assert out["status"] == "SUCCEEDED"
    import json

    assert json.loads(out["output"])["body"]["key"] == "incoming/2020.json"
