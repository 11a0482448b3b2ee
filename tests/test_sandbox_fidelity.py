"""The sandbox, behaviour by behaviour: each is a small handler run through dorc's public
surfaces (the ``dorc`` CLI in a child process where exit codes, output and records matter,
``dorc.api`` elsewhere), asserting what Lambda gives a handler: its read-only task root as
working directory, a private capped ``/tmp``, the declared runtime's Python, Lambda's environment
only, real standard streams, the runtime's logging and context, signals of its own with the
timeout and memory enforced from outside, Lambda's process rules, and every failure reported,
never a crash of dorc."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from dorc.api import invoke_function, run_pipeline
from helpers import OK_HANDLER, OUTSIDE_VARS, REPO_ROOT, chain_main, processes_with

CLI_TIMEOUT = 60  # seconds: a hung run fails the test instead of the suite


@pytest.fixture(autouse=True)
def _machine_defaults(monkeypatch):
    """The full sandbox and the runtimes' own Pythons, whatever the caller's shell overrides."""
    for var in ("DORC_SANDBOX", "DORC_PYTHON3_11", "DORC_PYTHON3_12", "DORC_PYTHON3_13"):
        monkeypatch.delenv(var, raising=False)


def one_layer(project_factory, *names, functions: dict, **function_kwargs) -> Path:
    return project_factory({"demo/main": {"main": chain_main(*names, **function_kwargs), "functions": functions}})


def dorc_run(root: Path, *args: str, env: dict | None = None,
             input: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """``dorc run demo main --local ...`` in a child process: (its result, seconds it took)."""
    full = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
    full.update(PYTHONDONTWRITEBYTECODE="1", COLUMNS="2000", NO_COLOR="1")
    full.update(env or {})
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dorc", "run", "demo", "main", "--local", "--config-repo", str(root),
                           *args], cwd=REPO_ROOT, env=full, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                          input=input, stdin=subprocess.DEVNULL if input is None else None, check=False)
    return proc, time.monotonic() - t0


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / ".dorc" / "runs").glob("*.json"))]


def log_lines(logs: str) -> list[str]:
    return logs.splitlines()


# -- the task root -----------------------------------------------------------------------------

TASK_ROOT = """
import hashlib, os

def handler(event, context):
    with open("data/schema.json") as fh:  # shipped with the function, opened relatively
        schema = fh.read()
    try:
        with open("written.txt", "w") as fh:
            fh.write("x")
        write_errno = None
    except OSError as exc:
        write_errno = exc.errno
    files = {}
    for folder, _, names in os.walk("."):
        for name in names:
            path = os.path.relpath(os.path.join(folder, name), ".")
            with open(path, "rb") as fh:
                files[path] = hashlib.sha256(fh.read()).hexdigest()
    return {"statusCode": 200, "body": {"cwd": os.getcwd(), "task_root": os.environ["LAMBDA_TASK_ROOT"],
                                         "schema": schema, "write_errno": write_errno, "files": files}}
"""


def test_task_root_is_the_read_only_package_as_working_directory(project_factory, tmp_path):
    from dorc.package import build_zip

    root = one_layer(project_factory, "f1", functions={"f1": {"lambda.py": TASK_ROOT, "util.py": "X = 1\n"}})
    source = root / "src" / "demo" / "main" / "src" / "f1"
    (source / "data").mkdir()
    (source / "data" / "schema.json").write_text('{"type": "object"}')
    result = run_pipeline("demo", "main", config_repo=root)
    assert result.succeeded, result.error
    body = result.output["body"]
    assert os.path.realpath(body["cwd"]) == os.path.realpath(body["task_root"])
    assert body["schema"] == '{"type": "object"}'
    assert body["write_errno"] == 30  # EROFS: Read-only file system
    # exactly the files of the package that deploys, byte for byte
    package = build_zip("demo-main-f1-local", source, "python3.12", tmp_path / "zip", tmp_path / "cache")
    with zipfile.ZipFile(package.path) as zf:
        shipped = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist() if not n.endswith("/")}
    assert body["files"] == shipped


# -- /tmp ----------------------------------------------------------------------------------------

TMP_F1 = """
import os

