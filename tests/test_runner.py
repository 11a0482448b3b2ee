"""The in-process runner through ``dorc.api.run_pipeline``: hops, contracts, Lambda's runtime rules,
hand-overs and run records."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from dorc.api import run_pipeline
from dorc.errors import DorcError
from helpers import OK_HANDLER, chain_main, handler_returning, make_project

ECHO = """
def handler(event, context):
    return {"statusCode": 200, "body": {"event": event}}
"""


def run(root, instance="demo", layer="main", **kw):
    return run_pipeline(instance, layer, config_repo=root, **kw)


def one_layer(project_factory, *names, functions: dict, **function_kwargs):
    return project_factory({"demo/main": {"main": chain_main(*names, **function_kwargs), "functions": functions}})


# -- the hop between functions ---------------------------------------------------------------

def test_json_hop_semantics(project_factory):
    f1 = """
    KEPT = {}

    def handler(event, context):
        out = {"statusCode": 200, "body": {"pair": (1, 2), "items": [1], "nested": {"n": None}}}
        KEPT["last"] = out
        return out
    """
    f2 = """
    def handler(event, context):
        body = event["body"]
        pair_type = type(body["pair"]).__name__
        body["items"].append(99)          # mutate the event it was given
        event["statusCode"] = 999
        return {"statusCode": 200, "body": {"pair_type": pair_type, "items": body["items"]}}
    """
    root = one_layer(project_factory, "f1", "f2", functions={"f1": f1, "f2": f2})
    result = run(root, event={"first": True})
    assert result.succeeded, result.error
    s1, s2 = result.step("f1"), result.step("f2")
    assert s1.input == {"first": True}
    # a tuple crosses the hop as a JSON array
    assert s1.output == {"statusCode": 200, "body": {"pair": [1, 2], "items": [1], "nested": {"n": None}}}
    assert s2.input == s1.output
    assert s2.output["body"] == {"pair_type": "list", "items": [1, 99]}
    # f2 mutated a fresh object: f1's recorded output is untouched
    assert s1.output["body"]["items"] == [1]
    assert s1.output["statusCode"] == 200
    assert result.output == s2.output


def test_default_event_is_empty_object(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": ECHO})
    result = run(root)
    assert result.step("f1").input == {}
    assert result.output["body"]["event"] == {}


@pytest.mark.parametrize("event, expected", [
    ({"year": 2020, "states": ["CA", "TX"]}, {"year": 2020, "states": ["CA", "TX"]}),
    (b'{"raw": "json \\"quoted\\"\\n"}', {"raw": 'json "quoted"\n'}),
    ([1, 2, 3], [1, 2, 3]),
], ids=["python-value", "json-bytes", "list"])
def test_event_reaches_the_first_function(project_factory, event, expected):
    root = one_layer(project_factory, "f1", functions={"f1": ECHO})
    assert run(root, event=event).output["body"]["event"] == expected


def test_first_event_over_the_payload_limit_fails_before_any_step(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": ECHO})
    result = run(root, event={"x": "y" * 270_000})
    assert not result.succeeded
    assert result.steps == []
    assert result.error.type == "States.DataLimitExceeded"


# -- the contract between functions ----------------------------------------------------------

CONTRACT_BREAKS = {
    "list": "[1, 2]",
    "string": "'ok'",
    "none": "None",
    "missing-statusCode": "{'body': {}}",
    "string-statusCode": "{'statusCode': '200', 'body': {}}",
    "bool-statusCode": "{'statusCode': True, 'body': {}}",
    "missing-body": "{'statusCode': 200}",
}
CONTRACT_REASONS = {
    "list": "f1 returned no 'statusCode' (not a JSON object",
    "string": "f1 returned no 'statusCode' (not a JSON object",
    "none": "f1 returned no 'statusCode' (not a JSON object",
    "missing-statusCode": "f1 returned no 'statusCode'",
    "string-statusCode": "f1 returned a 'statusCode' that is not a number",
    "bool-statusCode": "f1 returned a 'statusCode' that is not a number",
    "missing-body": "f1 returned no 'body'",
}


@pytest.fixture(scope="module")
def contract_project(tmp_path_factory):
    """One project, one layer per case; each layer is f1 (the case) -> f2 (never reached)."""
    layers = {
        f"demo/{case}": {"main": chain_main("f1", "f2"),
                         "functions": {"f1": handler_returning(expr), "f2": OK_HANDLER}}
        for case, expr in CONTRACT_BREAKS.items()
    }
    layers["demo/status500"] = {"main": chain_main("f1", "f2", "f3"), "functions": {
        "f1": OK_HANDLER, "f2": handler_returning("{'statusCode': 500, 'body': {'why': 'upstream down'}}"),
        "f3": OK_HANDLER}}
    layers["demo/status299"] = {"main": chain_main("f1", "f2"), "functions": {
        "f1": handler_returning("{'statusCode': 299.5, 'body': None}"), "f2": OK_HANDLER}}
    return make_project(tmp_path_factory.mktemp("contract"), layers)


@pytest.mark.parametrize("case", sorted(CONTRACT_BREAKS))
def test_contract_violation_stops_the_pipeline(contract_project, case):
    result = run(contract_project, layer=case)
    assert not result.succeeded
    assert [s.function for s in result.steps] == ["f1"]  # f2 never ran
    step = result.step("f1")
    assert step.status == "failed"
    assert step.error.type == "dorc.ContractViolation"
    assert "numeric 'statusCode'" in step.error.message
    assert step.error.message.startswith(CONTRACT_REASONS[case]), step.error.message  # what exactly was wrong
    assert result.error.type == "dorc.ContractViolation"
    # what the function returned is still recorded
    assert step.output == eval(CONTRACT_BREAKS[case])


def test_non_success_status_code_stops_the_pipeline(contract_project):
    result = run(contract_project, layer="status500")
    assert result.status == "failed"
    assert [(s.function, s.status) for s in result.steps] == [("f1", "succeeded"), ("f2", "failed")]
    assert result.error.type == "dorc.NonSuccessStatusCode"
    assert result.step("f2").error.type == "dorc.NonSuccessStatusCode"
    assert result.step("f2").error.message == "f2 returned statusCode 500, outside 200-299"
    assert result.step("f2").output == {"statusCode": 500, "body": {"why": "upstream down"}}
    assert result.failed_step.function == "f2"
    assert result.output is None


def test_any_2xx_status_code_passes(contract_project):
    result = run(contract_project, layer="status299")
    assert result.succeeded, result.error
    assert [s.function for s in result.steps] == ["f1", "f2"]


# -- Lambda's runtime rules ------------------------------------------------------------------

@pytest.mark.parametrize("value, type_name", [("{1, 2}", "set"), ("object()", "object")])
def test_unserialisable_return_is_a_marshal_error(project_factory, value, type_name):
    root = one_layer(project_factory, "f1", "f2",
                     functions={"f1": handler_returning(f"{{'statusCode': 200, 'body': {value}}}"), "f2": OK_HANDLER})
    result = run(root)
    step = result.step("f1")
    assert step.error.type == "Runtime.MarshalError"
    assert f"Object of type {type_name} is not JSON serializable" in step.error.message
    assert len(result.steps) == 1


def test_decimal_is_serialised_as_a_number(project_factory):
    f1 = handler_returning("{'statusCode': decimal.Decimal('200'), 'body': [decimal.Decimal('1.5')]}", "import decimal")
    root = one_layer(project_factory, "f1", functions={"f1": f1})
    result = run(root)
    assert result.succeeded, result.error
    assert result.output == {"statusCode": 200, "body": [1.5]}


def test_output_over_256_kib_is_data_limit_exceeded(project_factory):
    value = {"statusCode": 200, "body": "x" * 300_000}
    root = one_layer(project_factory, "f1", "f2",
                     functions={"f1": handler_returning("{'statusCode': 200, 'body': 'x' * 300_000}"), "f2": OK_HANDLER})
    result = run(root)
    size = len(json.dumps(value).encode())
    step = result.step("f1")
    assert step.error.type == "States.DataLimitExceeded"
    assert f"{size:,} bytes" in step.error.message
    assert "262,144" in step.error.message
    assert [s.function for s in result.steps] == ["f1"]
    assert result.error.type == "States.DataLimitExceeded"


def test_output_just_under_the_limit_passes(project_factory):
    # {"statusCode": 200, "body": "..."} is 31 bytes plus the string
    root = one_layer(project_factory, "f1", "f2", functions={
        "f1": handler_returning(f"{{'statusCode': 200, 'body': 'x' * {262_144 - 31}}}"),
        "f2": handler_returning("{'statusCode': 200, 'body': len(event['body'])}")})
    result = run(root)
    assert len(result.step("f1").output_json) == 262_144
    assert result.succeeded, result.error
    assert result.output["body"] == 262_144 - 31


def test_handler_exception(project_factory):
    f1 = """
    def helper(x):
        raise ValueError(f"bad value: {x}")

    def handler(event, context):
        return helper(42)
    """
    root = one_layer(project_factory, "f1", "f2", functions={"f1": f1, "f2": OK_HANDLER})
    result = run(root)
    err = result.step("f1").error
    assert err.type == "ValueError"
    assert err.message == "bad value: 42"
    trace = "".join(err.stack_trace)
    assert os.path.join("src", "demo", "main", "src", "f1", "lambda.py") in trace
    assert "in handler" in trace and "in helper" in trace
    assert "sim/runtime.py" not in trace  # the user's frames only, as Lambda shows them
    assert result.error.type == "ValueError"
    assert len(result.steps) == 1


def test_import_time_error(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": "import no_such_module_xyz\n" + OK_HANDLER})
    err = run(root).step("f1").error
    assert err.type == "Runtime.ImportModuleError"
    assert "no_such_module_xyz" in err.message


def test_timeout(project_factory):
    f1 = """
    import time

    def handler(event, context):
        try:
            time.sleep(20)
        except Exception:
            pass  # a timeout cannot be swallowed by the handler
        return {"statusCode": 200, "body": {}}
    """
    root = one_layer(project_factory, "f1", "f2", functions={"f1": f1, "f2": OK_HANDLER}, f1="timeout=1")
    t0 = time.monotonic()
    result = run(root)
    elapsed = time.monotonic() - t0
    step = result.step("f1")
    assert step.error.type == "Sandbox.Timedout"
    assert step.error.message == f"RequestId: {step.request_id} Error: Task timed out after 1.00 seconds"
    assert "Task timed out after 1.00 seconds" in step.logs
    # stopped at the timeout, not after the handler's 20 s (wide margins for a busy CI machine)
    assert 950 <= step.duration_ms < 5000
    assert elapsed < 8.0
    assert len(result.steps) == 1


@pytest.mark.parametrize("where", ["handler", "import"])
def test_sys_exit_fails_the_call_not_the_process(project_factory, where):
    if where == "handler":
        f1 = "import sys\n\ndef handler(event, context):\n    sys.exit(3)\n"
    else:
        f1 = "import sys\nsys.exit(3)\n" + OK_HANDLER
    root = one_layer(project_factory, "f1", "f2", functions={"f1": f1, "f2": OK_HANDLER})
    result = run(root)  # would end pytest if SystemExit escaped
    err = result.step("f1").error
    assert err.type == "Runtime.ExitError"
    assert "exit status 3" in err.message
    assert len(result.steps) == 1


def test_context_attributes(project_factory):
    f1 = """
    import time

    def handler(event, context):
        first = context.get_remaining_time_in_millis()
        time.sleep(0.05)
        second = context.get_remaining_time_in_millis()
        return {"statusCode": 200, "body": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "aws_request_id": context.aws_request_id,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": [first, second],
        }}
    """
    root = one_layer(project_factory, "f1", functions={"f1": f1}, f1="timeout=7, memory=256")
    result = run(root)
    assert result.succeeded, result.error
    step = result.step("f1")
    ctx = step.output["body"]
    assert ctx["function_name"] == "demo-main-f1-local" == step.deployed_name
    assert ctx["function_version"] == "$LATEST"
    assert ctx["aws_request_id"] == step.request_id
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ctx["aws_request_id"])
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:eu-west-2:000000000000:function:demo-main-f1-local"
    assert ctx["memory_limit_in_mb"] == "256"
    assert ctx["log_group_name"] == "/aws/lambda/demo-main-f1-local"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", ctx["log_stream_name"])
    first, second = ctx["remaining"]
    assert 0 < second < first <= 7000
    assert first - second >= 40
    assert f"START RequestId: {step.request_id} Version: $LATEST" in step.logs


# -- environment -----------------------------------------------------------------------------

ENV_KEYS = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "LAMBDA_TASK_ROOT", "_HANDLER", "HOLDING_BUCKET", "DORC_ENV", "DORC_PIPELINE", "MY_VAR",
            "AWS_ACCESS_KEY_ID", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_PROFILE", "AWS_ENDPOINT_URL"]


def test_lambda_environment_is_set_during_the_call_and_restored(project_factory, monkeypatch):
    f1 = "import os\n\ndef handler(event, context):\n" \
         f"    return {{'statusCode': 200, 'body': {{k: os.environ.get(k) for k in {ENV_KEYS!r}}}}}\n"
    root = one_layer(project_factory, "f1", functions={"f1": f1},
                     f1="memory=256, environment={'MY_VAR': 'mine', 'HOME': '/var/task-home'}")
    # the caller's shell: its own values must neither reach the function nor be lost afterwards
    monkeypatch.setenv("MY_VAR", "the caller's")
    monkeypatch.setenv("AWS_REGION", "us-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-THE-CALLERS-REAL-KEY")
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4566")
    before = dict(os.environ)
    result = run(root)
    after = dict(os.environ)
    assert result.succeeded, result.error
    env = result.output["body"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "demo-main-f1-local"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-2"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    # the task root: the function's package as Lambda unzips it (not the source folder)
    task_root = Path(env["LAMBDA_TASK_ROOT"])
    assert task_root.parent == root / ".dorc" / "task-roots"
    assert (task_root / "lambda.py").read_text() == (root / "src" / "demo" / "main" / "src" / "f1" / "lambda.py").read_text()
    assert env["_HANDLER"] == "lambda.handler"
    assert env["HOLDING_BUCKET"] == "t-holding-local"
    assert env["DORC_ENV"] == "local" and env["DORC_PIPELINE"] == "demo/main"
    assert env["MY_VAR"] == "mine"
    # the function's role session in the local AWS (as Lambda's), never the caller's real credentials
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA") and env["AWS_ACCESS_KEY_ID"] != os.environ.get("AWS_ACCESS_KEY_ID")
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/demo-main-f1-local"
    assert env["AWS_PROFILE"] is None  # never the caller's profile
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")  # dorc's local AWS, never the caller's
    assert after == before


def test_variables_a_handler_sets_do_not_leak_into_the_caller(project_factory, monkeypatch):
    f1 = """
    import os

    def handler(event, context):
        os.environ["SET_BY_HANDLER"] = "1"
        os.environ["DORC_TEST_EXISTING"] = "changed by the handler"
        os.environ.pop("DORC_TEST_REMOVED", None)
        return {"statusCode": 200, "body": {}}
    """
    root = one_layer(project_factory, "f1", functions={"f1": f1})
    monkeypatch.setenv("DORC_TEST_EXISTING", "original")
    monkeypatch.setenv("DORC_TEST_REMOVED", "still here")
    monkeypatch.delenv("SET_BY_HANDLER", raising=False)
    before = dict(os.environ)
    assert run(root).succeeded
    after = dict(os.environ)
    monkeypatch.delenv("SET_BY_HANDLER", raising=False)  # clean up whatever the run left behind
    assert {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == {}


def test_variables_a_handler_sets_are_not_seen_by_the_next_function(project_factory, monkeypatch):
    monkeypatch.delenv("SET_BY_F1", raising=False)
    f1 = "import os\n\ndef handler(event, context):\n    os.environ['SET_BY_F1'] = 'x'\n    return {'statusCode': 200, 'body': {}}\n"
    f2 = "import os\n\ndef handler(event, context):\n    return {'statusCode': 200, 'body': os.environ.get('SET_BY_F1')}\n"
    root = one_layer(project_factory, "f1", "f2", functions={"f1": f1, "f2": f2})
    result = run(root)
    monkeypatch.delenv("SET_BY_F1", raising=False)
    # each function is its own execution environment in AWS
    assert result.step("f2").output["body"] is None


# -- isolation between functions -------------------------------------------------------------

def _isolated(value: str, lazy: bool = False) -> dict:
    if lazy:
        lam = ("def handler(event, context):\n    import util\n"
               "    return {'statusCode': 200, 'body': {'util': util.VALUE, 'file': util.__file__}}\n")
    else:
        lam = (f"import util\n\nMINE = {value!r}\n\ndef handler(event, context):\n"
               "    return {'statusCode': 200, 'body': {'util': util.VALUE, 'mine': MINE, 'file': util.__file__}}\n")
    return {"lambda.py": lam, "util.py": f"VALUE = {value!r}\n"}


def test_functions_see_their_own_lambda_py_and_helper_modules(project_factory):
    f3 = "import util\n" + OK_HANDLER  # has no util.py of its own
    root = one_layer(project_factory, "f1", "f2", "f3",
                     functions={"f1": _isolated("one"), "f2": _isolated("two"), "f3": f3})
    result = run(root)
    b1, b2 = result.step("f1").output["body"], result.step("f2").output["body"]
    assert (b1["util"], b1["mine"]) == ("one", "one")
    assert (b2["util"], b2["mine"]) == ("two", "two")
    assert Path(b1["file"]).read_text() == "VALUE = 'one'\n"  # each from its own task root
    assert Path(b2["file"]).read_text() == "VALUE = 'two'\n"
    # another function's helper is not importable
    err = result.step("f3").error
    assert err.type == "Runtime.ImportModuleError"
    assert "util" in err.message


def test_helper_modules_imported_inside_the_handler(project_factory):
    # In Lambda the function's folder (LAMBDA_TASK_ROOT) is on sys.path for every call, so an
    # import inside the handler finds the function's own helper module.
    root = one_layer(project_factory, "f1", "f2", functions={"f1": _isolated("one", lazy=True),
                                                             "f2": _isolated("two", lazy=True)})
    result = run(root)
    assert result.succeeded, result.error
    assert result.step("f1").output["body"]["util"] == "one"
    assert result.step("f2").output["body"]["util"] == "two"


def test_runs_do_not_share_modules(project_factory):
    counter = "COUNT = 0\n\ndef handler(event, context):\n    global COUNT\n    COUNT += 1\n" \
              "    return {'statusCode': 200, 'body': COUNT}\n"
    root = one_layer(project_factory, "f1", functions={"f1": counter})
    assert run(root).output["body"] == 1
    assert run(root).output["body"] == 1  # a new run is a cold start


# -- logs ------------------------------------------------------------------------------------

def test_prints_and_logging_are_the_steps_logs(project_factory, capsys):
    f1 = """
    import logging
    import sys

    def handler(event, context):
        print("hello from f1")
        print("to stderr", file=sys.stderr)
        logging.getLogger().warning("careful: %s", 42)
        print("no newline at the end", end="")
        return {"statusCode": 200, "body": {}}
    """
    root = one_layer(project_factory, "f1", functions={"f1": f1})
    result = run(root)
    step = result.step("f1")
    rid = step.request_id
    lines = step.logs.splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert "hello from f1" in lines
    assert "to stderr" in lines
    assert "no newline at the end" in lines
    warning = [l for l in lines if l.startswith("[WARNING]")]
    assert len(warning) == 1
    level, ts, request_id, message = warning[0].split("\t")
    assert (request_id, message) == (rid, "careful: 42")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
    assert lines[-2] == f"END RequestId: {rid}"
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    assert "Memory Size: 512 MB" in lines[-1] and "Init Duration: " in lines[-1]
    assert lines.index("hello from f1") < lines.index(f"END RequestId: {rid}")
    # nothing reached the caller's own stdout/stderr
    captured = capsys.readouterr()
    assert "hello from f1" not in captured.out + captured.err


def test_observer_hears_the_run(project_factory):
    class Recorder:
        def __init__(self):
            self.events = []

        def step_started(self, layer, function, deployed_name):
            self.events.append(("start", layer, function, deployed_name))

        def log(self, line):
            self.events.append(("log", line))

        def step_finished(self, step):
            self.events.append(("finished", step.function, step.status))

    root = one_layer(project_factory, "f1", "f2", functions={"f1": "def handler(e, c):\n    print('hi')\n"
                                                                   "    return {'statusCode': 200, 'body': 1}\n",
                                                             "f2": OK_HANDLER})
    rec = Recorder()
    run(root, observer=rec)
    starts = [e for e in rec.events if e[0] == "start"]
    assert starts == [("start", "demo/main", "f1", "demo-main-f1-local"), ("start", "demo/main", "f2", "demo-main-f2-local")]
    assert ("log", "hi") in rec.events
    assert [e for e in rec.events if e[0] == "finished"] == [("finished", "f1", "succeeded"), ("finished", "f2", "succeeded")]


# -- hand-over across layers -----------------------------------------------------------------

def _echo(tag: str) -> str:
    return (f"def handler(event, context):\n"
            f"    return {{'statusCode': 200, 'body': {{'by': {tag!r}, 'got': event}}}}\n")


@pytest.fixture
def handover_project(project_factory):
    return project_factory({
        "demo/a": {"main": chain_main("f1", handover="b"), "functions": {"f1": _echo("a.f1")}},
        "demo/b": {"main": chain_main("g1", "g2", handover="other/x"), "functions": {"g1": _echo("b.g1"), "g2": _echo("b.g2")}},
        "other/x": {"main": chain_main("h1"), "functions": {"h1": _echo("x.h1")}},
        "demo/c": {"main": chain_main("f1"), "functions": {"f1": _echo("c.f1")}},
    })


def test_handover_runs_the_next_layer(handover_project):
    result = run(handover_project, layer="a", event={"start": 1})
    assert result.succeeded, result.error
    assert [(s.layer, s.function) for s in result.steps] == [
        ("demo/a", "f1"), ("demo/b", "g1"), ("demo/b", "g2"), ("other/x", "h1")]
    a_out = result.step("f1", layer="a").output
    assert result.step("g1").input == a_out
    assert result.step("g1").output["body"]["got"] == a_out
    assert result.output == result.step("h1").output
    assert result.step("h1").deployed_name == "other-x-h1-local"
    assert (result.pipeline, result.layer) == ("demo", "a")


def test_handover_failure_fails_the_run(project_factory):
    root = project_factory({
        "demo/a": {"main": chain_main("f1", handover="b"), "functions": {"f1": OK_HANDLER}},
        "demo/b": {"main": chain_main("g1", "g2"), "functions": {
            "g1": "def handler(event, context):\n    raise KeyError('gone')\n", "g2": OK_HANDLER}},
    })
    result = run(root, layer="a")
    assert not result.succeeded
    assert [(s.layer, s.function, s.status) for s in result.steps] == [
        ("demo/a", "f1", "succeeded"), ("demo/b", "g1", "failed")]
    assert result.error.type == "KeyError"
    assert result.failed_step.layer == "demo/b"


def test_run_without_layer_runs_the_root_layers(handover_project):
    result = run(handover_project, layer=None)
    assert result.succeeded, result.error
    # a (-> b -> other/x) and c are roots; b is only reached through a, never on its own
    assert [(s.layer, s.function) for s in result.steps] == [
        ("demo/a", "f1"), ("demo/b", "g1"), ("demo/b", "g2"), ("other/x", "h1"), ("demo/c", "f1")]
    with pytest.raises(KeyError, match="several layers"):
        result.step("f1")
    assert result.output == result.step("f1", layer="c").output


def test_running_a_middle_layer_starts_there(handover_project):
    result = run(handover_project, layer="b")
    assert [(s.layer, s.function) for s in result.steps] == [("demo/b", "g1"), ("demo/b", "g2"), ("other/x", "h1")]


def test_unknown_instance_and_layer(handover_project):
    with pytest.raises(DorcError, match="no pipeline instance 'nope'"):
        run(handover_project, instance="nope", layer=None)
    with pytest.raises(DorcError, match="no pipeline demo/zzz"):
        run(handover_project, layer="zzz")
    with pytest.raises(DorcError, match="unknown target"):
        run(handover_project, layer="a", target="aws")


# -- run records -----------------------------------------------------------------------------

def test_run_record_is_written_under_the_state_dir(project_factory):
    root = one_layer(project_factory, "f1", "f2", functions={"f1": OK_HANDLER, "f2": OK_HANDLER})
    result = run(root, event={"n": 1})
    records = sorted((root / ".dorc" / "runs").glob("*.json"))
    assert records == [result.record_path]
    assert records[0].name.endswith("-demo-main-local-local.json")
    doc = json.loads(records[0].read_text())
    assert doc["status"] == "succeeded"
    assert (doc["pipeline"], doc["layer"], doc["target"], doc["env"]) == ("demo", "main", "local", "local")
    assert [s["function"] for s in doc["steps"]] == ["f1", "f2"]
    assert doc["steps"][0]["input"] == {"n": 1}
    assert doc["steps"][1]["input"] == doc["steps"][0]["output"]
    assert doc["steps"][0]["logs"].startswith("START RequestId: ")
    assert doc["output"] == result.output
    # a second run gets its own record
    run(root)
    assert len(list((root / ".dorc" / "runs").glob("*.json"))) == 2


def test_failed_run_is_recorded_and_record_false_writes_nothing(project_factory):
    root = one_layer(project_factory, "f1", functions={"f1": "def handler(e, c):\n    raise RuntimeError('x')\n"})
    run(root, record=False)
    assert not (root / ".dorc" / "runs").exists()
    result = run(root)
    doc = json.loads(result.record_path.read_text())
    assert doc["status"] == "failed"
    assert doc["error"]["type"] == "RuntimeError"
    assert doc["steps"][0]["error"]["message"] == "x"


# -- the local holding store -----------------------------------------------------------------

STORE_FN = """
import boto3, os

