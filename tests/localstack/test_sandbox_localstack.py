"""Host-mode LocalStack runs handlers as local runs do (issue 8): in a sandbox, on the declared
runtime's Python, with Lambda's file system, environment and an outside timeout. Deployed and run
through dorc's API, the way a user's pipeline is."""

from __future__ import annotations

import errno
import re
import time
import uuid

import pytest
from dorc_sim.sandbox.isolation import probe
from helpers import chain_main, command_lines, make_project

from dorc.api import run_pipeline
from dorc.project import find_project

pytestmark = pytest.mark.localstack

PROBE = '''
import multiprocessing, os, sys

def handler(event, context):
    out = {"python": list(sys.version_info[:2]), "path": sys.path, "env": sorted(os.environ), "cwd": os.getcwd()}
    try:
        with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "scribble.txt"), "w") as fh:
            fh.write("x")
        out["task_root_write"] = "written"
    except OSError as exc:
        out["task_root_write"] = exc.errno
    with open("/tmp/probe-secret.txt", "w") as fh:
        fh.write("mine")
    out["tmp_written"] = os.path.exists("/tmp/probe-secret.txt")
    try:
        with multiprocessing.Pool(2) as pool:
            pool.map(abs, [1, -2])
        out["pool"] = "worked"
    except OSError as exc:
        out["pool"] = exc.errno
    return {"statusCode": 200, "body": out}
'''

PEER = '''
import os

def handler(event, context):
    return {"statusCode": 200, "body": {"sees_probe_tmp": os.path.exists("/tmp/probe-secret.txt")}}
'''

ESCAPES = '''
import subprocess, time

def handler(event, context):
    subprocess.Popen(["sleep", "347"], start_new_session=True)  # a child that leaves the session
    print("working", flush=True)
    for _ in range(3):
        try:
            time.sleep(20)
        except BaseException:  # swallows any exception a timeout could raise in here
            print("caught something, carrying on", flush=True)
    return {"statusCode": 200, "body": "escaped the timeout"}
'''

# what LocalStack's lambda environment may hold besides the function's own variables: Lambda's
# reserved variables and LocalStack's own per-function ones (nothing of the host's or LocalStack's process)
LAMBDA_VARIABLES = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
    "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_XRAY_CONTEXT_MISSING", "AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_ADDRESS", "_AWS_XRAY_DAEMON_PORT", "_X_AMZN_TRACE_ID", "_HANDLER", "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR", "TZ", "LANG", "PATH", "AWS_ENDPOINT_URL", "LOCALSTACK_HOSTNAME", "EDGE_PORT",
    "LOCALSTACK_RUNTIME_ID", "LOCALSTACK_RUNTIME_ENDPOINT", "LOCALSTACK_FUNCTION_ACCOUNT_ID",
    "LOCALSTACK_MAX_PAYLOAD_SIZE",
}


def _full_sandbox() -> None:
    isolation = probe()
    if isolation.namespaces is False:
        pytest.skip(f"this machine has no full sandbox ({isolation.line}): {isolation.reason}")


@pytest.fixture(scope="module")
def probed(dorc_localstack, tmp_path_factory):
    """One run of probe -> peer, declared python3.12, in LocalStack."""
    instance = f"sbx{uuid.uuid4().hex[:6]}"  # one LocalStack is shared: names of this module only
    root = make_project(tmp_path_factory.mktemp("sandbox"), {f"{instance}/main": {
        "main": chain_main("probe", "peer", probe="runtime='python3.12', timeout=30, environment={'OWN_VAR': 'mine'}",
                           peer="runtime='python3.12'"),
        "functions": {"probe": PROBE, "peer": PEER}}}, name=instance)
    result = run_pipeline(instance, "main", target="localstack", project=find_project(root),
                          endpoint=dorc_localstack.endpoint, record=False)
    assert result.succeeded, result.failure_report()
    return result


def test_the_task_root_is_read_only(probed):
    _full_sandbox()
    assert probed.step("probe").output["body"]["task_root_write"] == errno.EROFS


def test_tmp_is_private_to_each_function(probed):
    _full_sandbox()
    assert probed.step("probe").output["body"]["tmp_written"] is True
    assert probed.step("peer").output["body"]["sees_probe_tmp"] is False


def test_the_declared_runtimes_python_runs_the_handler_with_lambdas_sys_path(probed):
    body = probed.step("probe").output["body"]
    assert body["python"] == [3, 12]
    assert body["path"][0] == body["cwd"]  # the task root first, as /var/task
    assert not [p for p in body["path"] if "site-packages" in p]  # neither LocalStack's nor dorc's packages


def test_the_handler_sees_lambdas_environment_only(probed, dorc_localstack):
    step = probed.step("probe")
    env = set(step.output["body"]["env"])
    lam = dorc_localstack.client("lambda", region_name=probed.execution_arn.split(":")[3])
    own = set(lam.get_function_configuration(FunctionName=step.deployed_name)["Environment"]["Variables"])
    assert "OWN_VAR" in own and own <= env
    assert env - own <= LAMBDA_VARIABLES, sorted(env - own - LAMBDA_VARIABLES)
    for host in ("HOME", "USER", "GATEWAY_LISTEN", "SERVICES", "FILESYSTEM_ROOT", "LAMBDA_RUNTIME_EXECUTOR"):
        assert host not in env


def test_multiprocessing_pool_fails_as_in_lambda(probed):
    assert probed.step("probe").output["body"]["pool"] == errno.ENOSYS


def test_a_timeout_cannot_be_caught(dorc_localstack, tmp_path):
    instance = f"tmo{uuid.uuid4().hex[:6]}"
    root = make_project(tmp_path, {f"{instance}/main": {
        "main": chain_main("escapes", escapes="runtime='python3.12', timeout=2"),
        "functions": {"escapes": ESCAPES}}}, name=instance)
    result = run_pipeline(instance, "main", target="localstack", project=find_project(root),
                          endpoint=dorc_localstack.endpoint, record=False)
    assert not result.succeeded
    step = result.step("escapes")
    assert step.error.type == "Sandbox.Timedout", step.error
    assert step.error.message == f"RequestId: {step.request_id} Error: Task timed out after 2.00 seconds"
    assert "working" in step.logs and "carrying on" not in step.logs
    assert "Task timed out after 2.00 seconds" in step.logs
    deadline = time.monotonic() + 5
    while _host_processes("sleep", "347") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _host_processes("sleep", "347")  # the kill ended everything the handler started


SLOW_INIT = '''
import time
time.sleep(2.5)  # the Init phase: not charged to the 1 s timeout

def handler(event, context):
    return {"statusCode": 200, "body": context.get_remaining_time_in_millis()}
'''


def test_init_is_not_charged_to_the_timeout(dorc_localstack, tmp_path):
    instance = f"ini{uuid.uuid4().hex[:6]}"
    root = make_project(tmp_path, {f"{instance}/main": {
        "main": chain_main("slow", slow="runtime='python3.12', timeout=1"), "functions": {"slow": SLOW_INIT}}},
        name=instance)
    result = run_pipeline(instance, "main", target="localstack", project=find_project(root),
                          endpoint=dorc_localstack.endpoint, record=False)
    assert result.succeeded, result.failure_report()
    step = result.step("slow")
    assert 0 < step.output["body"] <= 1000
    init_ms = float(re.search(r"Init Duration: ([\d.]+) ms", step.logs).group(1))
    assert init_ms >= 2500


def _host_processes(*argv: str) -> list[int]:
    """This machine's processes whose command line is ``argv``."""
    wanted = [a.encode() for a in argv]
    return [pid for pid, line in command_lines().items() if line == wanted]