def handler(event, context):
    with open("/tmp/fidelity-f1.txt", "w") as fh:
        fh.write("f1 was here")
    return {"statusCode": 200, "body": {"host_file": event["host_file"],
                                         "host_seen_by_f1": os.path.exists(event["host_file"]),
                                         "own": os.path.exists("/tmp/fidelity-f1.txt")}}
"""
TMP_F2 = """
import os

def handler(event, context):
    return {"statusCode": 200, "body": {"f1_file": os.path.exists("/tmp/fidelity-f1.txt"),
                                         "host_seen_by_f2": os.path.exists(event["body"]["host_file"]),
                                         "listing": sorted(os.listdir("/tmp"))[:20]}}
"""


def test_tmp_is_private_per_function_and_not_the_hosts(project_factory):
    host_file = Path("/tmp") / f"dorc-fidelity-host-{uuid.uuid4().hex}.txt"
    host_file.write_text("the host's")
    try:
        root = one_layer(project_factory, "f1", "f2", functions={"f1": TMP_F1, "f2": TMP_F2})
        result = run_pipeline("demo", "main", config_repo=root, event={"host_file": str(host_file)})
    finally:
        host_file.unlink()
    assert result.succeeded, result.error
    b1, b2 = result.step("f1").output["body"], result.step("f2").output["body"]
    assert b1["own"] is True
    assert b1["host_seen_by_f1"] is False and b2["host_seen_by_f2"] is False
    assert b2["f1_file"] is False, b2["listing"]
    assert not Path("/tmp/fidelity-f1.txt").exists()  # nor did f1's file reach the host


FILL_TMP = """
import errno, os

