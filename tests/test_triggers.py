"""Triggers fired locally: ``dorc run ... --trigger NAME [--key KEY]`` sends exactly the event the
trigger delivers in AWS, and ``dorc store put`` starts every layer whose S3 trigger matches the
stored object, as EventBridge does. The events are compared with AWS's documented samples key
for key, so a handler written against them here reads the same fields in AWS."""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import pytest

from dorc import api
from helpers import HEADER, OK_HANDLER, make_project

# Lambda developer guide, "Using Lambda with scheduled events" / EventBridge event structure.
SCHEDULED_SAMPLE = {
    "version": "0", "id": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c", "detail-type": "Scheduled Event",
    "source": "aws.events", "account": "123456789012", "time": "2019-03-01T01:23:45Z", "region": "us-east-2",
    "resources": ["arn:aws:events:us-east-2:123456789012:rule/my-schedule"], "detail": {},
}
# S3 user guide, "EventBridge event message structure", Object created (its "version-id" is there
# only for a versioned bucket; the holding store is not versioned).
OBJECT_CREATED_SAMPLE = {
    "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
    "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
    "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
    "detail": {
        "version": "0", "bucket": {"name": "amzn-s3-demo-bucket1"},
        "object": {"key": "example-key", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                   "sequencer": "617f08299329d189"},
        "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4",
        "reason": "PutObject",
    },
}
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

# Reads the object its event names, from the store, and says what it saw.
READER = """
import boto3


def handler(event, context):
    d = event["detail"]
    body = boto3.client("s3").get_object(Bucket=d["bucket"]["name"], Key=d["object"]["key"])["Body"].read()
    return {"statusCode": 200, "body": {"bucket": d["bucket"]["name"], "key": d["object"]["key"],
                                        "size": d["object"]["size"], "etag": d["object"]["etag"],
                                        "read": len(body), "md5": __import__("hashlib").md5(body).hexdigest()}}
"""
FAILING = """
def handler(event, context):
    raise ValueError("cannot parse " + event["detail"]["object"]["key"])
"""


def layer(trigger: str) -> str:
    return (HEADER + "from dorc import CronTrigger, S3Trigger\n"
            "CreatePipeline(load_config(__file__), PipelineDefinition(file_path=__file__, description='t',\n"
            f"    functions=[Function(name='f1')], trigger={trigger})).apply()\n")


@pytest.fixture
def repo(tmp_path):
    """sales/daily (cron), sales/inbox and sales/audit (S3 triggers on the holding store's inbox/
    and on everything in it), sales/bad (S3 trigger on bad/, a failing handler)."""
    holding = "{project}-holding-{env}"
    return make_project(tmp_path, {
        "sales/daily": {"main": layer("CronTrigger(name='daily', cron='0 6 * * ? *')"), "functions": {"f1": OK_HANDLER}},
        "sales/inbox": {"main": layer(f"S3Trigger(name='upload', bucket_name='{holding}', key_prefix='inbox/')"),
                        "functions": {"f1": READER}},
        "sales/audit": {"main": layer(f"[S3Trigger(name='any', bucket_name='{holding}', key_prefix='')]"),
                        "functions": {"f1": OK_HANDLER}},
        "sales/bad": {"main": layer(f"S3Trigger(name='bad', bucket_name='{holding}', key_prefix='bad/')"),
                      "functions": {"f1": FAILING}},
        "other/plain": {"main": layer("[]"), "functions": {"f1": OK_HANDLER}},
    })


def assert_shaped_like(sample, event, where="event"):
    """Key for key, the same keys in the same order, and values of the same types."""
    assert type(event) is type(sample), f"{where}: {type(event).__name__}, AWS sends {type(sample).__name__}"
    if isinstance(sample, dict):
        assert list(event) == list(sample), f"{where}: keys {list(event)}, AWS sends {list(sample)}"
        for k in sample:
            assert_shaped_like(sample[k], event[k], f"{where}.{k}")
    elif isinstance(sample, list):
        assert len(event) == len(sample), where
        for i, (s, e) in enumerate(zip(sample, event)):
            assert_shaped_like(s, e, f"{where}[{i}]")


