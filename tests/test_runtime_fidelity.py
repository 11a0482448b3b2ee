"""What a handler observes of the runtime, checked against what Lambda's Python runtime
(awslambdaric) gives it: the context, the runtime's variables and timezone, the timeout's wording,
the logging set-up, strange failures, payload sizes and the standard streams."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import pytest

from dorc.api import invoke_function, run_pipeline
from dorc.plan import STATE_PAYLOAD_MAX_BYTES
from dorc_sim.runtime import FunctionSpec
from dorc_sim.sandbox.interpreters import find_interpreter
from dorc_sim.sandbox.isolation import probe
from dorc_sim.sandbox.launcher import Sandbox, SandboxSpec
from dorc_sim.sandbox.sdk import runtime_dir
from helpers import OK_HANDLER, chain_main


def one_layer(project_factory, *names, functions: dict, **function_kwargs):
    return project_factory({"demo/main": {"main": chain_main(*names, **function_kwargs), "functions": functions}})


def invoke(project_factory, source: str, **function_kwargs):
    root = one_layer(project_factory, "f1", functions={"f1": source}, **function_kwargs)
    return invoke_function("demo", "main", "f1", event={"k": "v"}, config_repo=root)


# -- 1. the context, attribute for attribute ----------------------------------------------------

CONTEXT_HANDLER = """
def handler(event, context):
    context.log("said through context.log\\n")
    ident = context.identity
    return {"statusCode": 200, "body": {
        "identity_is_none": ident is None,
        "identity": [ident.cognito_identity_id, ident.cognito_identity_pool_id],
        "identity_type": type(ident).__name__,
        "client_context": context.client_context,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "tenant_id": context.tenant_id,
    }}
"""


def test_context_has_every_attribute_lambdas_runtime_sets(project_factory):
    """awslambdaric always builds ``identity`` (both fields None) and types the memory as a str;
    code reading ``context.identity.cognito_identity_id`` must not crash locally either."""
    step = invoke(project_factory, CONTEXT_HANDLER, f1="memory=256, timeout=7")
    assert step.succeeded, step.error
    body = step.output["body"]
    name = step.deployed_name
    assert body["identity_is_none"] is False and body["identity"] == [None, None]
    assert body["identity_type"] == "CognitoIdentity"
    assert body["client_context"] is None and body["tenant_id"] is None
    assert body["function_name"] == name and body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"].startswith("arn:aws:lambda:")
    assert body["invoked_function_arn"].endswith(f":function:{name}")
    assert body["memory_limit_in_mb"] == "256"
    assert body["aws_request_id"] == step.request_id
    assert body["log_group_name"] == f"/aws/lambda/{name}"
    assert "/[$LATEST]" in body["log_stream_name"]
    assert 0 < body["remaining"] <= 7000
    assert "said through context.log" in step.logs.splitlines()


# -- 2. AWS_LAMBDA_RUNTIME_API and TZ=:UTC applied ------------------------------------------------

CLOCK_HANDLER = """
import os, time
from datetime import datetime

def handler(event, context):
    return {"statusCode": 200, "body": {
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
        "tz": os.environ.get("TZ"),
        "offset": datetime.now().astimezone().utcoffset().total_seconds(),
        "zone": time.strftime("%Z"),
    }}
"""


@pytest.fixture
def kolkata(monkeypatch):
    """dorc itself running at UTC+05:30: a handler must still see UTC, and dorc get its zone back."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_runtime_api_is_set_and_handlers_run_in_utc(project_factory, kolkata):
    step = invoke(project_factory, CLOCK_HANDLER)
    assert step.succeeded, step.error
    body = step.output["body"]
    host, _, port = body["runtime_api"].partition(":")
    assert host == "127.0.0.1" and port.isdigit()
    assert body["tz"] == ":UTC"
    assert body["offset"] == 0.0 and body["zone"] == "UTC"
    # dorc's own timezone after the call
    assert time.localtime().tm_gmtoff == 5 * 3600 + 1800


# -- 3. the timeout in Lambda's words ----------------------------------------------------------

