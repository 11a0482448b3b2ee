"""Run records keep step payloads up to ``[runs] record_payload_limit_kb`` and, beyond it, their
size and sha256; a run holds large payloads in a spool file, not in memory. Through the library
API and the CLI on throw-away projects (the run's event, its output and a failed step's input
are kept whole: ``dorc rerun``, the summary and ``--from`` need them)."""

from __future__ import annotations

import gc
import hashlib
import json
import tracemalloc

import pytest

from helpers import chain_main

from dorc import api
from dorc.errors import ProjectError
from dorc.records import read_records, write_record
from dorc.result import RunResult, StepResult

BIG = 5000  # bytes of the body f1 makes: over a 1 KB limit, under the default 64 KB

F1 = """
def handler(event, context):
    return {"statusCode": 200, "body": {"blob": "x" * event["size"]}}
"""
PASS_ON = """
def handler(event, context):
    return {"statusCode": 200, "body": event["body"]}
"""
F3_BROKEN = """
def handler(event, context):
    raise ValueError("f3 is broken")
"""


def _chain(project_factory, *, limit_kb: float | None, f3: str = PASS_ON):
    toml = f"[runs]\nrecord_payload_limit_kb = {limit_kb}\n" if limit_kb is not None else ""
    return project_factory({"demo/main": {"main": chain_main("f1", "f2", "f3"),
                                          "functions": {"f1": F1, "f2": PASS_ON, "f3": f3}}}, toml_extra=toml)


def _last_record(root):
    return api.run_records(config_repo=root)[0]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_payloads_over_the_limit_are_recorded_as_size_and_sha256(project_factory, cli):
    root = _chain(project_factory, limit_kb=1)
    result = api.run_pipeline("demo", "main", event={"size": BIG}, config_repo=root)
    assert result.succeeded, result.failure_report()
    big = result.step("f1").output_json
    assert len(big) > BIG and result.step("f2").input == json.loads(big)  # the run itself keeps every byte
    assert result.step("f2").status_code == 200  # the summary's column, without reading the output back

    record = _last_record(root)
    f1, f2, f3 = record["steps"]
    stub = {"kept": False, "size": len(big), "sha256": _sha(big)}
    assert f1["input"] == {"size": BIG} and f1["output"] == stub and f1["not_kept"] == ["output"]
    assert f2["input"] == stub and f2["not_kept"] == ["input", "output"]
    assert f3["output"]["sha256"] == _sha(result.output_json)
    assert record["output"] == result.output  # the run's output is kept whole
    assert record["payload_limit_kb"] == 1

    shown = cli("runs", "show", "last", "--config-repo", root)
    assert shown.exit_code == 0, shown.output
    assert "input: not kept" in shown.stdout and _sha(big)[:16] in shown.stdout
    assert "over the record's 1 KB limit ([runs] record_payload_limit_kb in dorc.toml)" in shown.stdout
    as_json = json.loads(cli("runs", "show", "last", "--json", "--config-repo", root).stdout)
    assert as_json["steps"][1]["input"] == stub and as_json["steps"][1]["not_kept"] == ["input", "output"]


def test_payloads_under_the_limit_are_kept_whole(project_factory, cli):
    root = _chain(project_factory, limit_kb=None)  # the default, 64 KB
    res = cli("run", "demo", "main", "--local", "--json", "--event", json.dumps({"size": BIG}), "--config-repo", root)
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    record = _last_record(root)
    for doc in (printed, record):
        assert doc["payload_limit_kb"] == 64
        assert doc["steps"][1]["input"] == {"statusCode": 200, "body": {"blob": "x" * BIG}}
        assert not any("not_kept" in s for s in doc["steps"])


def test_run_json_shows_what_the_record_keeps(project_factory, cli):
    root = _chain(project_factory, limit_kb=1)
    res = cli("run", "demo", "main", "--local", "--json", "--event", json.dumps({"size": BIG}), "--config-repo", root)
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert [s.get("not_kept") for s in printed["steps"]] == [["output"], ["input", "output"], ["input", "output"]]
    assert printed["output"]["body"]["blob"] == "x" * BIG