def first_input(project_root, layer_name: str) -> dict:
    """The first event the newest run of ``layer_name`` received, from its run record."""
    records = [r for r in api.run_records(config_repo=project_root) if r["layer"] == layer_name]
    return records[0]["steps"][0]["input"]


def test_scheduled_event_matches_aws_sample(repo):
    """``--trigger daily``: EventBridge's Scheduled Event for the layer's rule, fields as AWS fills them."""
    ev = api.trigger_event("sales", "daily", "daily", config_repo=repo)
    assert_shaped_like(SCHEDULED_SAMPLE, ev)
    assert ev["version"] == "0" and ev["detail-type"] == "Scheduled Event" and ev["source"] == "aws.events"
    assert ev["detail"] == {}
    assert str(uuid.UUID(ev["id"])) == ev["id"]
    assert TIME.fullmatch(ev["time"])
    assert ev["account"] == "000000000000" and ev["region"] == "eu-west-2"
    assert ev["resources"] == ["arn:aws:events:eu-west-2:000000000000:rule/sales-daily-daily-local"]
    assert api.trigger_event("sales", "daily", "daily", config_repo=repo)["id"] != ev["id"]  # one id per event


def test_object_created_event_matches_aws_sample(repo, tmp_path):
    """``--trigger upload --key K``: S3's Object Created event about the stored object, its real size and etag."""
    data = tmp_path / "day.csv"
    data.write_bytes(b"day,total\n2026-12-02,41\n")
    api.put_object("s3://t-holding-local/inbox/day.csv", data, config_repo=repo)
    ev = api.trigger_event("sales", "inbox", "upload", key="inbox/day.csv", config_repo=repo)
    assert_shaped_like(OBJECT_CREATED_SAMPLE, ev)
    d = ev["detail"]
    assert (ev["detail-type"], ev["source"], d["version"], d["reason"]) == ("Object Created", "aws.s3", "0", "PutObject")
    assert ev["resources"] == ["arn:aws:s3:::t-holding-local"] and d["bucket"] == {"name": "t-holding-local"}
    assert d["object"]["key"] == "inbox/day.csv"
    assert d["object"]["size"] == len(data.read_bytes())
    assert d["object"]["etag"] == hashlib.md5(data.read_bytes()).hexdigest()  # S3's etag for a single PUT
    assert re.fullmatch(r"[0-9A-F]{16,}", d["object"]["sequencer"])
    assert re.fullmatch(r"[0-9A-Z]{16}", d["request-id"])
    assert d["requester"] == ev["account"] == "000000000000"
    assert d["source-ip-address"] == "127.0.0.1"
    assert str(uuid.UUID(ev["id"])) == ev["id"] and TIME.fullmatch(ev["time"])


def test_run_trigger_cron_handler_receives_scheduled_event(cli, repo):
    """The handler's event is the Scheduled Event, not ``{}``."""
    res = cli("run", "sales", "daily", "--trigger", "daily", "--json", "--config-repo", repo)
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)["steps"][0]["input"]
    assert got["detail-type"] == "Scheduled Event"
    assert got["resources"] == ["arn:aws:events:eu-west-2:000000000000:rule/sales-daily-daily-local"]
    assert "trigger daily: Scheduled Event" in res.stderr


def test_run_trigger_s3_without_key_uses_newest_object(cli, repo, tmp_path):
    """No --key: the newest object under the trigger's prefix, and the handler reads it from the store."""
    for name, text in (("old.csv", "a\n"), ("new.csv", "a,b,c\n")):
        (tmp_path / name).write_text(text)
        res = cli("store", "put", f"s3://t-holding-local/inbox/{name}", tmp_path / name, "--no-trigger",
                  "--config-repo", repo)
        assert res.exit_code == 0, res.output
    res = cli("run", "sales", "inbox", "--trigger", "upload", "--json", "--config-repo", repo)
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)["output"]["body"]
    assert (body["key"], body["size"], body["read"]) == ("inbox/new.csv", 6, 6)


