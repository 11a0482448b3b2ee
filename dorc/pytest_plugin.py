"""pytest fixtures for testing your own pipelines (installed with dorc, entry point ``pytest11``).

    def test_raw(dorc_run):
        result = dorc_run("census", "raw", event={"year": 2020})
        assert result.succeeded
        assert result.step("function1").output["body"]["records"] == 52

Each test gets its own state folder (run records, local holding store) so tests never see each
other's data or yours. Set the pipeline-config folder with the ini option ``dorc_config_repo``,
``CONFIG_REPO_PATH`` or by running pytest where ``./pipeline-config`` exists.
"""

from __future__ import annotations

import dataclasses
import os

import pytest


def pytest_addoption(parser):
    parser.addini("dorc_config_repo", "pipeline-config folder for dorc's fixtures", default="")


def pytest_configure(config):
    config.addinivalue_line("markers", "localstack: needs LocalStack (started by the dorc_localstack fixture)")


@pytest.fixture
def dorc_project(request, tmp_path):
    """The pipeline-config project, with state (records, local store) in this test's tmp folder."""
    from dorc.project import find_project

    repo = request.config.getini("dorc_config_repo") or os.environ.get("CONFIG_REPO_PATH") or None
    if repo and not os.path.isabs(repo):
        repo = os.path.join(str(request.config.rootpath), repo)
    project = find_project(repo)
    return dataclasses.replace(project, state_root=tmp_path / ".dorc")


@pytest.fixture
def dorc_run(dorc_project):
    """``dorc_run(instance, layer=None, event=None, env=None, target="local")`` -> RunResult."""
    from dorc.api import run_pipeline

    def run(instance, layer=None, *, event=None, env=None, target="local", **kwargs):
        return run_pipeline(instance, layer, event=event, env=env, target=target, project=dorc_project, **kwargs)

    return run


@pytest.fixture
def dorc_invoke(dorc_project):
    """``dorc_invoke(instance, layer, function, event=None)`` -> StepResult of that one function."""
    from dorc.api import invoke_function

    def invoke(instance, layer, function, *, event=None, env="local"):
        return invoke_function(instance, layer, function, event=event, env=env, project=dorc_project)

    return invoke


@pytest.fixture
def dorc_aws(dorc_project):
    """The in-process AWS (moto) with this test's holding store; runs inside the test share it.

    ``dorc_aws.client("s3")`` to seed or inspect data; the holding bucket of env ``local`` exists.
    """
    from sim.aws import LocalAWS

    settings = dorc_project.settings
    bucket = settings.render(settings.holding_bucket, "local")
    with LocalAWS(dorc_project.state_dir / "local-aws", settings.region, [bucket]) as aws:
        aws.holding_bucket = bucket
        yield aws
