"""Generated state names cut to Step Functions' 80 characters deploy and fail with the same words
in LocalStack as in-process: the Fail states' causes keep the full function name."""

from __future__ import annotations

import pytest

from dorc.api import run_pipeline
from dorc.plan import STATE_NAME_MAX
from dorc.project import find_project
from helpers import handler_returning, make_project

pytestmark = pytest.mark.localstack


def test_long_function_names_fit_and_fail_alike(dorc_localstack, tmp_path):
    fn = "f" + "n" * 48  # 'd-m-<fn>-localstack' is 64: the longest Lambda name AWS takes
    project = find_project(make_project(tmp_path, {"d/m": {
        "main": f"from dorc import *\nCreatePipeline(load_config(__file__), PipelineDefinition(file_path=__file__, "
                f"functions=[Function(name={fn!r})])).apply()\n",
        "functions": {fn: handler_returning("{'statusCode': '200', 'body': 1}")}}}))
    results = [run_pipeline("d", "m", target=target, env="localstack", project=project, record=False,
                            **({"endpoint": dorc_localstack.endpoint} if target == "localstack" else {}))
               for target in ("local", "localstack")]
    local, remote = results
    assert len(f"{fn} returned a non-numeric statusCode") > STATE_NAME_MAX  # uncut, Step Functions would refuse it
    for result in results:
        assert not result.succeeded
        assert result.failed_step.error.type == "dorc.ContractViolation"
    assert remote.failed_step.error.message == local.failed_step.error.message
    assert local.failed_step.error.message.startswith(f"{fn} returned a 'statusCode' that is not a number")