def test_store_put_starts_matching_layers(cli, repo, tmp_path):
    """A file under inbox/ starts sales/inbox (inbox/) and sales/audit (every key), each with the
    Object Created event; sales/inbox's handler reads the stored bytes back."""
    data = tmp_path / "day.csv"
    data.write_bytes(b"day,total\n2026-12-02,41\n")
    res = cli("store", "put", "s3://t-holding-local/inbox/day.csv", data, "--config-repo", repo)
    assert res.exit_code == 0, res.output
    assert "stored s3://t-holding-local/inbox/day.csv in the local store" in res.stdout
    assert "sales/inbox: S3 trigger upload matches" in res.stdout
    assert "sales/audit: S3 trigger any matches" in res.stdout
    assert "sales/bad" not in res.stdout and "2 triggered run(s) succeeded" in res.stdout
    records = api.run_records(config_repo=repo)
    assert sorted(r["layer"] for r in records) == ["audit", "inbox"]
    inbox = next(r for r in records if r["layer"] == "inbox")
    body = inbox["output"]["body"]
    md5 = hashlib.md5(data.read_bytes()).hexdigest()
    assert body == {"bucket": "t-holding-local", "key": "inbox/day.csv", "size": len(data.read_bytes()),
                    "etag": md5, "read": len(data.read_bytes()), "md5": md5}
    assert inbox["steps"][0]["input"]["detail-type"] == "Object Created"
    assert ("t-holding-local", "inbox/day.csv", len(data.read_bytes())) in api.store_objects(config_repo=repo)


def test_store_put_non_matching_prefix_starts_nothing(cli, tmp_path):
    """A key no S3 trigger's prefix covers: stored, nothing runs, and the triggers there are are named."""
    holding = "{project}-holding-{env}"
    repo = make_project(tmp_path, {"sales/inbox": {
        "main": layer(f"S3Trigger(name='upload', bucket_name='{holding}', key_prefix='inbox/')"),
        "functions": {"f1": READER}}})
    (tmp_path / "x.csv").write_text("x\n")
    res = cli("store", "put", "s3://t-holding-local/archive/x.csv", tmp_path / "x.csv", "--config-repo", repo)
    assert res.exit_code == 0, res.output
    assert "no pipeline is triggered by s3://t-holding-local/archive/x.csv" in res.stdout
    assert "sales/inbox upload (S3: objects created under s3://t-holding-local/inbox/)" in res.stdout
    assert api.run_records(config_repo=repo) == []
    assert api.store_objects(config_repo=repo) == [("t-holding-local", "archive/x.csv", 2)]
    res = cli("store", "put", "s3://another-bucket/inbox/x.csv", tmp_path / "x.csv", "--config-repo", repo)
    assert "no pipeline is triggered by s3://another-bucket/inbox/x.csv" in res.stdout  # the bucket counts too
    assert api.run_records(config_repo=repo) == []


def test_store_put_no_trigger_only_stores(cli, repo, tmp_path):
    (tmp_path / "day.csv").write_text("a\n")
    res = cli("store", "put", "s3://t-holding-local/inbox/day.csv", tmp_path / "day.csv", "--no-trigger",
              "--config-repo", repo)
    assert res.exit_code == 0, res.output
    assert "triggered" not in res.stdout and "S3 trigger" not in res.stdout
    assert api.run_records(config_repo=repo) == []
    assert ("t-holding-local", "inbox/day.csv", 2) in api.store_objects(config_repo=repo)


