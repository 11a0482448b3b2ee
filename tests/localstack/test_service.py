"""LocalStack for dorc: endpoint resolution, the `dorc localstack` commands, and functions run by
dorc's Lambda executor inside a real LocalStack (started once per session by ``dorc_localstack``).

Run: python -m pytest tests/localstack -q -m localstack
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from dorc.errors import DorcError
from dorc.localstack import service as ls
from dorc.localstack.endpoint import endpoint_url, is_ready
from dorc.localstack.install import is_installed
from dorc_sim.runtime import FunctionSpec
from dorc_sim.sandbox.interpreters import find_interpreter
from dorc_sim.sandbox.isolation import probe
from dorc_sim.sandbox.launcher import Sandbox, SandboxSpec
from dorc_sim.sandbox.sdk import runtime_dir

pytestmark = pytest.mark.localstack


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# endpoint_url: --endpoint > localstack-client's rules ($AWS_ENDPOINT_URL > $LOCALSTACK_HOST
# host[:port], https with USE_SSL > http://localhost:4566)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("explicit, aws_endpoint_url, localstack_host, use_ssl, expected", [
    (None, None, None, None, "http://localhost:4566"),
    ("http://10.0.0.5:4599/", "http://ignored:1", "ignored:2", None, "http://10.0.0.5:4599"),
    (None, "http://127.0.0.1:4567", "ignored:2", None, "http://127.0.0.1:4567"),
    (None, None, "localstack", None, "http://localstack:4566"),
    (None, None, "localhost.localstack.cloud:4599", None, "http://localhost.localstack.cloud:4599"),
    (None, None, "ls.example:443", "1", "https://ls.example:443"),  # the library's https: USE_SSL
    (None, None, ":4599", None, "http://localhost:4599"),
    (None, "", "", None, "http://localhost:4566"),
])
def test_endpoint_url(monkeypatch, explicit, aws_endpoint_url, localstack_host, use_ssl, expected):
    for var, value in (("AWS_ENDPOINT_URL", aws_endpoint_url), ("LOCALSTACK_HOST", localstack_host),
                       ("USE_SSL", use_ssl)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    assert endpoint_url(explicit) == expected


@pytest.mark.parametrize("localstack_host", ["https://ls.example:443", "[::1]"])
def test_endpoint_url_refuses_what_localstack_client_cannot_parse(monkeypatch, localstack_host):
    """LOCALSTACK_HOST is host[:port] for localstack-client: a URL or an IPv6 address is one clear
    error (dorc no longer reads it by hand), pointing at AWS_ENDPOINT_URL for a whole URL."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("LOCALSTACK_HOST", localstack_host)
    with pytest.raises(DorcError) as err:
        endpoint_url(None)
    assert "LOCALSTACK_HOST" in str(err.value) and "AWS_ENDPOINT_URL" in err.value.hint


def test_clients_come_from_a_localstack_client_session_on_the_explicit_endpoint(monkeypatch):
    """--endpoint wins over $AWS_ENDPOINT_URL for every client, and the session is the library's."""
    from localstack_client.session import Session

    from dorc.localstack.endpoint import session

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere:1")
    s = session("http://127.0.0.1:4599/", "eu-west-2")
    assert isinstance(s, Session)
    for service in ("s3", "lambda", "stepfunctions", "logs"):
        client = s.client(service)
        assert client.meta.endpoint_url == "http://127.0.0.1:4599"
        assert client.meta.region_name == "eu-west-2"


def test_a_local_run_does_not_import_localstack_client(census_repo):
    """localstack-client is imported on first use of LocalStack: ``dorc run --local`` never does."""
    code = ("import sys\nfrom dorc import api\n"
            f"res = api.run_pipeline('census', 'raw', config_repo={str(census_repo)!r}, record=False)\n"
            "assert res.succeeded, res.error\nprint('localstack_client' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_is_ready_false_when_nothing_listens():
    assert is_ready(f"http://127.0.0.1:{_free_port()}") is False


# ----------------------------------------------------------------------------------------------
# no Docker engine and no Python 3.13: a clear message, nothing half-built
# ----------------------------------------------------------------------------------------------

def _old_python() -> str:
    old = shutil.which("python3.11") or shutil.which("python3.12")
    if old is None and sys.version_info[:2] < (3, 13):
        old = sys.executable
    if old is None:
        pytest.skip("no Python < 3.13 here to stand for a machine without Python 3.13")
    return old


def test_install_with_too_old_python_says_what_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DORC_LOCALSTACK_HOME", str(tmp_path / "home"))
    res = cli("localstack", "install", "--python", _old_python())
    assert res.exit_code == 2, res.output
    assert "needs Python >= 3.13" in res.output
    assert "pyenv install 3.13" in res.output and "--python" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "home").exists()