def handler(event, context):
    chunk = b"\\0" * (1 << 20)
    written, err = 0, None
    fd = os.open("/tmp/fill", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while written < 600 * (1 << 20):
            written += os.write(fd, chunk)
    except OSError as exc:
        err = exc.errno
    finally:
        os.close(fd)
        os.remove("/tmp/fill")
    return {"statusCode": 200, "body": {"errno": err, "written_mb": written / (1 << 20)}}
"""


def test_tmp_is_capped_at_the_ephemeral_storage(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": FILL_TMP}, f1="timeout=20")
    step = invoke_function("demo", "main", "f1", config_repo=root)
    assert step.succeeded, step.error
    body = step.output["body"]
    assert body["errno"] == 28, body  # ENOSPC: No space left on device
    assert 500 <= body["written_mb"] <= 512, body


# -- the runtime's Python ------------------------------------------------------------------------

VERSION = ("import sys\n\ndef handler(event, context):\n"
           "    return {'statusCode': 200, 'body': list(sys.version_info[:2])}\n")


def test_each_function_runs_on_its_runtimes_python(project_factory):
    root = one_layer(project_factory, "f1", "f2", functions={"f1": VERSION, "f2": VERSION},
                     f1="runtime='python3.12'", f2="runtime='python3.13'")
    result = run_pipeline("demo", "main", config_repo=root)
    assert result.succeeded, result.error
    assert result.step("f1").output["body"] == [3, 12]
    assert result.step("f2").output["body"] == [3, 13]
    assert result.warnings == []


def test_a_missing_runtime_python_runs_on_the_nearest_and_says_so(project_factory, tmp_path):
    root = one_layer(project_factory, "f1", functions={"f1": VERSION}, f1="runtime='python3.12'")
    empty = tmp_path / "empty"
    empty.mkdir()
    hidden = {"PATH": "/usr/bin:/bin", "PYENV_ROOT": str(empty), "XDG_CACHE_HOME": str(empty),
              "XDG_DATA_HOME": str(empty), "UV_PYTHON_INSTALL_DIR": str(empty)}
    plain, _ = dorc_run(root, env=hidden)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    warning = [ln for ln in (plain.stdout + plain.stderr).splitlines() if ln.startswith("warning: ")]
    assert any("python3.12 is not on this machine" in ln for ln in warning), plain.stdout + plain.stderr
    as_json, _ = dorc_run(root, "--json", env=hidden)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["output"]["body"] == list(sys.version_info[:2])  # the nearest found: dorc's own here
    assert any("python3.12 is not on this machine" in w for w in doc["warnings"]), doc["warnings"]
    for record in records(root):
        assert any("python3.12 is not on this machine" in w for w in record["warnings"]), record["warnings"]
    assert len(records(root)) == 2


# -- the environment -----------------------------------------------------------------------------

ENVIRONMENT = """
import os
from datetime import datetime

def handler(event, context):
    return {"statusCode": 200, "body": {
        "secret": os.environ.get("FIDELITY_HOST_SECRET"), "profile": os.environ.get("AWS_PROFILE"),
        "home": os.environ.get("HOME"), "tz": os.environ.get("TZ"),
        "offset": datetime.now().astimezone().utcoffset().total_seconds(),
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
    }}
"""


def test_only_lambdas_environment_and_tz_applied(project_factory):
    from zoneinfo import ZoneInfo

    assert datetime.now(ZoneInfo("America/New_York")).utcoffset().total_seconds() != 0  # the test means something
    root = one_layer(project_factory, "f1", functions={"f1": ENVIRONMENT})
    host = {"FIDELITY_HOST_SECRET": "s3cr3t", "AWS_PROFILE": "production", "TZ": "America/New_York",
            "HOME": os.environ.get("HOME", "/root")}
    proc, _ = dorc_run(root, "--json", env=host)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)["output"]["body"]
    assert body["secret"] is None
    assert body["profile"] is None
    assert body["home"] != host["HOME"]
    assert body["tz"] == ":UTC"
    assert body["offset"] == 0
    assert body["runtime_api"]  # Lambda always sets it


# -- standard streams ----------------------------------------------------------------------------

STREAMS = """
import os, subprocess, sys

def handler(event, context):
    got = sys.stdin.read()
    raw = os.read(0, 100)
    subprocess.run(["echo", "line-from-echo"], stdout=sys.stdout, check=True)
    subprocess.run(["sh", "-c", "echo line-from-sh-stderr >&2"], stderr=sys.stderr, check=True)
    os.write(1, b"line-from-fd1\\n")
    os.write(2, b"line-from-fd2\\n")
    return {"statusCode": 200, "body": {"stdin": got, "raw": raw.decode(),
                                         "filenos": [sys.stdout.fileno(), sys.stderr.fileno()]}}
"""


def test_stdin_is_empty_and_stdout_stderr_are_real_fds(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": STREAMS})
    proc, _ = dorc_run(root, "--json", input="a line typed at dorc\n")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)["output"]["body"]
    assert (body["stdin"], body["raw"]) == ("", "")  # at EOF: not the line dorc's stdin had
    [record] = records(root)
    lines = log_lines(record["steps"][0]["logs"])
    end = next(i for i, ln in enumerate(lines) if ln.startswith("END RequestId:"))
    for expected in ("line-from-echo", "line-from-sh-stderr", "line-from-fd1", "line-from-fd2"):
        assert expected in lines[:end], lines
    assert body["filenos"] == [1, 2]  # as in Lambda: sys.stdout/sys.stderr are file descriptors 1 and 2


# -- logging ---------------------------------------------------------------------------------------

FORMATTER = """
import logging

def handler(event, context):
    logging.getLogger().handlers[0].setFormatter(logging.Formatter("MINE %(levelname)s %(message)s"))
    logging.getLogger().warning("formatted by the handler")
    return {"statusCode": 200, "body": {}}
"""
JSON_LOGS = """
import logging

def handler(event, context):
    logging.getLogger("shop").debug("debug detail")
    logging.getLogger("shop").info("stored %s", 42)
    return {"statusCode": 200, "body": {}}
"""


def test_log_formatter_and_json_format_and_level(project_factory):
    root = one_layer(project_factory, "f1", "f2", functions={"f1": FORMATTER, "f2": JSON_LOGS},
                     f2="log_format='JSON', log_level='DEBUG'")
    result = run_pipeline("demo", "main", config_repo=root)
    assert result.succeeded, result.error
    assert "MINE WARNING formatted by the handler" in log_lines(result.step("f1").logs)
    f2 = result.step("f2")
    docs = [json.loads(ln) for ln in log_lines(f2.logs) if ln.startswith("{") and '"message"' in ln]
    assert [(d["level"], d["message"], d["logger"], d["requestId"]) for d in docs] == [
        ("DEBUG", "debug detail", "shop", f2.request_id), ("INFO", "stored 42", "shop", f2.request_id)]


# -- the context -----------------------------------------------------------------------------------

CONTEXT = """
def handler(event, context):
    context.log("said through context.log\\n")
    ident = context.identity
    return {"statusCode": 200, "body": {
        "identity": None if ident is None else [ident.cognito_identity_id, ident.cognito_identity_pool_id],
        "client_context": context.client_context,
        "function_name": context.function_name, "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn, "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id, "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name, "remaining": context.get_remaining_time_in_millis(),
    }}
"""


def test_context_attributes(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": CONTEXT}, f1="memory=256, timeout=7")
    step = invoke_function("demo", "main", "f1", config_repo=root)
    assert step.succeeded, step.error
    body = step.output["body"]
    assert body["identity"] == [None, None]  # an object with None fields, never None
    assert body["client_context"] is None
    assert body["function_name"] == "demo-main-f1-local" and body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"].endswith(":function:demo-main-f1-local")
    assert body["memory_limit_in_mb"] == "256"
    assert body["aws_request_id"] == step.request_id
    assert body["log_group_name"] == "/aws/lambda/demo-main-f1-local"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", body["log_stream_name"])
    assert 0 < body["remaining"] <= 7000
    assert "said through context.log" in log_lines(step.logs)


# -- signals, the timeout, Init --------------------------------------------------------------------

ALARM = """
import signal, time

def handler(event, context):
    fired = []
    signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.alarm(1)
    deadline = time.monotonic() + 3
    while not fired and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"statusCode": 200, "body": {"fired": fired == [signal.SIGALRM]}}
