"""A handler that ends its process, and a handler that prints a lot: its sandbox keeps dorc alive
and reports Lambda's errors, and drawing log lines is not the handler's time."""

from __future__ import annotations

import io
import json
import os
import re
import time

import pytest
from rich.console import Console
from rich.text import Text

from dorc.api import invoke_function, run_pipeline
from dorc.render import TerminalObserver
from helpers import OK_HANDLER, chain_main
from dorc_sim.runtime import FunctionSpec
from dorc_sim.sandbox.interpreters import find_interpreter
from dorc_sim.sandbox.isolation import probe
from dorc_sim.sandbox.launcher import Sandbox, SandboxSpec
from dorc_sim.sandbox.sdk import runtime_dir

EXIT_MESSAGE = "RequestId: {} Error: Runtime exited with error: exit status {}"


def one_layer(project_factory, *names, functions: dict, **function_kwargs):
    return project_factory({"demo/main": {"main": chain_main(*names, **function_kwargs), "functions": functions}})


def run(root, **kw):
    return run_pipeline("demo", "main", config_repo=root, **kw)


def _record(output: str) -> dict:
    path = re.search(r"run record: (\S+\.json)", output).group(1)
    return json.loads(open(path, encoding="utf-8").read())


# -- os._exit and sys.exit: Runtime.ExitError, never the end of dorc ----------------------------

OS_EXIT_IN_HANDLER = "import os\n\ndef handler(event, context):\n    print('bye')\n    os._exit({code})\n"
OS_EXIT_AT_IMPORT = "import os\nprint('importing')\nos._exit({code})\n" + OK_HANDLER.replace("{", "{{").replace("}", "}}")


@pytest.mark.parametrize("where", ["handler", "import"])
@pytest.mark.parametrize("code", [0, 5])
def test_os_exit_fails_the_call_and_the_run_goes_on_to_its_summary(project_factory, cli, where, code):
    source = (OS_EXIT_IN_HANDLER if where == "handler" else OS_EXIT_AT_IMPORT).format(code=code)
    root = one_layer(project_factory, "l", "m", functions={"l": source, "m": OK_HANDLER})
    real_exit = os._exit
    res = cli("run", "demo", "main", "--config-repo", root)  # os._exit would end pytest here
    assert os._exit is real_exit  # put back after the call
    assert res.exit_code == 1, res.output
    record = _record(res.output)
    [step] = record["steps"]  # m never ran
    assert step["status"] == "failed"
    assert step["error"]["type"] == "Runtime.ExitError"
    assert step["error"]["message"] == EXIT_MESSAGE.format(step["request_id"], code)
    assert ("bye" if where == "handler" else "importing") in step["logs"]
    assert f"Runtime.ExitError: {EXIT_MESSAGE.format(step['request_id'], code)}" in res.output
    assert "pipeline failed at demo/main l" in res.output


@pytest.mark.parametrize("where", ["handler", "import"])
@pytest.mark.parametrize("call", ["sys.exit(1)", "os._exit(1)", "sys.exit('bad')"])
def test_exit_error_names_the_request(project_factory, where, call):
    body = f"import os, sys\n\ndef handler(event, context):\n    {call}\n" if where == "handler" \
        else f"import os, sys\n{call}\n" + OK_HANDLER
    root = one_layer(project_factory, "f1", functions={"f1": body})
    step = run(root).step("f1")
    assert step.request_id
    assert step.error.type == "Runtime.ExitError"
    assert step.error.message == EXIT_MESSAGE.format(step.request_id, 1)


def test_os_exit_caught_by_the_handler_still_fails_the_call(project_factory):
    f1 = """
    import os

    def handler(event, context):
        try:
            os._exit(3)
        except BaseException:
            pass  # in Lambda the process is gone by now
        return {"statusCode": 200, "body": {}}
    """
    root = one_layer(project_factory, "f1", "f2", functions={"f1": f1, "f2": OK_HANDLER})
    result = run(root)
    step = result.step("f1")
    assert step.error.type == "Runtime.ExitError"
    assert step.error.message == EXIT_MESSAGE.format(step.request_id, 3)
    assert step.output is None
    assert len(result.steps) == 1


def test_a_reference_to_os_exit_taken_at_import_ends_the_call_not_dorc(project_factory):
    f1 = "from os import _exit\n\nKEPT = _exit\n\ndef handler(event, context):\n    _exit(4)\n"
    root = one_layer(project_factory, "f1", functions={"f1": f1})
    step = invoke_function("demo", "main", "f1", config_repo=root)
    assert step.error.type == "Runtime.ExitError"
    assert step.error.message.endswith("exit status 4")
    assert os._exit.__module__ in ("posix", "nt")  # the original, not the runtime's replacement


