"""Resuming and re-running (``dorc run … --from``, ``dorc rerun``) and ``dorc run --watch``, on
throw-away projects through the CLI: the loop a user goes through after a failure (run, fail,
fix, resume from the failed function, pass) without running the earlier functions again."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import OK_HANDLER, OUTSIDE_VARS, REPO_ROOT, chain_main

from dorc import api

# f1 counts its calls in the local store (its sandbox has no other way out), so a test can see
# it did not run again.
F1 = """
import os

import boto3

def handler(event, context):
    boto3.client("s3").put_object(Bucket=os.environ["HOLDING_BUCKET"], Key="f1-calls/" + context.aws_request_id,
                                  Body=b"call")
    return {"statusCode": 200, "body": {"rows": [1, 2, 3], "asked": event}}
"""
F2_BROKEN = """
def handler(event, context):
    raise RuntimeError("f2 is broken")
"""
F2_FIXED = """
def handler(event, context):
    return {"statusCode": 200, "body": {"total": sum(event["body"]["rows"])}}
"""


def _three(project_factory, f2: str = F2_BROKEN, **layers) -> Path:
    """demo/main: f1 -> f2 -> f3 (f2 broken unless said otherwise); more layers from ``layers``."""
    handover = layers.pop("handover", None)
    spec = {"demo/main": {"main": chain_main("f1", "f2", "f3", handover=handover),
                          "functions": {"f1": F1, "f2": f2, "f3": OK_HANDLER}}}
    spec.update(layers)
    return project_factory(spec)


def _records(root: Path) -> list[dict]:
    """The run records, oldest first (as written)."""
    return api.run_records(config_repo=root)[::-1]


def _f1_calls(root: Path) -> int:
    return sum(1 for _, key, _ in api.store_objects(config_repo=root) if key.startswith("f1-calls/"))


def test_run_fails_then_from_resumes_at_the_fixed_function_with_its_recorded_input(project_factory, cli):
    root = _three(project_factory)
    res = cli("run", "demo", "main", "--local", "--event", '{"day": 2}', "--config-repo", root)
    assert res.exit_code == 1, res.output
    failed = _records(root)[-1]
    f1_output = failed["steps"][0]["output"]
    assert [s["function"] for s in failed["steps"]] == ["f1", "f2"] and _f1_calls(root) == 1

    (root / "src/demo/main/src/f2/lambda.py").write_text(F2_FIXED)  # the fix
    res = cli("run", "demo", "main", "--local", "--from", "f2", "--config-repo", root)
    assert res.exit_code == 0, res.output
    assert f"resuming demo/main at f2 with the input it received in run {failed['id'][:8]}" in res.stdout
    assert "the code of f2 changed since that run: resuming with the current code" in res.stdout
    resumed = _records(root)[-1]
    assert resumed["status"] == "succeeded"
    assert [s["function"] for s in resumed["steps"]] == ["f2", "f3"]
    assert _f1_calls(root) == 1  # f1 did not run again
    assert resumed["steps"][0]["input"] == f1_output == {"statusCode": 200, "body": {"rows": [1, 2, 3], "asked": {"day": 2}}}
    assert resumed["steps"][0]["output"]["body"] == {"total": 6}
    assert resumed["resumed_from"] == {"run": failed["id"], "function": "f2", "layer": "demo/main"}
    # f1 did not run: the record does not claim its sources, so promotion wants a whole run
    assert set(resumed["sources"]["demo/main"]) == {"f2", "f3"}


def test_from_with_run_takes_the_input_of_that_run(project_factory, cli):
    root = _three(project_factory, f2=F2_FIXED)
    for day in (1, 2):
        assert cli("run", "demo", "main", "--event", json.dumps({"day": day}), "--config-repo", root).exit_code == 0
    first, second = _records(root)
    for ref in (first["id"][:8], Path(first["record_path"]).name):  # the short id, or the record's file name
        res = cli("run", "demo", "main", "--from", "f2", "--run", ref, "--config-repo", root)
        assert res.exit_code == 0, res.output
        assert _records(root)[-1]["steps"][0]["input"]["body"]["asked"] == {"day": 1}
    res = cli("run", "demo", "main", "--from", "f2", "--run", "last", "--config-repo", root)
    assert res.exit_code == 0, res.output
    assert _records(root)[-1]["resumed_from"]["run"] == _records(root)[-2]["id"]
    # --event instead of a recorded input: f2 starts with it
    res = cli("run", "demo", "main", "--from", "f2", "--event", '{"body": {"rows": [5]}}', "--config-repo", root)
    assert res.exit_code == 0, res.output
    assert _records(root)[-1]["steps"][0]["output"]["body"] == {"total": 5}
    assert _f1_calls(root) == 2


def test_rerun_last_and_rerun_from(project_factory, cli):
    root = _three(project_factory, f2=F2_FIXED)
    assert cli("run", "demo", "main", "--event", '{"day": 7}', "--config-repo", root).exit_code == 0
    original = _records(root)[-1]

    res = cli("rerun", "--config-repo", root)  # last, by default
    assert res.exit_code == 0, res.output
    again = _records(root)[-1]
    assert {k: again[k] for k in ("pipeline", "layer", "target", "env", "event")} == \
        {"pipeline": "demo", "layer": "main", "target": "local", "env": "local", "event": {"day": 7}}
    assert [s["function"] for s in again["steps"]] == ["f1", "f2", "f3"]
    assert again["steps"][0]["input"] == {"day": 7} and again["rerun_of"] == original["id"]

    res = cli("rerun", original["id"][:8], "--from", "f3", "--config-repo", root)
    assert res.exit_code == 0, res.output
    from_f3 = _records(root)[-1]
    assert [s["function"] for s in from_f3["steps"]] == ["f3"]
    assert from_f3["steps"][0]["input"] == original["steps"][2]["input"]
    assert from_f3["resumed_from"] == {"run": original["id"], "function": "f3", "layer": "demo/main"}

    res = cli("rerun", "last", "--config-repo", root)  # a resumed run, again: from f3 with the same input
    assert res.exit_code == 0, res.output
    assert "starting demo/main at f3 again" in res.stdout
    assert [s["function"] for s in _records(root)[-1]["steps"]] == ["f3"]
    assert _records(root)[-1]["steps"][0]["input"] == original["steps"][2]["input"]
    assert _f1_calls(root) == 2  # the original run and the first rerun


def test_from_continues_into_the_layer_it_hands_over_to(project_factory, cli):
    root = _three(project_factory, handover="next",
                  **{"demo/next": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}}})
    res = cli("run", "demo", "main", "--config-repo", root)
    assert res.exit_code == 1 and [s["function"] for s in _records(root)[-1]["steps"]] == ["f1", "f2"]
    (root / "src/demo/main/src/f2/lambda.py").write_text(F2_FIXED)

    result = api.run_pipeline("demo", "main", start_at="f2", config_repo=root)  # the library, as the CLI calls it
    assert result.succeeded, result.error
    assert [(s.layer, s.function) for s in result.steps] == [("demo/main", "f2"), ("demo/main", "f3"), ("demo/next", "g1")]
    assert result.step("g1").input == result.step("f3").output  # the hand-over ran as deployed
    assert result.output == result.step("g1").output

    # a layer that was handed over to resumes from the run that reached it
    res = cli("run", "demo", "next", "--from", "g1", "--config-repo", root)
    assert res.exit_code == 0, res.output
    last = _records(root)[-1]
    assert last["layer"] == "next" and [s["function"] for s in last["steps"]] == ["g1"]
    assert last["steps"][0]["input"] == result.step("g1").input


@pytest.mark.parametrize("args, message, hint", [
    (["run", "demo", "main", "--from", "nope"], "demo/main has no function 'nope' (its functions, in run order: f1, f2, f3)",
     "--from takes one of f1, f2, f3"),
    (["run", "demo", "main", "--from", "g1"], "demo/main has no function 'g1'", "g1 is a function of demo/next"),
    (["run", "demo", "main", "--from", "f2"], "no recorded run of demo/main to resume from",
     "run it first: dorc run demo main --local"),
    (["run", "demo", "--from", "f2"], "--from f2 needs the layer it belongs to", "dorc run demo LAYER --local --from f2"),
    (["run", "demo", "main", "--localstack", "--from", "f2"], "--from cannot start a LocalStack run part-way",
     "dorc run demo main --local --from f2"),
    (["run", "demo", "main", "--run", "last"], "--run picks the run whose input --from resumes with", "dorc rerun ID"),
    (["run", "demo", "main", "--from", "f2", "--run", "last", "--event", "{}"], "--run and --event", "choose one"),
    (["run", "demo", "main", "--watch", "--json"], "--watch shows each run as it comes; it has no --json form", "drop --json"),
    (["run", "demo", "main", "--watch", "--from", "f2"], "no recorded run of demo/main to resume from", "run it first"),
    (["rerun"], "no runs recorded yet", "run a pipeline first"),
    (["rerun", "last", "--from", "f2"], "no runs recorded yet", "run a pipeline first"),
])
def test_refusals_exit_2_before_anything_runs(project_factory, cli, args, message, hint):
    root = _three(project_factory, handover="next",
                  **{"demo/next": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}}})
    res = cli(*args, "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert message in res.output and hint in res.output
    assert "Traceback" not in res.output
    assert _records(root) == [] and _f1_calls(root) == 0


def test_refusals_that_need_a_recorded_run(project_factory, cli):
    root = _three(project_factory, f2="def handler(event, context):\n    raise ValueError('x')\n")
    (root / "src/demo/main/src/f1/lambda.py").write_text("def handler(event, context):\n    raise KeyError('f1 fails')\n")
    assert cli("run", "demo", "main", "--config-repo", root).exit_code == 1
    run_id = _records(root)[-1]["id"]

    res = cli("run", "demo", "main", "--from", "f3", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert f"run {run_id[:8]} (demo/main, " in res.output and "never reached demo/main f3: it reached f1" in res.output
    assert "--from f1" in res.output  # the hint: where it can resume

    res = cli("rerun", "feedface", "--config-repo", root)
    assert res.exit_code == 2 and "no recorded run 'feedface'" in res.output and "dorc runs" in res.output
    res = cli("rerun", "last", "--from", "nope", "--config-repo", root)
    assert res.exit_code == 2 and "demo/main has no function 'nope'" in res.output
    assert len(_records(root)) == 1


# -- --watch ---------------------------------------------------------------------------------

def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _wait_for(lines: queue.Queue, seen: list[str], text: str, count: int, deadline: float) -> None:
    """Collect output lines until ``text`` has appeared ``count`` times (bounded by ``deadline``)."""
    while sum(text in line for line in seen) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{text!r} did not appear {count} time(s) in time:\n" + "".join(seen))
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError(f"dorc ended before {text!r} appeared {count} time(s):\n" + "".join(seen))
        seen.append(line)


def test_watch_runs_again_on_a_change_and_ctrl_c_stops_with_130(project_factory):
    """Run, edit a handler (run 2 runs the edit), break the definition mid-edit (said, and the
    watch goes on), mend it (run 4), Ctrl-C: exit 130 and one record per run that ran."""
    version = 'def handler(event, context):\n    return {"statusCode": 200, "body": {"version": %d}}\n'
    main = chain_main("f1", "f2")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": version % 1, "f2": OK_HANDLER}}})
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
    env.update(PYTHONDONTWRITEBYTECODE="1", COLUMNS="250")  # each line whole, whatever the caller's terminal
    proc = subprocess.Popen([sys.executable, "-m", "dorc", "run", "demo", "main", "--local", "--watch",
                             "--config-repo", str(root)], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        _wait_for(lines, seen, "for changes (Ctrl-C to stop)", 1, deadline)
        assert "src/demo/main" in seen[-1] and "dorc.toml" in seen[-1]
        (root / "src/demo/main/src/f1/lambda.py").write_text(version % 22)  # another size: a real edit
        _wait_for(lines, seen, "for changes (Ctrl-C to stop)", 2, deadline)
        output = "".join(seen)
        assert "src/demo/main/src/f1/lambda.py changed: run 2" in output
        assert output.count("pipeline succeeded") == 2
        (root / "src/demo/main/__main__.py").write_text(main.replace("'f2'", "'f9'", 1))  # mid-edit
        _wait_for(lines, seen, "for changes (Ctrl-C to stop)", 3, deadline)
        assert "next_function 'f9'" in "".join(seen[len(output.splitlines(True)):])
        (root / "src/demo/main/__main__.py").write_text(main)
        _wait_for(lines, seen, "for changes (Ctrl-C to stop)", 4, deadline)
        assert "".join(seen).count("pipeline succeeded") == 3
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        _wait_for(lines, seen, "stopped watching after 4 runs", 1, time.monotonic() + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert code == 130, "".join(seen)
    records = _records(root)
    assert len(records) == 3 and all(r["status"] == "succeeded" for r in records)
    assert [r["steps"][0]["output"]["body"]["version"] for r in records] == [1, 22, 22]  # the edit ran


class _Stop(Exception):
    pass


def test_watch_waits_for_a_save_to_settle_and_ignores_bytecode(project_factory):
    """An editor's save is several writes: one run for them all, naming each file; bytecode and
    files outside the layer's folders and dorc.toml start nothing."""
    root = project_factory({"demo/main": {"main": chain_main("f1", "f2"), "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}}})
    fn_dir = root / "src/demo/main/src"
    runs, changed = [], []

    def save() -> None:
        time.sleep(0.3)
        (fn_dir / "f1/__pycache__").mkdir()
        (fn_dir / "f1/__pycache__/lambda.cpython-312.pyc").write_bytes(b"\0")
        (root / "notes.txt").write_text("not part of a layer")
        time.sleep(0.6)  # two looks at the files: nothing of the above counted
        (fn_dir / "f1/lambda.py").write_text(OK_HANDLER + "\n# edited\n")
        time.sleep(0.05)
        (fn_dir / "f2/helper.py").write_text("X = 1\n")

    def run_once() -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            threading.Thread(target=save, daemon=True).start()

    def on_change(paths: list[Path]) -> None:
        changed.append(paths)
        raise _Stop

    with pytest.raises(_Stop):
        api.watch_pipeline("demo", "main", run_once=run_once, on_change=on_change, config_repo=root, interval=0.1)
    assert len(runs) == 1
    assert changed == [[fn_dir / "f1/lambda.py", fn_dir / "f2/helper.py"]]


def test_watch_refuses_an_unknown_layer_before_running(project_factory, cli):
    root = _three(project_factory, f2=F2_FIXED)
    res = cli("run", "demo", "nope", "--watch", "--config-repo", root)
    assert res.exit_code == 2 and "no pipeline demo/nope" in res.output
    assert _records(root) == []
