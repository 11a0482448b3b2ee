"""Two runs of one pipeline in LocalStack at the same time: each run's steps hold their own calls'
logs, request ids, durations and memory, never the other run's (the calls of one function are in
one log group, and the two runs' calls overlap)."""

from __future__ import annotations

import re
import threading

import pytest

from dorc.api import run_pipeline
from dorc.project import find_project
from helpers import chain_main, make_project

pytestmark = pytest.mark.localstack

# each prints the run's value and sleeps, so that the two runs' calls of a function overlap
FIRST = """
import time


def handler(event, context):
    print("value", event["value"])
    time.sleep(1)
    return {"statusCode": 200, "body": {"value": event["value"]}}
"""

SECOND = """
import time


def handler(event, context):
    print("value", event["body"]["value"])
    time.sleep(1)
    return {"statusCode": 200, "body": {"value": event["body"]["value"]}}
"""

VALUES = ("left", "right")


def _project(tmp_path):
    root = make_project(tmp_path, {"twin/main": {"main": chain_main("a", "b"),
                                                 "functions": {"a": FIRST, "b": SECOND}}}, name="twin")
    return find_project(root)


def _run_together(project, endpoint) -> dict:
    """Both runs started at once (deployed before, so the runs only execute)."""
    results, errors = {}, []
    barrier = threading.Barrier(len(VALUES))

    def run(value: str) -> None:
        try:
            barrier.wait(timeout=30)
            results[value] = run_pipeline("twin", "main", target="localstack", project=project, endpoint=endpoint,
                                          event={"value": value}, deploy=False, record=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(v,)) for v in VALUES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    return results


def _assert_overlapped(dorc_localstack, project, results) -> None:
    """The two executions ran at the same time: otherwise this test proves nothing."""
    sfn = dorc_localstack.client("stepfunctions", region_name=project.settings.region)
    (s1, e1), (s2, e2) = [(d["startDate"], d["stopDate"]) for d in
                          (sfn.describe_execution(executionArn=r.execution_arn) for r in results.values())]
    assert s1 < e2 and s2 < e1, (s1, e1, s2, e2)


def test_concurrent_runs_each_get_their_own_calls_logs(dorc_localstack, tmp_path):
    project = _project(tmp_path)
    ep = dorc_localstack.endpoint
    warm = run_pipeline("twin", "main", target="localstack", project=project, endpoint=ep,
                        event={"value": "deploy"}, record=False)
    assert warm.succeeded, warm.error
    results = _run_together(project, ep)
    _assert_overlapped(dorc_localstack, project, results)
    ids = []
    for value, other in (VALUES, VALUES[::-1]):
        result = results[value]
        assert result.succeeded, result.error
        assert result.output["body"] == {"value": value}
        assert [s.function for s in result.steps] == ["a", "b"]
        for s in result.steps:
            ids.append(s.request_id)
            assert s.request_id, (value, s.function)
            assert s.logs.startswith(f"START RequestId: {s.request_id} "), (value, s.function, s.logs)
            assert f"\nvalue {value}\n" in s.logs and f"value {other}" not in s.logs, (value, s.function, s.logs)
            assert "value deploy" not in s.logs, (value, s.function, s.logs)
            # one call only, the step's own: its START, END and REPORT, nothing of another call
            assert re.findall(r"^(?:START|END|REPORT) RequestId: (\S+)", s.logs, re.M) == [s.request_id] * 3, s.logs
            report = re.search(r"^REPORT RequestId: \S+\tDuration: ([\d.]+) ms\t.*Max Memory Used: (\d+) MB",
                               s.logs, re.M)
            assert report, s.logs
            assert s.duration_ms == float(report.group(1)) and s.duration_ms >= 1000, (s.duration_ms, s.logs)
            assert s.max_memory_mb == int(report.group(2)) and s.max_memory_mb > 0
    assert len(set(ids)) == len(ids) == 4, ids


def test_without_request_ids_a_concurrent_runs_step_gets_no_one_elses_logs(dorc_localstack, tmp_path, monkeypatch):
    """A LocalStack whose Step Functions names no request id in lambda:invoke results (one not
    started by dorc, without dorc's executor): while the other run's calls are in the same log group
    at the same time, a step's call cannot be told apart, so its logs are a note, never a guess."""
    from dorc.targets.localstack import history

    project = _project(tmp_path)
    ep = dorc_localstack.endpoint
    warm = run_pipeline("twin", "main", target="localstack", project=project, endpoint=ep,
                        event={"value": "deploy"}, record=False)
    assert warm.succeeded, warm.error
    monkeypatch.setattr(history, "_request_id_in_result", lambda result: None)
    results = _run_together(project, ep)
    _assert_overlapped(dorc_localstack, project, results)
    for value, other in (VALUES, VALUES[::-1]):
        result = results[value]
        assert result.succeeded, result.error
        assert result.output["body"] == {"value": value}
        for s in result.steps:
            assert f"value {other}" not in s.logs and "value deploy" not in s.logs, (value, s.function, s.logs)
            assert s.logs.startswith("[dorc] no logs: this step's call cannot be told apart"), s.logs
            assert s.request_id is None and s.max_memory_mb is None
            assert s.duration_ms >= 1000  # the history's own time for the step
