"""IAM enforced in local runs as in AWS: each sandbox calls the local AWS with its function's role
session, and a call the plan does not grant fails with AccessDenied (the same words AWS uses);
``--no-iam`` turns it off for one run and says so."""

from __future__ import annotations

import json

import pytest

from dorc_sim.iam.asks import asks
from dorc_sim.iam.policy import EXPLICIT_DENY, IMPLICIT_DENY, Ask, decide, evaluate
from helpers import make_project

MAIN = '''
from dorc import CreatePipeline, Function, Permission, PipelineDefinition, S3Trigger, load_config

config = load_config(__file__)
CreatePipeline(config, PipelineDefinition(
    file_path=__file__,
    description="reads another bucket",%s
    functions=[Function(name="f1", permissions=[%s], managed_policies=[%s])],
)).apply()
'''
GRANT = 'Permission(actions=["s3:GetObject"], resources=["arn:aws:s3:::{project}-source/in/*"])'
READER = '''
import boto3

def handler(event, context):
    s3 = boto3.client("s3")
    who = boto3.client("sts").get_caller_identity()["Arn"]
    key = event.get("detail", {}).get("object", {}).get("key", "in/data.csv")
    bucket = event.get("detail", {}).get("bucket", {}).get("name", "iam-source")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    s3.put_object(Bucket="iam-holding-local", Key="copy.csv", Body=body.encode())  # the default grant
    return {"statusCode": 200, "body": {"read": body, "who": who}}
'''


def _project(tmp_path, *, trigger="", permission="", managed=""):
    return make_project(tmp_path, {"demo/main": {"main": MAIN % (trigger, permission, managed),
                                                 "functions": {"f1": READER}}}, name="iam")


def _seed(cli, tmp_path, key="in/data.csv"):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    assert cli("store", "put", f"s3://iam-source/{key}", str(data)).exit_code == 0


def test_a_read_outside_the_grant_is_denied_then_passes_once_declared(cli, tmp_path, monkeypatch):
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    _seed(cli, tmp_path)
    denied = cli("run", "demo", "main", "--local", "-q", "--json")
    assert denied.exit_code == 1
    out = json.loads(denied.stdout)
    assert out["iam"] == "enforced"
    assert out["error"]["type"] == "AccessDenied"  # botocore models S3's AccessDenied, as in LocalStack and AWS
    assert ("An error occurred (AccessDenied) when calling the GetObject operation: User: arn:aws:sts::000000000000:"
            "assumed-role/iam-demo-main-f1-local/demo-main-f1-local is not authorized to perform: s3:GetObject on "
            'resource: "arn:aws:s3:::iam-source/in/data.csv" because no identity-based policy allows the s3:GetObject '
            "action") in out["error"]["message"]

    (root / "src/demo/main/__main__.py").write_text(MAIN % ("", GRANT, ""))
    granted = cli("run", "demo", "main", "--local", "-q", "--json")
    assert granted.exit_code == 0, granted.output
    body = json.loads(granted.stdout)["output"]["body"]
    assert body == {"read": "a,b\n", "who": "arn:aws:sts::000000000000:assumed-role/iam-demo-main-f1-local/demo-main-f1-local"}
    assert json.loads(cli("runs", "show", "last", "--json").stdout)["iam"] == "enforced"


