"""The local AWS server shared by a config repo's runs: started on demand, reused, restarted
when gone, stopped by ``dorc sim stop`` or when idle, and serving every service data pipelines use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from helpers import make_project
from dorc_sim.aws import LocalAWS, server_status, start_server, stop_server
from dorc_sim.awsserver.control import pid_alive, read_info

MAIN = "from dorc import CreatePipeline, PipelineDefinition, Function, load_config\n" \
       "config = load_config(__file__)\n" \
       "CreatePipeline(config, PipelineDefinition(file_path=__file__, description='services', " \
       "functions=[Function(name='f1')])).apply()\n"
OK = "def handler(event, context):\n    return {'statusCode': 200, 'body': {}}\n"

# Every service the README lists, through the handler's own boto3 (no endpoint in the code).
SERVICES = """
import json, boto3

def handler(event, context):
    done = []
    ddb = boto3.client("dynamodb")
    ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    ddb.put_item(TableName="t", Item={"id": {"S": "1"}, "v": {"S": "x"}})
    assert ddb.get_item(TableName="t", Key={"id": {"S": "1"}})["Item"]["v"]["S"] == "x"; done.append("dynamodb")
    sqs = boto3.client("sqs")
    q = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=q, MessageBody="m")
    assert sqs.receive_message(QueueUrl=q)["Messages"][0]["Body"] == "m"; done.append("sqs")
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="n")["TopicArn"]
    assert sns.publish(TopicArn=topic, Message="hi")["MessageId"]; done.append("sns")
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/p", Value="v", Type="String")
    assert ssm.get_parameter(Name="/p")["Parameter"]["Value"] == "v"; done.append("ssm")
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="s", SecretString="shh")
    assert sm.get_secret_value(SecretId="s")["SecretString"] == "shh"; done.append("secretsmanager")
    ev = boto3.client("events")
    assert ev.put_events(Entries=[{"Source": "t", "DetailType": "d", "Detail": "{}"}])["FailedEntryCount"] == 0
    done.append("events")
    glue = boto3.client("glue")
    glue.create_database(DatabaseInput={"Name": "db"})
    glue.create_table(DatabaseName="db", TableInput={"Name": "tb", "StorageDescriptor": {"Columns": [{"Name": "c", "Type": "string"}]}})
    assert glue.get_table(DatabaseName="db", Name="tb")["Table"]["Name"] == "tb"; done.append("glue")
    athena = boto3.client("athena")
    athena.create_work_group(Name="wg")
    assert athena.get_work_group(WorkGroup="wg")["WorkGroup"]["Name"] == "wg"
    qid = athena.start_query_execution(QueryString="SELECT 1", WorkGroup="wg")["QueryExecutionId"]
    assert athena.get_query_execution(QueryExecutionId=qid); done.append("athena")
    boto3.client("s3").put_object(Bucket="svc-holding-local", Key="services.json", Body=json.dumps(done).encode())
    return {"statusCode": 200, "body": {"services": done}}