def _sandbox(tmp_path, source: str) -> Sandbox:
    """One function's sandbox, as a run starts it, for several calls."""
    folder = tmp_path / "fn"
    folder.mkdir(exist_ok=True)
    (folder / "lambda.py").write_text(source)
    spec = SandboxSpec(function=FunctionSpec(name="fn", source_dir=str(folder)),
                       python=find_interpreter("python3.12").executable, runtime_dir=str(runtime_dir()))
    return Sandbox(spec, probe())


def test_after_an_exit_the_next_call_is_a_cold_start(tmp_path):
    source = ("import os\nCALLS = []\n\ndef handler(event, context):\n"
              "    CALLS.append(1)\n    if event.get('exit'):\n        os._exit(2)\n    return len(CALLS)\n")
    with _sandbox(tmp_path, source) as box:
        assert box.invoke(json.dumps({})).payload == b"1"
        warm = box.invoke(json.dumps({}))
        assert warm.payload == b"2" and warm.init_duration_ms is None
        ended = box.invoke(json.dumps({"exit": True}), request_id="req-2")
        assert ended.error.type == "Runtime.ExitError"
        assert ended.error.message == EXIT_MESSAGE.format("req-2", 2)
        cold = box.invoke(json.dumps({}))
        assert cold.ok and cold.payload == b"1"  # a new environment: the module was imported again
        assert cold.init_duration_ms is not None


# -- log lines: drawing them is not the handler's time ------------------------------------------

class SlowObserver:
    """An observer that takes ``per_line`` seconds on each log line, as a slow terminal would."""

    def __init__(self, per_line: float):
        self.per_line = per_line
        self.lines: list[str] = []
        self.finished: list = []

    def progress(self, message):
        pass

    def step_started(self, layer, function, deployed_name):
        pass

    def log(self, line):
        time.sleep(self.per_line)
        self.lines.append(line)

    def step_finished(self, step):
        self.finished.append((step.function, len(self.lines)))


def test_time_spent_drawing_log_lines_is_not_the_handlers(project_factory):
    # 400 lines x 5 ms: 2 s in the observer, twice the function's timeout of 1 s
    f1 = """
    def handler(event, context):
        for i in range(400):
            print("line", i)
        return {"statusCode": 200, "body": {"remaining": context.get_remaining_time_in_millis()}}
    """
    root = one_layer(project_factory, "f1", functions={"f1": f1}, f1="timeout=1")
    observer = SlowObserver(0.005)
    t0 = time.monotonic()
    result = run(root, observer=observer)
    elapsed = time.monotonic() - t0
    step = result.step("f1")
    assert step.succeeded, step.error
    assert elapsed >= 2.0  # the observer did take its time, during the call
    assert step.duration_ms < 1000
    assert step.output["body"]["remaining"] > 500  # nor is it taken from the handler's remaining time
    printed = [l for l in observer.lines if l.startswith("line ")]
    assert printed == [f"line {i}" for i in range(400)]  # every line, in order, before the step ended
    assert observer.finished == [("f1", len(observer.lines))]
    report = observer.lines[-1]
    assert report.startswith("REPORT ") and float(re.search(r"Duration: ([\d.]+) ms", report).group(1)) < 1000


def test_a_slow_observer_does_not_stop_a_timeout(project_factory):
    # the timer often fires while a line is being drawn: it must still end the call at 1 s of its own time
    f1 = """
    import time

    def handler(event, context):
        while True:
            print("tick")
            time.sleep(0.01)
    """
    root = one_layer(project_factory, "f1", functions={"f1": f1}, f1="timeout=1")
    observer = SlowObserver(0.01)
    t0 = time.monotonic()
    step = run(root, observer=observer).step("f1")
    elapsed = time.monotonic() - t0
    assert step.error.type == "Sandbox.Timedout"
    assert step.error.message == f"RequestId: {step.request_id} Error: Task timed out after 1.00 seconds"
    assert 950 <= step.duration_ms < 5000
    assert elapsed < 20
    assert observer.lines.count("tick") >= 20