def test_timeout_message_has_lambdas_request_id_prefix(project_factory):
    step = invoke(project_factory, "import time\n\ndef handler(event, context):\n    time.sleep(10)\n",
                  f1="timeout=1")
    assert step.error.type == "Sandbox.Timedout"
    assert step.error.message == f"RequestId: {step.request_id} Error: Task timed out after 1.00 seconds"
    # the log line is CloudWatch's: timestamp, request id, the bare text
    [line] = [ln for ln in step.logs.splitlines() if "timed out" in ln]
    assert line.endswith(f"Z {step.request_id} Task timed out after 1.00 seconds")


# -- 4. the runtime's logging: a replaced formatter, JSON format and level ---------------------

FORMATTER_HANDLER = """
import logging

root = logging.getLogger()
root.setLevel(logging.INFO)
root.handlers[0].setFormatter(logging.Formatter("MINE %(levelname)s %(aws_request_id)s %(message)s"))

def handler(event, context):
    logging.getLogger("shop").info("order %s stored", 42)
    return {"statusCode": 200, "body": {}}
"""


def test_formatter_set_on_the_runtimes_log_handler_is_used(project_factory):
    """The common Lambda idiom: the root logger's first handler is the runtime's; its format is
    the function's to choose."""
    before = list(logging.getLogger().handlers)
    step = invoke(project_factory, FORMATTER_HANDLER)
    assert step.succeeded, step.error
    assert f"MINE INFO {step.request_id} order 42 stored" in step.logs.splitlines()
    assert logging.getLogger().handlers == before  # dorc's (and pytest's) handlers untouched


def test_default_log_format_is_lambdas_text_format(project_factory):
    step = invoke(project_factory, "import logging\n\ndef handler(event, context):\n"
                                   "    logging.getLogger().warning('low stock')\n"
                                   "    return {'statusCode': 200, 'body': {}}\n")
    [line] = [ln for ln in step.logs.splitlines() if "low stock" in ln]
    level, ts, request_id, message = line.split("\t")
    assert (level, request_id, message) == ("[WARNING]", step.request_id, "low stock")
    assert ts.endswith("Z") and len(ts) == len("2024-01-01T00:00:00.000Z")


JSON_LOG_HANDLER = """
import logging

def handler(event, context):
    log = logging.getLogger("shop")
    log.info("not at WARN")
    log.warning("stock low", extra={"sku": "A-1"})
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed")
    print("plain print")
    return {"ok": True}
"""


def test_json_log_format_and_level(project_factory):
    """A function's JSON log format and level reach its runtime (AWS_LAMBDA_LOG_FORMAT and
    AWS_LAMBDA_LOG_LEVEL, as Lambda sets them): one JSON object a line, with Lambda's keys, and
    records below the level dropped."""
    root_level = logging.getLogger().level
    step = invoke(project_factory, JSON_LOG_HANDLER, f1="log_format='JSON', log_level='WARN'")
    assert step.succeeded, step.error
    assert logging.getLogger().level == root_level  # dorc's logging level is not the handler's
    docs = [json.loads(line) for line in step.logs.splitlines() if line.startswith("{")]
    assert "not at WARN" not in step.logs
    warn, exc = docs
    assert set(warn) == {"timestamp", "level", "message", "logger", "requestId", "sku"}
    assert warn["level"] == "WARNING" and warn["message"] == "stock low" and warn["logger"] == "shop"
    assert warn["requestId"] == step.request_id and warn["sku"] == "A-1" and warn["timestamp"].endswith("Z")
    assert exc["level"] == "ERROR" and exc["errorType"] == "ZeroDivisionError"
    assert exc["errorMessage"] == "division by zero" and exc["stackTrace"] and exc["location"]
    assert "plain print" in step.logs.splitlines()  # prints stay plain text, as in Lambda


def test_function_log_settings_reach_the_runtime_through_the_plan(project_factory):
    """Declared on the Function (``log_format``/``log_level``), as a deployed function gets them."""
    step = invoke(project_factory, JSON_LOG_HANDLER, f1="log_format='JSON', log_level='ERROR'")
    assert step.succeeded, step.error
    levels = [json.loads(line)["level"] for line in step.logs.splitlines() if line.startswith("{")]
    assert levels == ["ERROR"]  # the INFO and WARNING records are below the level