def test_no_iam_turns_the_checks_off_for_one_run_and_says_so(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(_project(tmp_path))
    _seed(cli, tmp_path)
    ran = cli("run", "demo", "main", "--local", "--no-iam")
    assert ran.exit_code == 0, ran.output
    assert "iam: off (--no-iam)" in ran.output
    assert json.loads(cli("runs", "show", "last", "--json").stdout)["iam"] == "off (--no-iam)"
    assert cli("invoke", "demo", "main", "f1", "--no-iam").exit_code == 0
    assert cli("invoke", "demo", "main", "f1").exit_code == 1  # enforced again
    assert cli("run", "demo", "main", "--local", "-q").exit_code == 1


def test_no_iam_is_refused_for_localstack_runs(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(_project(tmp_path))
    ran = cli("run", "demo", "main", "--localstack", "--no-iam")
    assert ran.exit_code == 2
    assert "--no-iam turns off the local AWS's IAM checks: it applies to local runs only" in ran.output
    assert "DORC_ENFORCE_IAM=0" in ran.output


def test_an_s3_trigger_grants_read_under_its_prefix_only(cli, tmp_path, monkeypatch):
    trigger = '\n    trigger=S3Trigger(name="landed", bucket_name="iam-source", key_prefix="in/"),'
    monkeypatch.chdir(_project(tmp_path, trigger=trigger))
    _seed(cli, tmp_path)
    _seed(cli, tmp_path, key="private/data.csv")
    ran = cli("run", "demo", "main", "--local", "-q", "--trigger", "landed", "--key", "in/data.csv")
    assert ran.exit_code == 0, ran.output
    plan = cli("list")  # each function's effective permissions
    assert "Allow s3:GetObject on arn:aws:s3:::iam-source/in/* (trigger landed)" in plan.output
    # the handler reads where the event points; outside the trigger's prefix the role may not
    event = json.dumps({"detail": {"bucket": {"name": "iam-source"}, "object": {"key": "private/data.csv"}}})
    denied = cli("run", "demo", "main", "--local", "-q", "--event", event)
    assert denied.exit_code == 1
    assert 'not authorized to perform: s3:GetObject on resource: "arn:aws:s3:::iam-source/private/data.csv"' in denied.output


def test_a_managed_policy_the_local_aws_knows_is_enforced_and_an_unknown_one_is_said(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(_project(tmp_path, managed='"arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"'))
    _seed(cli, tmp_path)
    assert cli("run", "demo", "main", "--local", "-q").exit_code == 0  # AWS's read-only policy allows the read

    own = "arn:aws:iam::000000000000:policy/legacy"
    monkeypatch.chdir(_project(tmp_path / "b", managed=repr(own)))
    _seed(cli, tmp_path)
    ran = cli("run", "demo", "main", "--local", "--json")
    assert ran.exit_code == 1
    warnings = json.loads(ran.stdout)["warnings"]
    assert any(own in w and "not known to the local AWS" in w and "--no-iam" in w for w in warnings), warnings


# -- the decision itself, as IAM's policy evaluation logic defines it ------------------------------
def _doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


ALLOW_READ = {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}


@pytest.mark.parametrize("statements, ask, outcome", [
    ([ALLOW_READ], Ask("s3:GetObject", "arn:aws:s3:::b/k"), "allowed"),
    ([ALLOW_READ], Ask("S3:getobject", "arn:aws:s3:::b/k"), "allowed"),  # actions are case-insensitive
    ([ALLOW_READ], Ask("s3:GetObject", "arn:aws:s3:::B/k"), IMPLICIT_DENY),  # resources are not
    ([ALLOW_READ], Ask("s3:PutObject", "arn:aws:s3:::b/k"), IMPLICIT_DENY),
    ([ALLOW_READ, {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/secret/*"}],
     Ask("s3:GetObject", "arn:aws:s3:::b/secret/x"), EXPLICIT_DENY),
    ([{"Effect": "Allow", "NotAction": "s3:DeleteObject", "Resource": "*"}], Ask("s3:DeleteObject", "arn:aws:s3:::b/k"),
     IMPLICIT_DENY),
    ([{"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::b/*"}], Ask("s3:GetObject", "arn:aws:s3:::c/k"),
     "allowed"),
    ([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/[x]"}],
     Ask("s3:GetObject", "arn:aws:s3:::b/x"), IMPLICIT_DENY),  # [] is no wildcard in IAM
    ([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/?"}],
     Ask("s3:GetObject", "arn:aws:s3:::b/x"), "allowed"),
    # conditions: a listing under the granted prefix only
    ([{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
       "Condition": {"StringLike": {"s3:prefix": ["in/*"]}}}], Ask("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "in/x"}),
     "allowed"),
    ([{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
       "Condition": {"StringLike": {"s3:prefix": ["in/*"]}}}], Ask("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "out/"}),
     IMPLICIT_DENY),
    ([{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
       "Condition": {"StringLike": {"s3:prefix": ["in/*"]}}}], Ask("s3:ListBucket", "arn:aws:s3:::b"), IMPLICIT_DENY),
    ([{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
       "Condition": {"StringLikeIfExists": {"s3:prefix": ["in/*"]}}}], Ask("s3:ListBucket", "arn:aws:s3:::b"), "allowed"),
    ([{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
       "Condition": {"Null": {"s3:prefix": "true"}}}], Ask("s3:ListBucket", "arn:aws:s3:::b"), "allowed"),
    ([ALLOW_READ, {"Effect": "Deny", "Action": "*", "Resource": "*",
                   "Condition": {"StringNotEquals": {"aws:RequestedRegion": "eu-west-2"}}}],
     Ask("s3:GetObject", "arn:aws:s3:::b/k"), EXPLICIT_DENY),  # the context's region is us-east-1
    # a key dorc cannot know: lenient both ways
    ([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
       "Condition": {"StringEquals": {"s3:ExistingObjectTag/team": "data"}}}], Ask("s3:GetObject", "arn:aws:s3:::b/k"),
     "allowed"),
    ([ALLOW_READ, {"Effect": "Deny", "Action": "*", "Resource": "*",
                   "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}}], Ask("s3:GetObject", "arn:aws:s3:::b/k"),
     "allowed"),
])
def test_policy_evaluation(statements, ask, outcome):
    context = {"aws:RequestedRegion": "us-east-1"}
    assert evaluate([_doc(*statements)], ask, context).outcome == outcome


def test_several_documents_and_the_first_refused_ask_is_reported():
    docs = [json.dumps(_doc(ALLOW_READ)), _doc({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::c/*"})]
    assert decide(docs, [Ask("s3:GetObject", "arn:aws:s3:::b/k"), Ask("s3:PutObject", "arn:aws:s3:::c/k")]) is None
    refused = decide(docs, [Ask("s3:GetObject", "arn:aws:s3:::b/k"), Ask("s3:PutObject", "arn:aws:s3:::b/k")])
    assert refused.ask == Ask("s3:PutObject", "arn:aws:s3:::b/k")
    assert refused.message("arn:aws:sts::1:assumed-role/r/s") == (
        'User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: s3:PutObject on resource: '
        '"arn:aws:s3:::b/k" because no identity-based policy allows the s3:PutObject action')


@pytest.mark.parametrize("service, operation, params, expected", [
    ("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "in/"}, [("s3:ListBucket", "arn:aws:s3:::b")]),
    ("s3", "HeadObject", {"Bucket": "b", "Key": "k"}, [("s3:GetObject", "arn:aws:s3:::b/k")]),
    ("s3", "CopyObject", {"Bucket": "b", "Key": "k", "CopySource": "src/a%20b"},
     [("s3:GetObject", "arn:aws:s3:::src/a b"), ("s3:PutObject", "arn:aws:s3:::b/k")]),
    ("s3", "DeleteObjects", {"Bucket": "b", "Delete": {"Objects": [{"Key": "x"}, {"Key": "y"}]}},
     [("s3:DeleteObject", "arn:aws:s3:::b/x"), ("s3:DeleteObject", "arn:aws:s3:::b/y")]),
    ("s3", "ListBuckets", {}, [("s3:ListAllMyBuckets", "*")]),
    ("dynamodb", "BatchWriteItem", {"RequestItems": {"t1": [], "t2": []}},
     [("dynamodb:BatchWriteItem", "arn:aws:dynamodb:r:1:table/t1"), ("dynamodb:BatchWriteItem", "arn:aws:dynamodb:r:1:table/t2")]),
    ("dynamodb", "TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "t"}}, {"Delete": {"TableName": "u"}}]},
     [("dynamodb:PutItem", "arn:aws:dynamodb:r:1:table/t"), ("dynamodb:DeleteItem", "arn:aws:dynamodb:r:1:table/u")]),
    ("sqs", "SendMessageBatch", {"QueueUrl": "http://127.0.0.1:1/1/q"}, [("sqs:SendMessage", "arn:aws:sqs:r:1:q")]),
    ("sns", "PublishBatch", {"TopicArn": "arn:aws:sns:r:1:t"}, [("sns:Publish", "arn:aws:sns:r:1:t")]),
    ("ssm", "GetParameters", {"Names": ["/a/b", "c"]},
     [("ssm:GetParameters", "arn:aws:ssm:r:1:parameter/a/b"), ("ssm:GetParameters", "arn:aws:ssm:r:1:parameter/c")]),
    ("events", "PutEvents", {"Entries": [{"Source": "s"}, {"EventBusName": "bus"}]},
     [("events:PutEvents", "arn:aws:events:r:1:event-bus/bus"), ("events:PutEvents", "arn:aws:events:r:1:event-bus/default")]),
    ("glue", "GetTable", {"DatabaseName": "d", "Name": "t"},
     [("glue:GetTable", "arn:aws:glue:r:1:catalog"), ("glue:GetTable", "arn:aws:glue:r:1:database/d"),
      ("glue:GetTable", "arn:aws:glue:r:1:table/d/t")]),
    ("athena", "StartQueryExecution", {"QueryString": "SELECT 1"}, [("athena:StartQueryExecution", "arn:aws:athena:r:1:workgroup/primary")]),
    ("lambda", "Invoke", {"FunctionName": "f"}, [("lambda:InvokeFunction", "arn:aws:lambda:r:1:function:f")]),
    ("lambda", "Invoke", {"FunctionName": "arn:aws:lambda:r:1:function:f", "Qualifier": "2"},
     [("lambda:InvokeFunction", "arn:aws:lambda:r:1:function:f:2")]),
    ("lambda", "Invoke", {"FunctionName": "1:function:f"}, [("lambda:InvokeFunction", "arn:aws:lambda:r:1:function:f")]),
    ("states", "DescribeExecution", {"executionArn": "arn:aws:states:r:1:execution:m:x"},
     [("states:DescribeExecution", "arn:aws:states:r:1:execution:m:x")]),
    ("kinesis", "PutRecord", {"StreamName": "s"}, [("kinesis:PutRecord", None)]),  # not named here: any Resource matches
])
def test_what_a_request_asks_for(service, operation, params, expected):
    got = asks(service, operation, params, region="r", account="1")
    assert [(a.action, a.resource) for a in got] == expected