"""
SWALLOWS = """
import time

def handler(event, context):
    for _ in range(3):
        try:
            time.sleep(10)
        except:  # noqa: E722 - swallows whatever it can
            pass
    return {"statusCode": 200, "body": "escaped the timeout"}
"""
SLOW_INIT = "import time\ntime.sleep(2)\n" + OK_HANDLER


def test_the_handlers_own_alarm_fires(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": ALARM}, f1="timeout=5")
    step = invoke_function("demo", "main", "f1", config_repo=root)
    assert step.succeeded, step.error
    assert step.output["body"] == {"fired": True}


def test_timeout_cannot_be_swallowed(project_factory):
    root = one_layer(project_factory, "f1", "f2", functions={"f1": SWALLOWS, "f2": OK_HANDLER}, f1="timeout=2")
    t0 = time.monotonic()
    result = run_pipeline("demo", "main", config_repo=root)
    elapsed = time.monotonic() - t0
    step = result.step("f1")
    assert step.status == "failed"
    assert step.error.type == "Sandbox.Timedout"
    assert step.error.message == f"RequestId: {step.request_id} Error: Task timed out after 2.00 seconds"
    assert [s.function for s in result.steps] == ["f1"]
    assert elapsed < 6, elapsed


def test_init_is_not_charged_to_the_timeout(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": SLOW_INIT}, f1="timeout=1")
    step = invoke_function("demo", "main", "f1", config_repo=root)
    assert step.succeeded, step.error
    [report] = [ln for ln in log_lines(step.logs) if ln.startswith("REPORT RequestId:")]
    init = re.search(r"Init Duration: ([\d.]+) ms", report)
    assert init is not None, report
    assert float(init.group(1)) >= 1900, report


# -- memory ------------------------------------------------------------------------------------------

HOG = """
import time

def handler(event, context):
    hog = b"\\x01" * (300 * 1024 * 1024)  # touched, not just reserved
    time.sleep(3)
    return {"statusCode": 200, "body": len(hog)}
"""


def test_memory_size_is_enforced(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": HOG}, f1="memory=128, timeout=10")
    step = invoke_function("demo", "main", "f1", config_repo=root)
    assert step.status == "failed"
    assert step.error.type == "Runtime.OutOfMemory", step.error


def test_max_memory_used_is_the_sandboxes_own(project_factory):
    import resource

    root = one_layer(project_factory, "f1", functions={"f1": OK_HANDLER})
    step = invoke_function("demo", "main", "f1", config_repo=root)
    assert step.succeeded, step.error
    dorc_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # dorc's own (this process)
    assert 0 < step.max_memory_mb < dorc_rss_mb / 2, (step.max_memory_mb, dorc_rss_mb)
    [report] = [ln for ln in log_lines(step.logs) if ln.startswith("REPORT RequestId:")]
    assert f"Max Memory Used: {step.max_memory_mb} MB" in report


# -- processes and threads ---------------------------------------------------------------------------

MULTIPROCESSING = """
import multiprocessing