def test_json_log_format_writes_an_unhandled_error_as_one_json_line(project_factory):
    step = invoke(project_factory, "def handler(event, context):\n    raise ValueError('bad row')\n",
                  f1="log_format='JSON'")
    [doc] = [json.loads(line) for line in step.logs.splitlines() if line.startswith("{")]
    assert doc["log_level"] == "ERROR" and doc["errorType"] == "ValueError"
    assert doc["errorMessage"] == "bad row" and doc["requestId"] == step.request_id and doc["stackTrace"]
    assert "[ERROR]" not in step.logs


# -- 5. strange failures: a failed step, a record, valid --json; dorc never crashes --------------

RAISES = "{imports}\ndef handler(event, context):\n    print('about to raise')\n    raise {exc}\n"
EXIT_1 = "RequestId: {} Error: Runtime exited with error: exit status 1"


@pytest.mark.parametrize("source, error_type, message, in_logs", [
    (RAISES.format(imports="import asyncio", exc="asyncio.CancelledError('stop')"),
     "Runtime.ExitError", EXIT_1, "asyncio.exceptions.CancelledError: stop"),
    (RAISES.format(imports="", exc="GeneratorExit"), "Runtime.ExitError", EXIT_1, "GeneratorExit"),
    (RAISES.format(imports="", exc="KeyboardInterrupt"), "Runtime.ExitError",
     "RequestId: {} Error: Runtime exited with error: signal: interrupt", "KeyboardInterrupt"),
    ("import asyncio\nraise asyncio.CancelledError('at import')\n" + OK_HANDLER, "Runtime.ExitError", EXIT_1,
     "asyncio.exceptions.CancelledError: at import"),
], ids=["cancelled-error", "generator-exit", "keyboard-interrupt-raised",
        "cancelled-at-import"])
def test_any_handler_failure_is_a_failed_step_with_a_record(project_factory, cli, source, error_type,
                                                           message, in_logs):
    """In Lambda an uncaught BaseException ends the runtime process (Runtime.ExitError); a
    KeyboardInterrupt the handler raises itself is the function's failure, not a Ctrl-C of dorc.
    (A result nested too deep and an exception whose str() fails: test_sandbox_fidelity's
    test_strange_failures_are_failed_steps_with_a_record.)"""
    root = one_layer(project_factory, "f1", "f2", functions={"f1": source, "f2": OK_HANDLER})
    r = cli("run", "demo", "main", "--json", "--config-repo", root)
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["status"] == "failed"
    [step] = doc["steps"]  # f2 never ran
    assert step["function"] == "f1" and step["status"] == "failed"
    assert step["error"]["type"] == error_type
    assert step["error"]["message"].startswith(message.format(step["request_id"]))
    [record] = [json.loads(p.read_text()) for p in (root / ".dorc" / "runs").glob("*.json")]
    assert record["status"] == "failed" and record["steps"][0]["error"]["type"] == error_type
    logs = record["steps"][0]["logs"]  # the log shows what ended the runtime, as Python prints it
    assert in_logs in logs
    assert "about to raise" in logs or "at import" in in_logs


def test_after_a_base_exception_the_next_call_is_a_cold_start(tmp_path):
    """The runtime process is gone in Lambda: the module is imported again."""
    (tmp_path / "lambda.py").write_text("import asyncio\nCALLS = []\n\ndef handler(event, context):\n"
                                        "    CALLS.append(1)\n    if event.get('cancel'):\n"
                                        "        raise asyncio.CancelledError()\n    return len(CALLS)\n")
    spec = SandboxSpec(function=FunctionSpec(name="fn", source_dir=str(tmp_path)),
                       python=find_interpreter("python3.12").executable, runtime_dir=str(runtime_dir()))
    with Sandbox(spec, probe()) as box:
        assert box.invoke("{}").payload == b"1"
        assert box.invoke("{}").payload == b"2"  # warm
        assert box.invoke('{"cancel": true}').error.type == "Runtime.ExitError"
        again = box.invoke("{}")
        assert again.ok and again.payload == b"1" and again.init_duration_ms is not None