def test_store_put_failed_run_exits_1(cli, repo, tmp_path):
    """A triggered run that fails: its summary, exit 1, and the other matching layer still ran."""
    (tmp_path / "b.csv").write_text("b\n")
    res = cli("store", "put", "s3://t-holding-local/bad/b.csv", tmp_path / "b.csv", "--config-repo", repo)
    assert res.exit_code == 1, res.output
    assert "ValueError" in res.output and "cannot parse bad/b.csv" in res.output
    assert "1 of 2 triggered run(s) succeeded" in res.stdout
    assert sorted((r["layer"], r["status"]) for r in api.run_records(config_repo=repo)) == \
        [("audit", "succeeded"), ("bad", "failed")]


def test_fire_from_the_api(repo):
    """A script does what ``store put`` does: ``put_object`` then ``fire``."""
    stored = api.put_object("s3://t-holding-local/inbox/api.json", b'{"n": 1}', config_repo=repo)
    assert sorted(f.key for f in stored.firings) == ["sales/audit", "sales/inbox"]
    results = api.fire([f for f in stored.firings if f.layer == "inbox"], config_repo=repo)
    assert [r.succeeded for r in results] == [True]
    assert results[0].output["body"]["read"] == 8 and results[0].output["body"]["etag"] == stored.etag


@pytest.mark.parametrize("args, message, hint", [
    (("run", "sales", "daily", "--trigger", "nightly"), "sales/daily has no trigger 'nightly'",
     "its triggers: daily (cron(0 6 * * ? *))"),
    (("run", "other", "plain", "--trigger", "x"), "other/plain has no trigger 'x'", "it declares none"),
    (("run", "sales", "daily", "--trigger", "daily", "--key", "a.csv"), "--key is for S3 triggers", "drop --key"),
    (("run", "sales", "inbox", "--trigger", "upload", "--key", "inbox/missing.csv"),
     "s3://t-holding-local/inbox/missing.csv is not in the local store", "dorc store put s3://t-holding-local/inbox/"),
    (("run", "sales", "inbox", "--trigger", "upload", "--key", "other/a.csv"),
     "is not under s3://t-holding-local/inbox/", "starts with 'inbox/'"),
    (("run", "sales", "inbox", "--trigger", "upload"), "the local store holds none", "dorc store put"),
    (("run", "sales", "inbox", "--key", "inbox/a.csv"), "--key names the object of an S3 trigger's event", "--trigger"),
    (("run", "sales", "daily", "--trigger", "daily", "--event", "{}"), "--trigger sends the event", "choose one"),
    (("run", "sales", "--trigger", "daily"), "--trigger fires one layer's trigger", "dorc run sales LAYER"),
    (("store", "put", "t-holding-local/a.csv", "x"), "is not an S3 object URL", "s3://BUCKET/KEY"),
    (("store", "put", "s3://t-holding-local/a.csv", "no-such-file.csv"), "cannot read no-such-file.csv", "path of a file"),
])
def test_refusals(cli, repo, args, message, hint):
    """Each mistake: one message and its fix, exit 2, nothing ran, nothing stored."""
    res = cli(*args, "--config-repo", repo)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and hint in res.stderr, res.stderr
    assert "Traceback" not in res.output
    assert api.run_records(config_repo=repo) == [] and api.store_objects(config_repo=repo) == []


def test_triggers_skip_a_broken_layer(cli, repo, tmp_path):
    """One definition that does not load does not stop a file from reaching the others: it is named."""
    (repo / "src" / "sales" / "daily" / "__main__.py").write_text("raise RuntimeError('half-edited')\n")
    (tmp_path / "a.csv").write_text("a\n")
    res = cli("store", "put", "s3://t-holding-local/inbox/a.csv", tmp_path / "a.csv", "--config-repo", repo)
    assert res.exit_code == 0, res.output
    assert "not checked for S3 triggers: sales/daily" in res.stdout
    assert "2 triggered run(s) succeeded" in res.stdout