def test_start_without_docker_or_python313_is_a_clear_error(cli, tmp_path, monkeypatch):
    if ls.docker_available():
        pytest.skip("a Docker engine answers on this machine")
    monkeypatch.setenv("DORC_LOCALSTACK_HOME", str(tmp_path / "home"))
    port = _free_port()
    res = cli("localstack", "start", "--port", port, "--state-dir", tmp_path / "run", "--python", _old_python())
    assert res.exit_code == 2, res.output
    assert "needs Python >= 3.13" in res.output
    assert "Docker cannot be used" in res.output
    assert "install Python 3.13" in res.output
    assert not is_ready(f"http://127.0.0.1:{port}")
    assert not (tmp_path / "run" / ls.STATE_FILE).exists()


def test_machine_with_neither_docker_nor_python313(tmp_path):
    """A real ``dorc`` process whose PATH has no pyenv, no python3.13 and (here) no Docker engine."""
    if ls.docker_available():
        pytest.skip("a Docker engine answers on this machine")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
           "DORC_LOCALSTACK_HOME": str(tmp_path / "ls-home")}
    if any(os.path.exists(f"/usr/bin/python3.{minor}") for minor in (13, 14)):
        pytest.skip("this machine has a system Python >= 3.13")
    import subprocess

    out = subprocess.run([sys.executable, "-m", "dorc", "localstack", "start", "--port", str(_free_port()),
                          "--state-dir", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "LocalStack needs Docker or Python >= 3.13, and this machine has neither" in out.stderr
    assert "no Docker engine answers" in out.stderr and "pyenv" in out.stderr
    assert "fix: install Python 3.13" in out.stderr
    assert not (tmp_path / "ls-home").exists()


def test_mode_docker_without_engine_says_so(cli, tmp_path):
    if ls.docker_available():
        pytest.skip("a Docker engine answers on this machine")
    res = cli("localstack", "start", "--mode", "docker", "--port", _free_port(), "--state-dir", tmp_path / "run")
    assert res.exit_code == 2, res.output
    assert "--mode docker" in res.output and "Docker" in res.output


def test_unknown_mode_is_refused(cli, tmp_path):
    res = cli("localstack", "start", "--mode", "kubernetes", "--port", _free_port(), "--state-dir", tmp_path)
    assert res.exit_code == 2 and "unknown mode" in res.output


def test_stop_when_nothing_runs(cli, tmp_path):
    res = cli("localstack", "stop", "--port", _free_port(), "--state-dir", tmp_path)
    assert res.exit_code == 0 and "no LocalStack started by dorc" in res.output


# ----------------------------------------------------------------------------------------------
# functions in LocalStack, run by dorc's executor
# ----------------------------------------------------------------------------------------------

S3_HANDLER = '''
import os
import boto3

def handler(event, context):
    print("putting", event["key"])
    s3 = boto3.client("s3")   # no endpoint_url: AWS_ENDPOINT_URL must lead to LocalStack
    s3.put_object(Bucket=event["bucket"], Key=event["key"], Body=b"hello from lambda")
    return {
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        "has_credentials": bool(os.environ.get("AWS_ACCESS_KEY_ID")),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "cwd": os.getcwd(),
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
        "region": os.environ.get("AWS_REGION"),
        "own_var": os.environ.get("GREETING"),
        "dorc_vars": sorted(k for k in os.environ if k.startswith("DORC_")),
    }
'''

ERROR_HANDLERS = {
    "raises": '''
def handler(event, context):
    print("about to fail")
    raise ValueError("bad input: " + str(event.get("n")))
''',
    "sleeps": '''
import time
def handler(event, context):
    print("sleeping", event.get("sleep", 5), flush=True)
    time.sleep(event.get("sleep", 5))
    return {"slept": event.get("sleep", 5)}
''',
    "exits": '''
import sys
def handler(event, context):
    print("exiting")
    sys.exit(3)
''',
    "unmarshallable": '''
def handler(event, context):
    return {"values": {1, 2, 3}}
''',
    "crashes": '''
import os
def handler(event, context):
    print("crashing", flush=True)
    os._exit(7)
''',
    "stuck": '''
import signal, time
def handler(event, context):
    if event.get("block"):
        # a handler's own signal handling: dorc's executor kills the sandbox whatever it blocks
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        print("blocked SIGALRM", flush=True)
        time.sleep(30)
    return {"ok": True}
''',
    "badimport": '''
import a_module_that_does_not_exist
def handler(event, context):
    return 1
''',
}
TIMEOUTS = {"sleeps": 1, "stuck": 1}


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda.py", source)
    return buf.getvalue()


class _Deployer:
    def __init__(self, handle):
        self.handle = handle
        self.lam = handle.client("lambda")
        self.iam = handle.client("iam")
        self.role = self.iam.create_role(RoleName="dorc-test-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {
                "Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}}]}))["Role"]["Arn"]
        # what these functions and the state machine do, as AWS would require it (dorc's executor
        # enforces IAM in LocalStack)
        self.iam.put_role_policy(RoleName="dorc-test-role", PolicyName="test", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "arn:aws:s3:::dorc-test-bucket/*"},
                {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]}))
        self.arns: dict[str, str] = {}

    def deploy(self, name: str, source: str, *, timeout: int = 10, memory: int = 128, env: dict | None = None) -> str:
        if name in self.arns:
            return self.arns[name]
        self.lam.create_function(FunctionName=name, Runtime="python3.12", Handler="lambda.handler", Role=self.role,
                                 Code={"ZipFile": _zip(source)}, Timeout=timeout, MemorySize=memory,
                                 Environment={"Variables": env or {}})
        deadline = time.monotonic() + 60
        while True:
            conf = self.lam.get_function_configuration(FunctionName=name)
            if conf["State"] != "Pending" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert conf["State"] == "Active", conf  # an unknown executor would fall back to Docker and fail here
        self.arns[name] = conf["FunctionArn"]
        return conf["FunctionArn"]

    def invoke(self, name: str, event: dict) -> tuple[dict, object, str]:
        resp = self.lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
        payload = json.loads(resp["Payload"].read() or b"null")
        logs = base64.b64decode(resp.get("LogResult") or b"").decode(errors="replace")
        return resp, payload, logs