def test_lines_from_a_handlers_own_thread_do_not_stop_its_clock(project_factory):
    # the handler does not wait for them: its timeout still comes after 1 s
    f1 = """
    import threading
    import time

    STOP = threading.Event()

    def chatter():
        while not STOP.is_set():
            print("from a thread")

    def handler(event, context):
        threading.Thread(target=chatter, daemon=True).start()
        try:
            while True:
                time.sleep(0.01)
        finally:
            STOP.set()
    """
    root = one_layer(project_factory, "f1", functions={"f1": f1}, f1="timeout=1")
    observer = SlowObserver(0.01)
    t0 = time.monotonic()
    step = run(root, observer=observer).step("f1")
    assert step.error.type == "Sandbox.Timedout"
    assert 950 <= step.duration_ms < 5000
    assert time.monotonic() - t0 < 10
    assert "from a thread" in step.logs


MANY_LINES = """
def handler(event, context):
    for i in range(60000):
        print("line", i)
    return {"statusCode": 200, "body": {}}
"""


def test_a_handler_printing_60000_lines_does_not_time_out_when_its_logs_are_shown(project_factory, cli):
    # It did, with a 3 s timeout, under the default output and --json, and took 0.2 s with -q.
    root = one_layer(project_factory, "f1", functions={"f1": MANY_LINES}, f1="timeout=3")
    shown = cli("run", "demo", "main", "--config-repo", root)
    assert shown.exit_code == 0, shown.output[-2000:]
    printed = re.findall(r"^  line (\d+)$", shown.stdout, re.MULTILINE)
    assert printed == [str(i) for i in range(60000)]
    as_json = cli("run", "demo", "main", "--config-repo", root, "--json")
    assert as_json.exit_code == 0, as_json.stderr[-2000:]
    document = json.loads(as_json.stdout)  # stdout is still one JSON document; the logs went to stderr
    assert document["status"] == "succeeded"
    assert as_json.stderr.count("\n  line ") == 60000
    quiet = cli("run", "demo", "main", "--config-repo", root, "-q")
    assert quiet.exit_code == 0
    assert "line 1" not in quiet.output
    shown_ms = _record(shown.output)["steps"][0]["duration_ms"]
    quiet_ms = _record(quiet.output)["steps"][0]["duration_ms"]
    assert shown_ms < 5 * quiet_ms + 1000, (shown_ms, quiet_ms)  # of the same order: drawing is not counted
    assert len(_record(shown.output)["steps"][0]["logs"].splitlines()) == 60003  # all in the run record


# -- the terminal view -------------------------------------------------------------------------

TRICKY_LINES = ["plain", "tab\tseparated\tvalues", "12345678\tx", "carriage\rreturn", "bell\x07",
                "[bold]not markup[/bold]", "\x1b[31mred\x1b[0m", "wide 中文\tq", "emoji 😀", "", "  indented  "]


def test_log_lines_off_a_terminal_are_written_as_rich_would_write_them():
    out = io.StringIO()
    observer = TerminalObserver(Console(file=out, highlight=False, soft_wrap=True, width=80))
    for line in ["START RequestId: r Version: $LATEST", *TRICKY_LINES, "END RequestId: r"]:
        observer.log(line)
    expected = io.StringIO()
    reference = Console(file=expected, highlight=False, soft_wrap=True, width=80)
    for line in ["START RequestId: r Version: $LATEST", *TRICKY_LINES, "END RequestId: r"]:
        reference.print(Text("  " + line, style="dim" if line.startswith(("START", "END")) else ""))
    assert out.getvalue() == expected.getvalue()


class _TimedStream(io.StringIO):
    """Remembers when each piece of text arrived."""

    def __init__(self):
        super().__init__()
        self.arrivals: list[tuple[float, str]] = []

    def write(self, s):
        self.arrivals.append((time.monotonic(), s))
        return super().write(s)

    def isatty(self):
        return True

    def first(self, text: str) -> float:
        return next(t for t, s in self.arrivals if text in s)


def test_on_a_terminal_lines_before_a_quiet_spell_are_shown_during_it(project_factory):
    f1 = """
    import time

    def handler(event, context):
        for i in range(5):
            print("burst", i)
        time.sleep(1.5)
        print("after the sleep")
        return {"statusCode": 200, "body": {}}
    """
    root = one_layer(project_factory, "f1", functions={"f1": f1}, f1="timeout=10")
    stream = _TimedStream()
    console = Console(file=stream, highlight=False, soft_wrap=True, force_terminal=True, width=200)
    step = run(root, observer=TerminalObserver(console)).step("f1")
    assert step.succeeded
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())
    assert [l for l in text.splitlines() if "burst" in l or "after" in l] == \
        [f"  burst {i}" for i in range(5)] + ["  after the sleep"]
    assert stream.first("after the sleep") - stream.first("burst 4") > 1.0  # not held back to the end