# -- 6. payload sizes as Step Functions counts them ---------------------------------------------

WELSH = "Mae'r ŵyn yn y tŷ â'r dŵr ar y bryn; "


def test_non_ascii_result_is_counted_in_utf8_bytes(project_factory):
    """A 225 KB Welsh text passes the 256 KiB state limit in AWS: Step Functions counts the UTF-8
    bytes, not the ASCII-escaped JSON (which would be ~1.5x here and fail)."""
    repeat = 225_000 // len(WELSH.encode())
    text = WELSH * repeat
    assert len(json.dumps(text).encode()) > STATE_PAYLOAD_MAX_BYTES > len(json.dumps(text, ensure_ascii=False).encode())
    source = f"TEXT = {WELSH!r} * {repeat}\n\ndef handler(event, context):\n    return {{'statusCode': 200, 'body': TEXT}}\n"
    root = one_layer(project_factory, "f1", "f2", functions={"f1": source, "f2": OK_HANDLER})
    result = run_pipeline("demo", "main", config_repo=root)
    assert result.succeeded, result
    step = result.step("f1")
    assert step.output["body"] == text
    assert step.output_json == json.dumps({"statusCode": 200, "body": text}, ensure_ascii=False).encode()
    assert result.step("f2").input["body"] == text


def test_result_over_256_kib_in_utf8_still_fails_with_its_utf8_size(project_factory):
    repeat = 270_000 // len(WELSH.encode())
    source = f"def handler(event, context):\n    return {{'statusCode': 200, 'body': {WELSH!r} * {repeat}}}\n"
    root = one_layer(project_factory, "f1", "f2", functions={"f1": source, "f2": OK_HANDLER})
    result = run_pipeline("demo", "main", config_repo=root)
    assert not result.succeeded
    size = len(json.dumps({"statusCode": 200, "body": WELSH * repeat}, ensure_ascii=False).encode())
    assert result.error.type == "States.DataLimitExceeded"
    assert f"{size:,} bytes" in result.error.message


# -- 7. real file descriptors: stdout for subprocesses, stdin at EOF -----------------------------

STREAMS_HANDLER = """
import os, subprocess, sys

def handler(event, context):
    subprocess.run([sys.executable, "-c", "print('from the child process')"],
                   stdout=sys.stdout, stderr=sys.stderr, check=True)
    os.write(sys.stdout.fileno(), b"written to the descriptor\\n")
    print("printed")
    child_stdin = subprocess.run([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    return {"statusCode": 200, "body": {"stdin": sys.stdin.read(), "tty": sys.stdout.isatty(),
                                        "child_stdin": child_stdin}}
"""


@pytest.fixture
def dorc_stdin_has_input():
    """dorc's file descriptor 0 holds text (a pipe, as in ``echo secret | dorc run``): neither the
    handler nor a child it starts may read it."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"dorc's own input\n")
    os.close(write_fd)
    saved = os.dup(0)
    os.dup2(read_fd, 0)
    os.close(read_fd)
    yield
    os.dup2(saved, 0)
    os.close(saved)


def test_stdout_has_a_file_descriptor_whose_output_reaches_the_log(project_factory, dorc_stdin_has_input):
    streams = sys.stdin, sys.stdout, sys.stderr
    stdin_stat = os.fstat(0)
    step = invoke(project_factory, STREAMS_HANDLER)
    assert (sys.stdin, sys.stdout, sys.stderr) == streams  # dorc's streams back after the call
    assert step.succeeded, step.error
    assert step.output["body"] == {"stdin": "", "tty": False, "child_stdin": "''"}
    assert os.fstat(0) == stdin_stat  # dorc's own file descriptor 0 back after the call, unread
    assert os.read(0, 100) == b"dorc's own input\n"
    lines = step.logs.splitlines()
    end = next(i for i, ln in enumerate(lines) if ln.startswith("END RequestId"))
    for text in ("from the child process", "written to the descriptor", "printed"):
        assert text in lines[:end], step.logs