def child(conn):
    conn.send("from the child")
    conn.close()

def attempt(make):
    try:
        make()
        return None
    except OSError as exc:
        return exc.errno

def handler(event, context):
    parent, theirs = multiprocessing.Pipe()
    p = multiprocessing.Process(target=child, args=(theirs,))
    p.start()
    got = parent.recv()
    p.join()
    return {"statusCode": 200, "body": {"pipe": got, "exitcode": p.exitcode,
                                         "pool": attempt(lambda: multiprocessing.Pool(2)),
                                         "queue": attempt(multiprocessing.Queue)}}
"""


def test_process_and_pipe_work_pool_and_queue_fail_as_in_lambda(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": MULTIPROCESSING})
    step = invoke_function("demo", "main", "f1", config_repo=root)
    assert step.succeeded, step.error
    assert step.output["body"] == {"pipe": "from the child", "exitcode": 0, "pool": 38, "queue": 38}


FORKS = """
import multiprocessing, sys

def child(n):
    print(f"child {n} ran")
    sys.exit(0)

def handler(event, context):
    procs = [multiprocessing.Process(target=child, args=(n,)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return {"statusCode": 200, "body": [p.exitcode for p in procs]}
"""


def test_a_fork_never_runs_dorcs_code(project_factory):
    root = one_layer(project_factory, "f1", "f2", functions={"f1": FORKS, "f2": OK_HANDLER})
    plain, _ = dorc_run(root)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    out = plain.stdout + plain.stderr
    assert out.count("pipeline succeeded") == 1, out
    assert out.count("run record: ") == 1, out
    assert len(records(root)) == 1
    as_json, _ = dorc_run(root, "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)  # one document, nothing else
    assert doc["steps"][0]["output"]["body"] == [0, 0, 0]
    assert len(records(root)) == 2


LINGERING = """
import subprocess, threading, time

def handler(event, context):
    threading.Thread(target=time.sleep, args=(1000,)).start()  # not a daemon
    child = subprocess.Popen(["sleep", event["marker"]])
    return {"statusCode": 200, "body": {"child_pid": child.pid, "alive": child.poll() is None}}
"""


def test_lingering_threads_and_children_do_not_keep_the_run_alive(project_factory):
    marker = f"1000.{uuid.uuid4().int % 10**9:09d}"  # `sleep 1000.<unique>`: found in /proc by it
    root = one_layer(project_factory, "f1", functions={"f1": LINGERING})
    proc, seconds = dorc_run(root, "--json", "--event", json.dumps({"marker": marker}))
    leftovers = processes_with(marker)
    for pid in leftovers:  # never leave them behind, whatever the assertions say
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)["output"]["body"]
    assert body["alive"] is True and body["child_pid"] > 0  # it was running when the handler returned
    assert seconds < 8, seconds  # dorc's start-up included; the thread would sleep 1000 s
    assert leftovers == []


# -- strange failures ---------------------------------------------------------------------------------

DEEP = """
def handler(event, context):
    value = []
    for _ in range(100000):
        value = [value]
    return {"statusCode": 200, "body": value}
"""
BAD_STR = """
class Odd(Exception):
    def __str__(self):
        raise ValueError("no text")

def handler(event, context):
    raise Odd()
"""
CANCELLED = "import asyncio\n\ndef handler(event, context):\n    raise asyncio.CancelledError('stop')\n"
ABORT = "import os\n\ndef handler(event, context):\n    os.abort()\n"
SEGFAULT = "import ctypes\n\ndef handler(event, context):\n    ctypes.string_at(0)\n"
EXITED = "RequestId: {} Error: Runtime exited with error: "


@pytest.mark.parametrize("source, error_type, message", [
    (DEEP, "Runtime.MarshalError", "Unable to marshal response: maximum recursion depth exceeded"),
    (BAD_STR, "Odd", "<exception str() failed: Odd>"),
    (CANCELLED, "Runtime.ExitError", EXITED + "exit status 1"),
    (ABORT, "Runtime.ExitError", EXITED + "signal: aborted"),
    (SEGFAULT, "Runtime.ExitError", EXITED + "signal: segmentation fault"),
], ids=["deep-nesting", "broken-str", "cancelled-error", "abort", "segfault"])
def test_strange_failures_are_failed_steps_with_a_record(project_factory, source, error_type, message):
    root = one_layer(project_factory, "f1", "f2", functions={"f1": source, "f2": OK_HANDLER})
    proc, _ = dorc_run(root, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed"
    [step] = doc["steps"]  # f2 never ran
    assert step["status"] == "failed"
    assert step["error"]["type"] == error_type
    assert step["error"]["message"].startswith(message.format(step["request_id"])), step["error"]
    [record] = records(root)
    assert record["status"] == "failed" and record["steps"][0]["error"]["type"] == error_type


# -- payloads -------------------------------------------------------------------------------------

WELSH_F1 = """
def handler(event, context):
    return {"statusCode": 200, "body": "ŵŷ" * 56_250}
"""
WELSH_F2 = "def handler(event, context):\n    return {'statusCode': 200, 'body': len(event['body'])}\n"


def test_a_225_kb_welsh_result_passes_between_functions(project_factory):
    root = one_layer(project_factory, "f1", "f2", functions={"f1": WELSH_F1, "f2": WELSH_F2})
    result = run_pipeline("demo", "main", config_repo=root)
    assert result.succeeded, result.error
    assert 220_000 < len(result.step("f1").output_json) < 230_000  # UTF-8 bytes, under 256 KiB
    assert result.output["body"] == 112_500


# -- no leaks between functions ---------------------------------------------------------------------

LEAKER = """
import logging, os
import boto3

def handler(event, context):
    os.chdir("/")
    logging.basicConfig(level=logging.DEBUG, format="LEAKED %(message)s", force=True)
    boto3.client = None
    return {"statusCode": 200, "body": {}}
"""
VICTIM = """
import logging, os
import boto3

def handler(event, context):
    logging.getLogger().warning("as Lambda formats it")
    s3 = boto3.client("s3")
    listing = s3.list_objects_v2(Bucket=os.environ["HOLDING_BUCKET"])
    return {"statusCode": 200, "body": {"cwd": os.getcwd(), "task_root": os.environ["LAMBDA_TASK_ROOT"],
                                         "listed": listing["ResponseMetadata"]["HTTPStatusCode"]}}
"""


def test_nothing_leaks_from_one_function_to_the_next(project_factory):
    root = one_layer(project_factory, "f1", "f2", functions={"f1": LEAKER, "f2": VICTIM})
    result = run_pipeline("demo", "main", config_repo=root)
    assert result.succeeded, result.error
    body = result.output["body"]
    assert os.path.realpath(body["cwd"]) == os.path.realpath(body["task_root"])
    assert body["listed"] == 200
    lines = log_lines(result.step("f2").logs)
    assert not any(ln.startswith("LEAKED") for ln in lines), lines
    assert any(ln.startswith("[WARNING]\t") and ln.endswith("\tas Lambda formats it") for ln in lines), lines


# -- the sandbox line -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["full", "portable"])
def test_the_sandbox_level_is_reported(project_factory, mode):
    root = one_layer(project_factory, "f1", functions={"f1": OK_HANDLER})
    env = {"DORC_SANDBOX": "portable"} if mode == "portable" else {}
    plain, _ = dorc_run(root, env=env)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    lines = (plain.stdout + plain.stderr).splitlines()
    as_json, _ = dorc_run(root, "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    if mode == "full":
        assert "sandbox: full" in lines, lines
        assert doc["sandbox"] == "full"
        assert [r["sandbox"] for r in records(root)] == ["full", "full"]
    else:
        assert any(re.fullmatch(r"sandbox: partial \(.+\)", ln) for ln in lines), lines
        assert re.fullmatch(r"partial \(.+\)", doc["sandbox"]), doc["sandbox"]
        assert all(r["sandbox"] == doc["sandbox"] for r in records(root))


# -- dorc run --debug --------------------------------------------------------------------------------

DEBUGGED = """
import time

def handler(event, context):
    line = input()
    time.sleep(1.5)  # past the timeout: suspended under --debug
    return {"statusCode": 200, "body": line}
"""


def test_debug_attaches_stdin_and_suspends_the_timeout(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": DEBUGGED}, f1="timeout=1")
    proc, _ = dorc_run(root, "--debug", input="typed at the terminal\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [record] = records(root)
    assert record["status"] == "succeeded"
    assert record["output"]["body"] == "typed at the terminal"
