"""The LocalStack target's edges: a vendored requirement, repairs, unreachable endpoints, time-outs."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from datetime import datetime, timezone

import pytest

from dorc.api import run_pipeline
from dorc.project import find_project
from helpers import OK_HANDLER, build_wheel, chain_main, make_project

pytestmark = pytest.mark.localstack

VENDORED = """
import os

import dorc_probe_words  # not installed here: only the package's vendored copy can provide it


def handler(event, context):
    here = os.path.realpath(dorc_probe_words.__file__)
    root = os.path.realpath(os.environ["LAMBDA_TASK_ROOT"])
    return {"statusCode": 200, "body": {"words": dorc_probe_words.intword(331449281),
                                        "from_package": here.startswith(root + os.sep)}}
"""

PROBE_MODULE = """
def intword(n):
    return f"{n / 1_000_000:.1f} million"
"""


def test_a_vendored_requirement_is_importable_in_localstack(dorc_localstack, tmp_path, monkeypatch):
    with pytest.raises(ImportError):  # only the package's vendored copy may provide it
        __import__("dorc_probe_words")
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "dorc-probe-words", "1.0.0", {"dorc_probe_words/__init__.py": PROBE_MODULE})
    # dorc's pip runs with this environment: the local wheel only, never a package index
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # were the index used after all: no answer
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no index or links from the user's pip.conf
    root = make_project(tmp_path, {"vend/main": {"main": chain_main("f1"),
                                                 "functions": {"f1": {"lambda.py": VENDORED,
                                                                      "requirements.txt": "dorc-probe-words==1.0.0\n"}}}},
                        name="vendored")
    result = run_pipeline("vend", "main", target="localstack", project=find_project(root),
                          endpoint=dorc_localstack.endpoint, record=False)
    assert result.succeeded, result.error
    assert result.output["body"] == {"words": "331.4 million", "from_package": True}


ECHO_NONCE = """
def handler(event, context):
    nonce = event.get("nonce") or (event.get("body") or {}).get("nonce")
    print("nonce", nonce)
    return {"statusCode": 200, "body": {"nonce": nonce}}
"""


def test_each_step_reads_back_its_own_calls_logs(dorc_localstack, tmp_path):
    """Other calls of the same functions (an earlier run, a direct invoke just before) are in the
    same log groups: each step must get the lines of its own call."""
    root = make_project(tmp_path, {"logsel/main": {"main": chain_main("a", "b"),
                                                   "functions": {"a": ECHO_NONCE, "b": ECHO_NONCE}}}, name="logsel")
    project = find_project(root)
    ep = dorc_localstack.endpoint
    first = run_pipeline("logsel", "main", target="localstack", project=project, endpoint=ep, event={"nonce": "one"},
                         record=False)
    lam = dorc_localstack.client("lambda", region_name=project.settings.region)
    lam.invoke(FunctionName="logsel-main-a-localstack", Payload=b'{"nonce": "direct"}')
    second = run_pipeline("logsel", "main", target="localstack", project=project, endpoint=ep, event={"nonce": "two"},
                          record=False)
    seen = set()
    for result, nonce in ((first, "one"), (second, "two")):
        assert result.succeeded, result.error
        assert [s.function for s in result.steps] == ["a", "b"]
        for s in result.steps:
            assert s.request_id and s.request_id not in seen, (s.function, s.request_id)
            seen.add(s.request_id)
            assert s.logs.startswith(f"START RequestId: {s.request_id} "), s.logs
            assert f"nonce {nonce}\n" in s.logs and f"REPORT RequestId: {s.request_id}\t" in s.logs, s.logs


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
    put_at = datetime.now(timezone.utc)  # LocalStack's clock is this host's: later executions start after it

    def started_since_put():
        runs = sfn.list_executions(stateMachineArn=arn)["executions"]
        return [r for r in runs if r["startDate"] >= put_at and r["executionArn"] != first.execution_arn]

    s3.put_object(Bucket="trig-holding-localstack", Key="elsewhere/x.json", Body=b"{}")  # not under the prefix
    s3.put_object(Bucket="trig-holding-localstack", Key="incoming/2020.json", Body=b"{}")
    deadline = time.monotonic() + 30
    while True:
        runs = started_since_put()
        if any(r["status"] != "RUNNING" for r in runs):
            break
        assert time.monotonic() < deadline, f"no triggered execution finished within 30 s: {runs}"
        time.sleep(0.5)
    # the object outside the prefix was put first: had it triggered anything, that would have
    # started by now; give it 2 s more all the same
    time.sleep(2)
    runs = started_since_put()
    assert len(runs) == 1, runs
    out = sfn.describe_execution(executionArn=runs[0]["executionArn"])
    assert out["status"] == "SUCCEEDED"
    assert json.loads(out["output"])["body"]["key"] == "incoming/2020.json"


def test_dry_run_lists_the_calls_and_changes_nothing(cli, dorc_localstack, tmp_path):
    """Plan then execute: a dry run reads LocalStack and plans against it, and makes no call that
    changes it: nothing before a deployment, nothing after one, one code update after an edit."""
    root = make_project(tmp_path, {"dry/main": {"main": chain_main("a", "b"),
                                                "functions": {"a": OK_HANDLER, "b": OK_HANDLER}}}, name="dry")
    (root / "src/dry/main/Pulumi.preprod.yaml").write_text("config:\n  aws:region: eu-west-2\n")
    args = ["--env", "preprod", "--target", "localstack", "--endpoint", dorc_localstack.endpoint, "--config-repo", root]
    lam = dorc_localstack.client("lambda", region_name="eu-west-2")
    names = ["dry-main-a-preprod", "dry-main-b-preprod"]

    def planned(r) -> list[str]:
        """The listed calls: progress lines such as ``  · lambda.CreateFunction <name> (...)``."""
        assert r.exit_code == 0, r.output
        return [m.group(1) for m in re.finditer(r"^\s*· ([a-z0-9]+\.[A-Z][A-Za-z]+ .*)$", r.output, re.M)]

    # before any deployment: every create is listed, and none is made
    r = cli("deploy", "dry", "main", *args, "--dry-run")
    calls = planned(r)
    assert "lambda.CreateFunction dry-main-a-preprod" in "\n".join(calls), r.output
    assert f"{len(calls)} call(s); nothing was changed" in r.output
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=names[0])
    assert not (root / ".dorc/deployments/localstack/dry-main-preprod.json").exists()

    r = cli("deploy", "dry", "main", *args)
    assert r.exit_code == 0, r.output
    r = cli("deploy", "dry", "main", *args, "--dry-run")
    assert planned(r) == [] and "0 call(s); nothing was changed" in r.output, r.output

    before = {n: lam.get_function(FunctionName=n)["Configuration"]["CodeSha256"] for n in names}
    record = (root / ".dorc/deployments/localstack/dry-main-preprod.json").read_text()
    (root / "src/dry/main/src/a/lambda.py").write_text(OK_HANDLER + "\n# edited\n")
    r = cli("deploy", "dry", "main", *args, "--dry-run")
    calls = planned(r)
    lambda_calls = [c for c in calls if c.startswith("lambda.")]
    assert len(lambda_calls) == 1 and lambda_calls[0].startswith("lambda.UpdateFunctionCode dry-main-a-preprod "), calls
    assert [c.split(" ")[0] for c in calls] == ["s3.PutObject", "lambda.UpdateFunctionCode"], calls
    assert "2 call(s); nothing was changed" in r.output
    # the run command plans the same, runs nothing and records no run
    r = cli("run", "dry", "main", "--localstack", "--dry-run", "--env", "preprod",
            "--endpoint", dorc_localstack.endpoint, "--config-repo", root)
    assert planned(r) == calls and "▶" not in r.output, r.output
    assert not (root / ".dorc/runs").exists() or not list((root / ".dorc/runs").iterdir())
    # nothing changed: the same code runs, no package was uploaded, the record is the same
    assert {n: lam.get_function(FunctionName=n)["Configuration"]["CodeSha256"] for n in names} == before
    new_key = calls[0].split(" ")[1].removeprefix("s3://").split("/", 1)[1]
    s3 = dorc_localstack.client("s3", region_name="eu-west-2")
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket="dry-artifacts", Key=new_key)
    assert (root / ".dorc/deployments/localstack/dry-main-preprod.json").read_text() == record


LOG_VARIABLES = """
import os