"""


# What SERVICES needs, each grant scoped to the one resource it uses (as a least-privilege role would be).
ARN = "arn:aws:{service}:{{region}}:{{account_id}}"
GRANTS = [
    (["dynamodb:CreateTable", "dynamodb:PutItem", "dynamodb:GetItem"], [ARN.format(service="dynamodb") + ":table/t"]),
    (["sqs:CreateQueue", "sqs:SendMessage", "sqs:ReceiveMessage"], [ARN.format(service="sqs") + ":q"]),
    (["sns:CreateTopic", "sns:Publish"], [ARN.format(service="sns") + ":n"]),
    (["ssm:PutParameter", "ssm:GetParameter"], [ARN.format(service="ssm") + ":parameter/p"]),
    (["secretsmanager:CreateSecret", "secretsmanager:GetSecretValue"], [ARN.format(service="secretsmanager") + ":secret:s*"]),
    (["events:PutEvents"], [ARN.format(service="events") + ":event-bus/default"]),
    (["glue:CreateDatabase", "glue:CreateTable", "glue:GetTable"],
     [ARN.format(service="glue") + x for x in (":catalog", ":database/db", ":table/db/tb")]),
    (["athena:CreateWorkGroup", "athena:GetWorkGroup", "athena:StartQueryExecution", "athena:GetQueryExecution"],
     [ARN.format(service="athena") + ":workgroup/wg"]),
]
GRANTED = MAIN.replace("functions=[Function(name='f1')]", "functions=[Function(name='f1', permissions=[%s])]" % ", ".join(
    f"Permission(actions={a!r}, resources={r!r})" for a, r in GRANTS)).replace("Function, load_config", "Function, Permission, load_config")


def test_a_handler_uses_every_listed_service_through_its_own_boto3_with_a_declared_permission(cli, tmp_path, monkeypatch):
    root = make_project(tmp_path, {"demo/svc": {"main": GRANTED, "functions": {"f1": SERVICES}}}, name="svc")
    monkeypatch.chdir(root)
    ran = cli("run", "demo", "svc", "--local", "-q", "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["iam"] == "enforced"
    assert json.loads(cli("store", "cat", "s3://svc-holding-local/services.json").stdout) == [
        "dynamodb", "sqs", "sns", "ssm", "secretsmanager", "events", "glue", "athena"]


def test_without_the_permission_the_first_call_is_refused_as_in_aws_and_no_iam_lets_it_through(cli, tmp_path, monkeypatch):
    root = make_project(tmp_path, {"demo/svc": {"main": MAIN, "functions": {"f1": SERVICES}}}, name="svc")
    monkeypatch.chdir(root)
    ran = cli("run", "demo", "svc", "--local", "-q", "--json")
    assert ran.exit_code == 1
    error = json.loads(ran.stdout)["error"]
    assert error["type"] == "ClientError"
    assert ("(AccessDeniedException) when calling the CreateTable operation: User: arn:aws:sts::000000000000:"
            "assumed-role/svc-demo-svc-f1-local/demo-svc-f1-local is not authorized to perform: dynamodb:CreateTable "
            'on resource: "arn:aws:dynamodb:eu-west-2:000000000000:table/t" because no identity-based policy allows '
            "the dynamodb:CreateTable action") in error["message"]

    ran = cli("run", "demo", "svc", "--local", "-q", "--no-iam")
    assert ran.exit_code == 0, ran.output
    assert "iam: off (--no-iam)" in ran.output


def test_runs_reuse_one_server_which_is_restarted_when_killed_and_stopped_by_sim_stop(cli, tmp_path, monkeypatch):
    root = make_project(tmp_path, {"demo/main": {"main": MAIN, "functions": {"f1": OK}}}, name="reuse")
    monkeypatch.chdir(root)
    state = root / ".dorc" / "local-aws"
    assert cli("run", "demo", "main", "--local", "-q").exit_code == 0
    first = read_info(state)
    assert first is not None and pid_alive(first.pid)
    assert cli("run", "demo", "main", "--local", "-q").exit_code == 0
    assert read_info(state).pid == first.pid  # reused
    status = cli("sim", "status")
    assert status.exit_code == 0 and f"pid {first.pid}" in status.output and first.url in status.output

    os.kill(first.pid, signal.SIGKILL)  # a crash: the next run starts a new one
    deadline = time.monotonic() + 10
    while pid_alive(first.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cli("run", "demo", "main", "--local", "-q").exit_code == 0
    second = read_info(state)
    assert second.pid != first.pid and pid_alive(second.pid)

    stopped = cli("sim", "stop")
    assert stopped.exit_code == 0 and f"pid {second.pid}" in stopped.output
    assert not pid_alive(second.pid) and read_info(state) is None
    assert cli("sim", "status").exit_code == 1
    assert "no local AWS server was running" in cli("sim", "stop").output


def test_starts_at_once_end_on_one_server_and_config_repos_get_their_own(tmp_path):
    code = "import sys; from dorc_sim.aws import start_server; print(start_server(sys.argv[1]).pid)"
    states = [tmp_path / "a" / "local-aws", tmp_path / "b" / "local-aws"]
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code, str(states[i % 2])], stdout=subprocess.PIPE, text=True)
                 for i in range(6)]
        pids = [int(p.communicate(timeout=120)[0]) for p in procs]
        assert len(set(pids[0::2])) == 1 and len(set(pids[1::2])) == 1 and pids[0] != pids[1]
        assert [read_info(s).pid for s in states] == pids[:2]
    finally:
        for s in states:
            stop_server(s)


def test_an_idle_server_stops_but_not_under_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DORC_SIM_IDLE_MINUTES", "0.01")  # 0.6 s
    state = tmp_path / "local-aws"
    try:
        with LocalAWS(state, "us-east-1", ["idle-bucket"]) as aws:
            time.sleep(2)  # idle, but a run holds it
            aws.client("s3").put_object(Bucket="idle-bucket", Key="k", Body=b"v")
            pid = aws.server.pid
        deadline = time.monotonic() + 15
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(pid) and server_status(state)[0] is None
        assert (state / "s3" / "idle-bucket" / "objects" / "k").read_bytes() == b"v"
    finally:
        stop_server(state)


def test_the_config_repos_server_idle_minutes_applies_and_a_bad_value_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("DORC_SIM_IDLE_MINUTES", raising=False)
    root = make_project(tmp_path, {"demo/main": {"main": MAIN, "functions": {"f1": OK}}}, name="idle",
                        toml_extra="[local]\nserver_idle_minutes = 0.01\n")  # 0.6 s
    monkeypatch.chdir(root)
    try:
        assert cli("run", "demo", "main", "--local", "-q").exit_code == 0
        pid = read_info(root / ".dorc" / "local-aws").pid
        deadline = time.monotonic() + 15
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(pid)
    finally:
        stop_server(root / ".dorc" / "local-aws")
    (root / "dorc.toml").write_text('[project]\nname = "idle"\n[local]\nserver_idle_minutes = "soon"\n')
    ran = cli("sim", "start")
    assert ran.exit_code == 2
    assert "[local] server_idle_minutes = 'soon' is not a number of minutes" in ran.output


def test_a_changed_dorc_restarts_the_server(tmp_path, monkeypatch):
    from dorc_sim.awsserver import control

    state = tmp_path / "local-aws"
    try:
        old = start_server(state)
        monkeypatch.setattr(control, "digest", lambda: "another-dorc")
        assert "started by another dorc" in server_status(state)[1]
        monkeypatch.undo()
        monkeypatch.setattr(control, "digest", lambda: "another-dorc")
        new = start_server(state)
        assert new.pid != old.pid and not pid_alive(old.pid)
    finally:
        stop_server(state)


def test_a_server_whose_state_folder_is_removed_stops(tmp_path):
    """pytest removes old tmp folders: a server left on one must not run on forever."""
    import shutil

    state = tmp_path / "gone" / "local-aws"
    pid = start_server(state).pid
    try:
        shutil.rmtree(tmp_path / "gone")
        deadline = time.monotonic() + 20
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(pid)
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)


def _send(url: str, method: str, body: bytes | None = None, content_type: str = "application/octet-stream") -> int:
    """A plain HTTP call, as a non-boto3 client uses a presigned URL (a type given: urllib's default,
    a form, is one moto's S3 would read as empty)."""
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def _form_post(post: dict, body: bytes) -> int:
    """A browser's upload through a presigned POST: its fields and the file, as multipart/form-data."""
    boundary = "dorc-test-boundary"
    fields = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
              for k, v in post["fields"].items()]
    head = "".join(fields) + (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
                              "Content-Type: application/octet-stream\r\n\r\n")
    return _send(post["url"], "POST", head.encode() + body + f"\r\n--{boundary}--\r\n".encode(),
                 content_type=f"multipart/form-data; boundary={boundary}")