@pytest.fixture(scope="module")
def deployer(dorc_localstack):
    return _Deployer(dorc_localstack)


def _local_error(tmp_path, name: str, event: dict) -> dict:
    """What a local run's sandbox reports for the same handler: the reference to match."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "lambda.py").write_text(ERROR_HANDLERS[name])
    spec = SandboxSpec(function=FunctionSpec(name=name, source_dir=str(folder), timeout=float(TIMEOUTS.get(name, 10))),
                       python=find_interpreter("python3.12").executable, runtime_dir=str(runtime_dir()))
    with Sandbox(spec, probe()) as box:
        result = box.invoke(json.dumps(event), request_id="req-local")
    assert result.error is not None
    return result.error.to_lambda()


def test_function_reaches_s3_through_aws_endpoint_url(dorc_localstack, deployer):
    s3 = dorc_localstack.client("s3")
    s3.create_bucket(Bucket="dorc-test-bucket")
    t0 = time.monotonic()
    deployer.deploy("s3writer", S3_HANDLER, memory=256, env={"GREETING": "hi"})
    deployed = time.monotonic() - t0
    t0 = time.monotonic()
    resp, out, logs = deployer.invoke("s3writer", {"bucket": "dorc-test-bucket", "key": "from-lambda.txt"})
    first = time.monotonic() - t0
    t0 = time.monotonic()
    deployer.invoke("s3writer", {"bucket": "dorc-test-bucket", "key": "again.txt"})
    warm = time.monotonic() - t0
    print(f"deploy {deployed:.2f}s, first invoke {first:.2f}s, warm invoke {warm:.3f}s")

    assert "FunctionError" not in resp, out
    body = s3.get_object(Bucket="dorc-test-bucket", Key="from-lambda.txt")["Body"].read()
    assert body == b"hello from lambda"
    assert out["endpoint"].endswith(f":{dorc_localstack.port}") if dorc_localstack.port else out["endpoint"]
    assert out["has_credentials"]
    assert out["function_name"] == "s3writer"
    assert out["memory"] == "256"
    assert 0 < out["remaining_ms"] <= 10_000
    assert out["task_root"] == out["cwd"]
    assert out["execution_env"] == "AWS_Lambda_python3.12"
    assert out["region"] == dorc_localstack.region
    assert out["own_var"] == "hi"
    assert out["dorc_vars"] == []
    assert logs.startswith(f"START RequestId: {out['request_id']}")
    assert "putting from-lambda.txt" in logs
    assert f"END RequestId: {out['request_id']}" in logs and "REPORT RequestId:" in logs
    assert "Init Duration:" in logs  # the first call of a new execution environment


def test_handler_exception_is_reported_like_a_local_run(deployer, tmp_path):
    deployer.deploy("raises", ERROR_HANDLERS["raises"])
    resp, err, logs = deployer.invoke("raises", {"n": 7})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "bad input: 7"
    assert err["requestId"]
    assert any("lambda.py" in frame for frame in err["stackTrace"])
    expected = _local_error(tmp_path, "raises", {"n": 7})
    assert (err["errorType"], err["errorMessage"]) == (expected["errorType"], expected["errorMessage"])
    assert "about to fail" in logs


def test_timeout_is_sandbox_timedout(deployer, tmp_path):
    deployer.deploy("sleeps", ERROR_HANDLERS["sleeps"], timeout=TIMEOUTS["sleeps"])
    t0 = time.monotonic()
    resp, err, logs = deployer.invoke("sleeps", {"sleep": 20})
    took = time.monotonic() - t0
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Sandbox.Timedout"
    assert err["errorMessage"] == f"RequestId: {err['requestId']} Error: Task timed out after 1.00 seconds"
    expected = _local_error(tmp_path, "sleeps", {"sleep": 20})
    expected["errorMessage"] = expected["errorMessage"].replace("req-local", err["requestId"])
    assert err == {**expected, "requestId": err["requestId"]}
    assert took < 10, took  # stopped at the timeout, not after the handler's 20 s (margin for a busy CI)
    assert "Task timed out after 1.00 seconds" in logs
    # the environment still works afterwards
    resp, out, _ = deployer.invoke("sleeps", {"sleep": 0})
    assert "FunctionError" not in resp and out == {"slept": 0}


def test_sys_exit_is_runtime_exit_error(deployer, tmp_path):
    deployer.deploy("exits", ERROR_HANDLERS["exits"])
    resp, err, logs = deployer.invoke("exits", {})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Runtime.ExitError"
    assert err["errorMessage"] == f"RequestId: {err['requestId']} Error: Runtime exited with error: exit status 3"
    expected = _local_error(tmp_path, "exits", {})
    assert expected["errorMessage"].replace("req-local", err["requestId"]) == err["errorMessage"]
    assert "exiting" in logs


def test_worker_crash_is_runtime_exit_error_and_the_next_call_gets_a_new_worker(deployer):
    deployer.deploy("crashes", ERROR_HANDLERS["crashes"])
    resp, err, logs = deployer.invoke("crashes", {})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Runtime.ExitError"
    assert err["errorMessage"] == f"RequestId: {err['requestId']} Error: Runtime exited with error: exit status 7"
    assert "crashing" in logs and "END RequestId" in logs
    resp, err, _ = deployer.invoke("crashes", {})
    assert err["errorType"] == "Runtime.ExitError"


def test_worker_that_cannot_be_interrupted_is_killed_at_the_timeout(deployer):
    deployer.deploy("stuck", ERROR_HANDLERS["stuck"], timeout=TIMEOUTS["stuck"])
    t0 = time.monotonic()
    resp, err, logs = deployer.invoke("stuck", {"block": True})
    took = time.monotonic() - t0
    assert err["errorType"] == "Sandbox.Timedout"
    assert err["errorMessage"] == f"RequestId: {err['requestId']} Error: Task timed out after 1.00 seconds"
    # the same error as any other timeout (the executor enforces every one from outside)
    assert err == {"errorMessage": f"RequestId: {err['requestId']} Error: Task timed out after 1.00 seconds",
                   "errorType": "Sandbox.Timedout",
                   "stackTrace": [], "requestId": err["requestId"]}
    # killed by the executor at the 1 s timeout, counted from the end of Init; far from the handler's
    # 30 s sleep (margin for a busy CI)
    assert took < 10, took
    assert "blocked SIGALRM" in logs and "Task timed out after 1.00 seconds" in logs
    resp, out, logs = deployer.invoke("stuck", {})
    assert "FunctionError" not in resp and out == {"ok": True}
    assert "Init Duration:" in logs  # a fresh worker: the stuck one was killed, not left to finish


def test_unserialisable_result_is_marshal_error(deployer, tmp_path):
    deployer.deploy("unmarshallable", ERROR_HANDLERS["unmarshallable"])
    resp, err, _ = deployer.invoke("unmarshallable", {})
    assert err["errorType"] == "Runtime.MarshalError"
    assert err["errorMessage"] == _local_error(tmp_path, "unmarshallable", {})["errorMessage"]


def test_import_error_in_step_functions_history(dorc_localstack, deployer):
    arn = deployer.deploy("badimport", ERROR_HANDLERS["badimport"])
    resp, err, _ = deployer.invoke("badimport", {})
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert "a_module_that_does_not_exist" in err["errorMessage"]

    sfn = dorc_localstack.client("stepfunctions")
    machine = sfn.create_state_machine(name="badimport-machine", roleArn=deployer.role, definition=json.dumps({
        "StartAt": "Run", "States": {"Run": {"Type": "Task", "Resource": arn, "End": True}}}))["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    deadline = time.monotonic() + 60
    while (desc := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert desc["status"] == "FAILED"
    assert desc["error"] == "Runtime.ImportModuleError"
    history = sfn.get_execution_history(executionArn=execution)["events"]
    failed = [e for e in history if e["type"] == "LambdaFunctionFailed"]
    assert failed and failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "Runtime.ImportModuleError"


# ----------------------------------------------------------------------------------------------
# the commands, against the session's LocalStack
# ----------------------------------------------------------------------------------------------

def _started_here(handle):
    if handle.mode != "host" or not handle.state_dir:
        pytest.skip("LocalStack was not started by this session")


def test_status_command(cli, dorc_localstack):
    _started_here(dorc_localstack)
    res = cli("localstack", "status", "--port", dorc_localstack.port, "--state-dir", dorc_localstack.state_dir)
    assert res.exit_code == 0, res.output
    assert "ready" in res.output and "host mode" in res.output and dorc_localstack.endpoint in res.output
    assert "lambda" in res.output and "stepfunctions" in res.output
    res = cli("localstack", "status", "--port", dorc_localstack.port, "--state-dir", dorc_localstack.state_dir, "--json")
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["ready"] and doc["info"]["mode"] == "host" and doc["info"]["pid"]


def test_status_command_when_nothing_runs(cli, tmp_path):
    res = cli("localstack", "status", "--port", _free_port(), "--state-dir", tmp_path)
    assert res.exit_code == 1 and "not running" in res.output


def test_logs_command(cli, dorc_localstack):
    _started_here(dorc_localstack)
    res = cli("localstack", "logs", "--port", dorc_localstack.port, "--state-dir", dorc_localstack.state_dir,
              "--lines", 5)
    assert res.exit_code == 0, res.output
    assert 0 < len(res.stdout.splitlines()) <= 5


def test_start_refuses_a_busy_port_or_a_running_instance(cli, dorc_localstack, tmp_path):
    _started_here(dorc_localstack)
    res = cli("localstack", "start", "--port", dorc_localstack.port, "--state-dir", tmp_path)
    assert res.exit_code == 2 and "already answers" in res.output, res.output
    res = cli("localstack", "start", "--port", dorc_localstack.port, "--state-dir", dorc_localstack.state_dir)
    assert res.exit_code == 2 and "already running" in res.output, res.output
    assert is_ready(dorc_localstack.endpoint)


def test_executor_plugin_is_registered(dorc_localstack):
    _started_here(dorc_localstack)
    with open(os.path.join(dorc_localstack.state_dir, "executor.json")) as fh:
        marker = json.load(fh)
    assert marker["executor"] == "dorc" and marker["problems"] == []
    assert is_installed()
