"""Triggers against LocalStack: a file put into the deployed holding store is seen by S3's
EventBridge notifications, the deployed rule fires the deployed state machine, and dorc reports
the execution that started (dorc starts nothing itself); ``--trigger`` sends its event as the
execution's input."""

from __future__ import annotations

import json
import re

import pytest

from dorc import api
from helpers import HEADER, make_project

pytestmark = pytest.mark.localstack

READER = """
import boto3


def handler(event, context):
    d = event["detail"]
    body = boto3.client("s3").get_object(Bucket=d["bucket"]["name"], Key=d["object"]["key"])["Body"].read()
    return {"statusCode": 200, "body": {"key": d["object"]["key"], "size": d["object"]["size"], "read": len(body)}}
"""
MAIN = HEADER + """from dorc import S3Trigger
CreatePipeline(load_config(__file__), PipelineDefinition(file_path=__file__, description='t',
    functions=[Function(name='f1')],
    trigger=S3Trigger(name='upload', bucket_name='{project}-holding-{env}', key_prefix='inbox/'))).apply()
"""


def test_store_put_localstack_fires_the_deployed_rule(dorc_localstack, cli, tmp_path):
    """``store put --localstack``: the real rule starts the execution; it succeeds with the
    object's key in its input, and the handler read the object LocalStack stored."""
    repo = make_project(tmp_path, {"trgls/inbox": {"main": MAIN, "functions": {"f1": READER}}}, name="trgls")
    ep = dorc_localstack.endpoint
    api.deploy("trgls", "inbox", env="localstack", target="localstack", endpoint=ep, config_repo=repo)
    data = tmp_path / "day.csv"
    data.write_bytes(b"day,total\n2026-12-02,41\n")

    res = cli("store", "put", "s3://trgls-holding-localstack/inbox/day.csv", data, "--localstack",
              "--endpoint", ep, "--config-repo", repo)
    assert res.exit_code == 0, res.output
    assert "rule trgls-inbox-upload-localstack (S3 trigger upload) fired" in res.stdout
    arn = re.search(r"execution (arn:aws:states:\S+)", res.stdout)[1]
    sfn = dorc_localstack.client("stepfunctions", region_name="eu-west-2")
    desc = sfn.describe_execution(executionArn=arn)
    assert desc["status"] == "SUCCEEDED"
    event = json.loads(desc["input"])
    assert event["detail-type"] == "Object Created" and event["source"] == "aws.s3"
    assert event["detail"]["bucket"]["name"] == "trgls-holding-localstack"
    assert event["detail"]["object"]["key"] == "inbox/day.csv"
    assert json.loads(desc["output"])["body"] == {"key": "inbox/day.csv", "size": 24, "read": 24}
    assert "1 triggered run(s) succeeded" in res.stdout

    # outside the prefix: stored there, no execution starts
    before = len(sfn.list_executions(stateMachineArn=desc["stateMachineArn"])["executions"])
    res = cli("store", "put", "s3://trgls-holding-localstack/archive/day.csv", data, "--localstack",
              "--endpoint", ep, "--config-repo", repo)
    assert res.exit_code == 0, res.output
    assert "no pipeline is triggered by s3://trgls-holding-localstack/archive/day.csv" in res.stdout
    assert len(sfn.list_executions(stateMachineArn=desc["stateMachineArn"])["executions"]) == before

    # --trigger with --localstack: the event about LocalStack's object is the execution's input
    res = cli("run", "trgls", "inbox", "--localstack", "--no-deploy", "--endpoint", ep, "--trigger", "upload",
              "--key", "inbox/day.csv", "--json", "--config-repo", repo)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["steps"][0]["input"]["detail"]["object"]["key"] == "inbox/day.csv"
    assert doc["steps"][0]["input"]["detail"]["object"]["size"] == 24
    assert doc["output"]["body"]["read"] == 24