def handler(event, context):
    seen = {k: os.environ.get(k) for k in ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL")}
    return {"statusCode": 200, "body": {**(event.get("body") or {}), context.function_name: seen}}
"""


def test_tmp_size_and_logging_are_deployed_and_seen_by_the_handler(cli, dorc_localstack, tmp_path):
    """Lambda's EphemeralStorage and LoggingConfig as declared; the handler gets the logging
    variables as Lambda sets them (JSON only, the level in capitals); a change is deployed."""
    main = chain_main("plain", "structured", plain="ephemeral_storage=1024",
                      structured="ephemeral_storage=2048, log_format='JSON', log_level='TRACE'")
    root = make_project(tmp_path, {"tmplog/main": {"main": main, "functions": {"plain": LOG_VARIABLES,
                                                                                "structured": LOG_VARIABLES}}},
                        name="tmplog")
    project = find_project(root)
    result = run_pipeline("tmplog", "main", target="localstack", project=project,
                          endpoint=dorc_localstack.endpoint, record=False)
    assert result.succeeded, result.error
    assert result.output["body"] == {
        "tmplog-main-plain-localstack": {"AWS_LAMBDA_LOG_FORMAT": None, "AWS_LAMBDA_LOG_LEVEL": None},
        "tmplog-main-structured-localstack": {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "TRACE"}}
    lam = dorc_localstack.client("lambda", region_name=project.settings.region)

    def config(name):
        cfg = lam.get_function_configuration(FunctionName=f"tmplog-main-{name}-localstack")
        return cfg["EphemeralStorage"], {k: v for k, v in cfg["LoggingConfig"].items() if k != "LogGroup"}

    assert config("plain") == ({"Size": 1024}, {"LogFormat": "Text"})
    assert config("structured") == ({"Size": 2048}, {"LogFormat": "JSON", "ApplicationLogLevel": "TRACE",
                                                     "SystemLogLevel": "INFO"})
    (root / "src/tmplog/main/__main__.py").write_text(
        chain_main("plain", "structured", plain="log_format='JSON'", structured="ephemeral_storage=2048"))
    r = cli("deploy", "tmplog", "main", "--env", "localstack", "--target", "localstack",
            "--endpoint", dorc_localstack.endpoint, "--config-repo", root)
    assert r.exit_code == 0, r.output
    done = [line.strip() for line in r.output.splitlines() if line.startswith("  · ") and "deploying" not in line]
    assert done == ["· updated configuration of tmplog-main-plain-localstack",
                    "· updated configuration of tmplog-main-structured-localstack"]  # nothing else changed
    assert config("plain") == ({"Size": 512}, {"LogFormat": "JSON", "ApplicationLogLevel": "INFO",
                                               "SystemLogLevel": "INFO"})
    assert config("structured") == ({"Size": 2048}, {"LogFormat": "Text"})