def test_resume_needs_a_kept_input_and_says_which_setting_keeps_it(project_factory, cli):
    root = _chain(project_factory, limit_kb=1)
    assert cli("run", "demo", "main", "--local", "--event", json.dumps({"size": BIG}), "--config-repo", root).exit_code == 0

    res = cli("run", "demo", "main", "--local", "--from", "f2", "--config-repo", root)
    assert res.exit_code != 0
    assert "did not keep the input demo/main f2 received" in res.output
    assert "record_payload_limit_kb under [runs]" in res.output and "--event @FILE" in res.output

    res = cli("run", "demo", "main", "--local", "--from", "f1", "--config-repo", root)  # a small input: kept
    assert res.exit_code == 0, res.output
    assert _last_record(root)["steps"][0]["input"] == {"size": BIG}


def test_a_failed_steps_input_is_kept_whole_so_from_resumes_there(project_factory, cli):
    root = _chain(project_factory, limit_kb=1, f3=F3_BROKEN)
    res = cli("run", "demo", "main", "--local", "--event", json.dumps({"size": BIG}), "--config-repo", root)
    assert res.exit_code == 1, res.output
    failed = _last_record(root)["steps"][2]
    assert failed["input"] == {"statusCode": 200, "body": {"blob": "x" * BIG}} and "not_kept" not in failed

    (root / "src/demo/main/src/f3/lambda.py").write_text(PASS_ON)
    res = cli("run", "demo", "main", "--local", "--from", "f3", "--config-repo", root)
    assert res.exit_code == 0, res.output
    assert _last_record(root)["steps"][0]["output"]["sha256"] == _sha(
        json.dumps({"statusCode": 200, "body": {"blob": "x" * BIG}}).encode())


def test_an_event_over_the_limit_is_kept_whole_so_rerun_repeats_it(project_factory, cli):
    root = _chain(project_factory, limit_kb=1)
    event = {"size": 10, "pad": "z" * BIG}
    assert cli("run", "demo", "main", "--local", "--event", json.dumps(event), "--config-repo", root).exit_code == 0
    first = _last_record(root)
    assert first["event"] == event and first["steps"][0]["not_kept"] == ["input"]

    res = cli("rerun", "last", "--config-repo", root)
    assert res.exit_code == 0, res.output
    again = _last_record(root)
    assert again["rerun_of"] == first["id"] and again["event"] == event
    assert again["steps"][0]["input"]["sha256"] == first["steps"][0]["input"]["sha256"]


@pytest.mark.parametrize("value", ['"big"', "-1", "true"])
def test_a_bad_limit_is_a_clear_error(project_factory, value):
    root = project_factory({"demo/main": {"main": chain_main("f1"), "functions": {"f1": PASS_ON}}},
                           toml_extra=f"[runs]\nrecord_payload_limit_kb = {value}\n")
    with pytest.raises(ProjectError) as caught:
        api.run_records(config_repo=root)
    assert "[runs] record_payload_limit_kb" in caught.value.message and "dorc.toml" in caught.value.message
    assert "a number, 0 or more" in caught.value.hint


def _step(i: int, payload: bytes) -> StepResult:
    return StepResult(function=f"f{i}", layer="demo/main", deployed_name=f"t-f{i}", status="succeeded",
                      duration_ms=1.0, input_json=payload, output_json=payload, logs="line\n" * 5000)


def test_a_long_run_of_large_payloads_is_held_in_its_spool_and_written_step_by_step(tmp_path):
    """200 steps of distinct 200 KB payloads (80 MB as input plus output): neither the result nor
    writing its record holds them in memory."""
    steps, size = 200, 200 * 1024
    tracemalloc.start()
    try:
        result = RunResult(pipeline="demo", layer="main", target="local", env="local")
        for i in range(steps):
            result.add_step(_step(i, json.dumps({"i": i, "blob": "y" * size}).encode()))
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        path = write_record(tmp_path, result, payload_limit_kb=1)
        _, writing = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 8 * 1024 * 1024, f"{held / 2**20:.1f} MB held for {steps} steps"
    assert writing < 8 * 1024 * 1024, f"{writing / 2**20:.1f} MB to write the record"
    logs = steps * len("line\n" * 5000)  # logs are kept whole
    assert path.stat().st_size < 2 * logs  # 80 MB of payloads: sizes and digests only (and the logs, newlines escaped)
    assert result.step("f7").input["i"] == 7 and len(result.step("f7").logs) == 5 * 5000  # read back whole
    [record] = read_records(tmp_path)
    assert record["steps"][7]["output"]["sha256"] == _sha(result.step("f7").output_json)
