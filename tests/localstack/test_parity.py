"""Parity: a pipeline run in-process and the same plan run in LocalStack give the same steps.

Both runs use the same environment name, so names, buckets and every output are comparable;
only request ids, timings and logs differ, and those are left out of the comparison.
"""

from __future__ import annotations

import pytest

from dorc.api import run_pipeline
from dorc.project import find_project
from helpers import OK_HANDLER, chain_main, copy_pipeline_config, handler_returning, make_project

pytestmark = pytest.mark.localstack

ENV = "localstack"


def _steps(result):
    return [(s.layer, s.function, s.status, s.input, s.output, s.error.type if s.error else None)
            for s in result.steps]


def _both(project, instance, layer, endpoint, event=None):
    local = run_pipeline(instance, layer, target="local", env=ENV, project=project, event=event, record=False)
    remote = run_pipeline(instance, layer, target="localstack", env=ENV, project=project, event=event,
                          endpoint=endpoint, record=False)
    return local, remote


def test_census_parity(dorc_localstack, tmp_path):
    project = find_project(copy_pipeline_config(tmp_path))
    local, remote = _both(project, "census", "raw", dorc_localstack.endpoint, event={"requested_by": "parity"})
    assert local.succeeded and remote.succeeded, (local.error, remote.error)
    assert [s.function for s in remote.steps] == ["function1", "function1", "function2"]
    assert _steps(local) == _steps(remote)
    assert local.output == remote.output
    assert remote.output["body"]["total_population"] == 331449281
    # the functions' own logs were read back from CloudWatch Logs, framed as locally
    first = remote.steps[0]
    assert first.logs.startswith("START RequestId: ") and "REPORT RequestId:" in first.logs
    assert "stored 52 state records" in first.logs
    assert first.request_id and first.request_id in first.logs
    _own_logs(remote)


def _own_logs(result):
    """Every step has its own call's lines: framed by its request id, no call taken twice."""
    ids = [s.request_id for s in result.steps]
    assert all(ids) and len(set(ids)) == len(ids), ids
    for s in result.steps:
        assert s.logs.startswith(f"START RequestId: {s.request_id} "), (s.function, s.logs)
        assert f"REPORT RequestId: {s.request_id}\t" in s.logs, (s.function, s.logs)


FAILING = {
    "raises": handler_returning("_fail()", imports="def _fail():\n    raise ValueError('bad input')"),
    "status": handler_returning("{'statusCode': 503, 'body': 'upstream down'}"),
    "contract": handler_returning("{'body': 'no status code'}"),
    "notadict": handler_returning("[1, 2, 3]"),
    "big": handler_returning("{'statusCode': 200, 'body': 'x' * 300_000}"),
    "sleepy": "import time\n\ndef handler(event, context):\n    time.sleep(5)\n    return {'statusCode': 200, 'body': ''}\n",
    "exits": "import sys\n\ndef handler(event, context):\n    sys.exit(3)\n",
}
EXPECTED = {
    "raises": "ValueError",
    "status": "dorc.NonSuccessStatusCode",
    "contract": "dorc.ContractViolation",
    "notadict": "dorc.ContractViolation",
    "big": "States.DataLimitExceeded",
    "sleepy": "Sandbox.Timedout",
    "exits": "Runtime.ExitError",
}


@pytest.fixture(scope="module")
def failing_project(tmp_path_factory):
    layers = {
        f"fail/{case}": {
            "main": chain_main("first", "second", "third", second="timeout=2"),
            "functions": {"first": OK_HANDLER, "second": code, "third": OK_HANDLER},
        }
        for case, code in FAILING.items()
    }
    return find_project(make_project(tmp_path_factory.mktemp("parity"), layers, name="parity"))


@pytest.mark.parametrize("case", sorted(FAILING))
def test_failure_parity(dorc_localstack, failing_project, case):
    local, remote = _both(failing_project, "fail", case, dorc_localstack.endpoint, event={"case": case})
    for result in (local, remote):
        assert not result.succeeded
        assert [s.function for s in result.steps] == ["first", "second"], result.target
        assert result.failed_step.function == "second"
        assert result.failed_step.error.type == EXPECTED[case], (result.target, result.failed_step.error)
    assert local.steps[0].output == remote.steps[0].output
    _own_logs(remote)
    if case in ("status", "contract", "notadict"):  # the reason, from the Fail state both targets run
        assert remote.failed_step.error.message == local.failed_step.error.message
        assert local.failed_step.error.message.startswith({
            "status": "second returned statusCode 503, outside 200-299",
            "contract": "second returned no 'statusCode'",
            "notadict": "second returned no 'statusCode' (not a JSON object"}[case])
    if case == "raises":
        assert remote.failed_step.error.message == local.failed_step.error.message == "bad input"
        assert any("lambda.py" in frame for frame in remote.failed_step.error.stack_trace)
    if case == "sleepy":
        assert "Task timed out after 2.00 seconds" in remote.failed_step.error.message
        assert "Task timed out after 2.00 seconds" in local.failed_step.error.message


@pytest.mark.parametrize("target", ["local", "localstack"])
def test_one_user_test_runs_on_both_targets(dorc_run, target):
    """The pytest plugin: changing one argument moves a user's test to LocalStack."""
    result = dorc_run("census", "raw", target=target, env=ENV)
    assert result.succeeded, result.error
    assert result.target == target
    assert result.step("function1", layer="raw").output["body"]["records"] == 52
    assert result.output["body"]["largest"]["name"] == "California"
    if target == "localstack":  # the same functions as test_census_parity's: their earlier calls are not this run's
        _own_logs(result)