def test_writes_signed_the_older_way_presigned_or_unsigned_reach_the_store_and_survive_a_restart(tmp_path):
    """The write-through follows moto's routing, not only a SigV4 scope: a SigV2 header or URL, a
    presigned POST and an unsigned PUT are S3 writes too."""
    import boto3
    from botocore.config import Config

    from dorc_sim.aws import list_store

    state, bucket = tmp_path / "local-aws", "sig-bucket"

    def s3(aws, signature: str):
        return boto3.client("s3", region_name="eu-west-1", endpoint_url=aws.endpoint_url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", config=Config(signature_version=signature))

    try:
        with LocalAWS(state, "eu-west-1", [bucket]) as aws:
            v2, v4 = s3(aws, "s3"), s3(aws, "s3v4")
            sent = []
            v2.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(
                request.headers["Authorization"].decode()))
            v2.put_object(Bucket=bucket, Key="v2-header", Body=b"header")
            assert sent and sent[0].startswith("AWS testing:")  # SigV2, not a SigV4 scope

            url = v2.generate_presigned_url("put_object", Params={
                "Bucket": bucket, "Key": "v2-url", "ContentType": "application/octet-stream"})
            assert "AWSAccessKeyId=testing" in url and "Signature=" in url and "X-Amz-Credential" not in url
            assert _send(url, "PUT", b"v2 url") == 200
            url = v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v4-url"})
            assert "X-Amz-Credential=" in url
            assert _send(url, "PUT", b"v4 url") == 200
            assert _form_post(v4.generate_presigned_post(bucket, "v4-post"), b"posted") == 204
            assert _send(f"{aws.endpoint_url}/{bucket}/unsigned", "PUT", b"anyone") == 200

            v4.put_object(Bucket=bucket, Key="doomed", Body=b"x")
            assert ("sig-bucket", "doomed", 1) in list_store(state)
            url = v2.generate_presigned_url("delete_object", Params={"Bucket": bucket, "Key": "doomed"})
            assert "AWSAccessKeyId=testing" in url
            assert _send(url, "DELETE") == 204

            kept = {"v2-header": b"header", "v2-url": b"v2 url", "v4-url": b"v4 url", "v4-post": b"posted",
                    "unsigned": b"anyone"}
            assert list_store(state) == sorted((bucket, k, len(v)) for k, v in kept.items())  # on disk as answered
            first = aws.server.pid
        stop_server(state)
        with LocalAWS(state, "eu-west-1") as aws:
            assert aws.server.pid != first
            again = aws.client("s3")
            assert {k: again.get_object(Bucket=bucket, Key=k)["Body"].read() for k in kept} == kept
            assert "doomed" not in [o["Key"] for o in again.list_objects_v2(Bucket=bucket)["Contents"]]
    finally:
        stop_server(state)


