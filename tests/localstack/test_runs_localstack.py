"""Executions that dorc did not start (an S3 upload's rule, a schedule, someone's boto3) are runs too:
``dorc runs --target localstack`` lists them, ``runs show`` reads one, ``dorc logs`` prints its
functions' lines (issue 12, item 6)."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid

import pytest

from helpers import chain_main, make_project

pytestmark = pytest.mark.localstack

GREET = ("def handler(event, context):\n"
         "    print('hello from greet', event.get('who'))\n"
         "    return {'statusCode': 200, 'body': {'who': event.get('who'), 'fail': event.get('fail', False)}}\n")
CHECK = ("def handler(event, context):\n"
         "    print('checking', event['body']['who'])\n"
         "    if event['body']['fail']:\n"
         "        raise ValueError('asked to fail for ' + event['body']['who'])\n"
         "    return {'statusCode': 200, 'body': 'ok'}\n")


def _wait(sfn, arn: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return desc
        time.sleep(0.2)
    raise AssertionError(f"{arn} still running after 60 s")


def test_executions_started_outside_dorc_are_listed_shown_and_logged(cli, dorc_localstack, tmp_path):
    from dorc.api import plan_layer
    from dorc.project import find_project

    instance = f"hist{uuid.uuid4().hex[:6]}"  # one LocalStack is shared: names of this test only
    root = make_project(tmp_path, {f"{instance}/main": {"main": chain_main("greet", "check"),
                                                         "functions": {"greet": GREET, "check": CHECK}}},
                        name=instance)
    ep = ["--endpoint", dorc_localstack.endpoint, "--config-repo", root]
    assert cli("run", instance, "main", "--localstack", "-q", "--event", '{"who": "dorc"}', *ep).exit_code == 0

    plan = plan_layer(find_project(root), instance, "main", "localstack")
    sfn = dorc_localstack.client("stepfunctions", region_name=plan.region)
    started = {}
    for name, event in (("upload-ok", {"who": "s3"}), ("upload-bad", {"who": "cron", "fail": True})):
        arn = sfn.start_execution(stateMachineArn=plan.state_machine_arn, name=name, input=json.dumps(event))["executionArn"]
        started[name] = _wait(sfn, arn)
    assert started["upload-ok"]["status"] == "SUCCEEDED" and started["upload-bad"]["status"] == "FAILED"

    table = cli("runs", "--target", "localstack", *ep)
    assert table.exit_code == 0, table.output
    assert "executions in localstack, env localstack" in table.stdout
    rows = [line for line in table.stdout.splitlines() if f"{instance}/main" in line]
    assert len(rows) == 3, table.stdout  # dorc's own run and the two started with boto3, newest first
    assert "upload-bad" in rows[0] and "failed" in rows[0]
    assert "upload-ok" in rows[1] and "succeeded" in rows[1]
    assert re.search(r"dorc-[0-9a-f]{20}", rows[2]) and "succeeded" in rows[2]
    assert all(re.search(r"\d+(\.\d)? (ms|s)\s", row) for row in rows)  # durations

    ok = cli("runs", "show", "upload-ok", "--target", "localstack", *ep)
    assert ok.exit_code == 0, ok.output
    assert f"run upload-ok: {instance}/main on localstack (env localstack) succeeded" in ok.stdout
    assert re.search(rf"1\. {instance}/main greet\s+succeeded", ok.stdout)
    assert re.search(rf"2\. {instance}/main check\s+succeeded", ok.stdout)
    assert '"who": "s3"' in ok.stdout and "hello from greet s3" in ok.stdout and "checking s3" in ok.stdout

    bad = cli("runs", "show", "upload-b", "--target", "localstack", "--json", *ep)  # a prefix of the name
    assert bad.exit_code == 0, bad.output
    doc = json.loads(bad.stdout)
    assert doc["id"] == "upload-bad" and doc["status"] == "failed"
    assert doc["steps"][1]["error"]["type"] == "ValueError"
    assert doc["steps"][1]["error"]["message"] == "asked to fail for cron"
    assert "checking cron" in doc["steps"][1]["logs"]

    unknown = cli("runs", "show", "nothing-like-it", "--target", "localstack", *ep)
    assert unknown.exit_code == 2 and "dorc runs --target localstack" in unknown.stderr

    logs = cli("logs", instance, "main", "--target", "localstack", *ep)
    assert logs.exit_code == 0, logs.output
    for line in ("greet hello from greet dorc", "greet hello from greet s3", "check checking cron"):
        assert re.search(rf"^\d\d:\d\d:\d\d {line}$", logs.stdout, re.M), logs.stdout
    assert "ValueError: asked to fail for cron" in logs.stdout


def test_following_logs_yields_lines_written_after_it_started(dorc_localstack, tmp_path):
    """``dorc logs --follow``'s library side: new lines arrive while it polls, old ones once."""
    from dorc import api

    instance = f"follow{uuid.uuid4().hex[:6]}"
    root = make_project(tmp_path, {f"{instance}/main": {"main": chain_main("greet"), "functions": {"greet": GREET}}},
                        name=instance)
    first = api.run_pipeline(instance, "main", target="localstack", event={"who": "first"}, config_repo=root,
                             endpoint=dorc_localstack.endpoint)
    assert first.succeeded, first.error
    events = api.function_logs(instance, "main", endpoint=dorc_localstack.endpoint, follow=True, config_repo=root)
    seen = []

    def too_long(signum, frame):
        raise TimeoutError("no new log lines within 90 s")

    previous = signal.signal(signal.SIGALRM, too_long)  # following never ends by itself
    signal.alarm(90)
    try:
        for e in events:
            seen.append((e["function"], e["message"].strip()))
            if e["message"].startswith("REPORT RequestId"):  # the end of the first run's call
                break
        arn = dorc_localstack.client("stepfunctions", region_name=first.execution_arn.split(":")[3]).start_execution(
            stateMachineArn=first.execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0],
            input=json.dumps({"who": "second"}))["executionArn"]
        for e in events:
            seen.append((e["function"], e["message"].strip()))
            if e["message"].startswith("REPORT RequestId"):
                break
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        events.close()
    assert arn
    assert ("greet", "hello from greet second") in seen
    assert [m for _, m in seen].count("hello from greet first") == 1