def handler(event, context):
    s3 = boto3.client("s3")
    bucket = os.environ["HOLDING_BUCKET"]
    for key, body in event.get("put", {}).items():
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    for key in event.get("delete", []):
        s3.delete_object(Bucket=bucket, Key=key)
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    found = {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode() for o in listing}
    types = {k: s3.head_object(Bucket=bucket, Key=k)["ContentType"] for k in found}
    return {"statusCode": 200, "body": {"found": found, "types": types}}
"""


def test_store_persists_puts_and_deletes_between_runs(project_factory):
    from dorc_sim.aws import list_store

    root = one_layer(project_factory, "f1", functions={"f1": STORE_FN})
    odd_key = "dir/ünï code & more?.json"
    first = run(root, event={"put": {"a.json": "[1]", odd_key: '{"x": 1}'}})
    assert first.succeeded, first.error
    store = root / ".dorc" / "local-aws"
    assert list_store(store) == [("t-holding-local", "a.json", 3), ("t-holding-local", odd_key, 8)]

    second = run(root, event={"delete": ["a.json"]})  # a new process-level moto: state came from disk
    assert second.output["body"]["found"] == {odd_key: '{"x": 1}'}
    assert second.output["body"]["types"] == {odd_key: "application/json"}
    assert list_store(store) == [("t-holding-local", odd_key, 8)]


# -- invoking a single function --------------------------------------------------------------

def test_invoke_function_runs_one_function_only(project_factory):
    from dorc.api import invoke_function

    root = one_layer(project_factory, "f1", "f2", functions={
        "f1": handler_returning("{'statusCode': 503, 'body': event}"), "f2": OK_HANDLER})
    step = invoke_function("demo", "main", "f1", event={"k": "v"}, config_repo=root)
    # Lambda alone has no contract: a non-2xx statusCode is a successful invocation
    assert step.succeeded
    assert step.output == {"statusCode": 503, "body": {"k": "v"}}
    assert step.deployed_name == "demo-main-f1-local"
    with pytest.raises(DorcError, match=r"has no function 'f9' \(functions: f1, f2\)"):
        invoke_function("demo", "main", "f9", config_repo=root)