def test_a_runs_buckets_are_made_by_the_server_once_in_its_region_and_kept_across_a_restart(tmp_path):
    """``LocalAWS(..., buckets)`` asks the server for them in one request (the run's process needs
    no AWS SDK): created in the run's region, untouched when they exist, on disk like any bucket."""
    import boto3

    state = tmp_path / "local-aws"
    try:
        with LocalAWS(state, "eu-west-1", ["b-one", "b-two"]) as aws:
            s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=aws.endpoint_url,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
            s3.put_object(Bucket="b-one", Key="k", Body=b"kept")
            assert s3.get_bucket_location(Bucket="b-two")["LocationConstraint"] == "eu-west-1"
            first = aws.server.pid
        with LocalAWS(state, "eu-west-1", ["b-one", "b-two"]) as aws:  # exist: nothing changes
            assert aws.server.pid == first
            assert aws.client("s3").get_object(Bucket="b-one", Key="k")["Body"].read() == b"kept"
        stop_server(state)
        with LocalAWS(state, "eu-west-1") as aws:
            assert aws.server.pid != first
            names = {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}
            assert {"b-one", "b-two"} <= names
            assert aws.client("s3").get_bucket_location(Bucket="b-two")["LocationConstraint"] == "eu-west-1"
    finally:
        stop_server(state)
