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
def dorc_run(dorc_project, request):
    """``dorc_run(instance, layer=None, event=None, env=None, target="local")`` -> RunResult.

    ``target="localstack"`` runs the same test in LocalStack: the session's ``dorc_localstack``
    is started on first use unless an ``endpoint=`` is given.
    """
    from dorc.api import run_pipeline

    def run(instance, layer=None, *, event=None, env=None, target="local", **kwargs):
        if target == "localstack" and not kwargs.get("endpoint"):
            kwargs["endpoint"] = request.getfixturevalue("dorc_localstack").endpoint
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
    from dorc_sim.aws import LocalAWS

    settings = dorc_project.settings
    bucket = settings.render(settings.holding_bucket, "local")
    with LocalAWS(dorc_project.local_aws_dir, settings.region, [bucket]) as aws:
        aws.holding_bucket = bucket
        yield aws


@dataclasses.dataclass
class LocalStackHandle:
    """What the ``dorc_localstack`` fixture yields: a LocalStack that answers at ``endpoint``."""

    endpoint: str
    mode: str  # "host" (started for this session), "docker" or "external" ($DORC_LOCALSTACK_ENDPOINT)
    port: int | None = None
    state_dir: str | None = None
    region: str = "us-east-1"

    def client(self, service: str, **kwargs):
        """A boto3 client for this LocalStack (test credentials, its region)."""
        import boto3
        from botocore.config import Config

        kwargs.setdefault("config", Config(retries={"max_attempts": 2}, read_timeout=120))
        kwargs.setdefault("region_name", self.region)  # pipelines deploy to their project's region
        return boto3.client(service, endpoint_url=self.endpoint,
                            aws_access_key_id="test", aws_secret_access_key="test", **kwargs)


def _say(request, message: str) -> None:
    """A line on the terminal even while pytest captures output (installs and starts take a while)."""
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is None:
        return
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        reporter.write_line(f"[dorc_localstack] {message}")
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(f"[dorc_localstack] {message}")


def _localstack_unavailable(request, message: str):
    in_ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    _say(request, f"LocalStack UNAVAILABLE: {message}")
    if in_ci:
        pytest.fail(f"dorc_localstack: LocalStack could not be started (CI): {message}", pytrace=False)
    pytest.skip(f"dorc_localstack: LocalStack could not be started: {message}")


@pytest.fixture(scope="session")
def dorc_localstack(request, tmp_path_factory):
    """A LocalStack for the whole session: ``$DORC_LOCALSTACK_ENDPOINT`` if it answers, else one
    started here in host mode (dorc's Lambda executor, no Docker) on a free port, with its own
    state folder, stopped by PID at the end. If none can be had, tests fail in CI (``CI=true``)
    and are skipped, with the reason, elsewhere."""
    import socket
    import time

    from dorc import api
    from dorc.errors import DorcError
    from dorc.localstack.endpoint import is_ready
    from dorc.localstack.install import LOCALSTACK_VERSION, is_installed, localstack_home

    external = os.environ.get("DORC_LOCALSTACK_ENDPOINT", "").strip()
    if external:
        if is_ready(external):
            yield LocalStackHandle(endpoint=external.rstrip("/"), mode="external")
            return
        _localstack_unavailable(request, f"DORC_LOCALSTACK_ENDPOINT={external} does not answer")

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state_dir = tmp_path_factory.mktemp("localstack")
    t0 = time.monotonic()
    try:
        if not is_installed():
            _say(request, f"installing LocalStack {LOCALSTACK_VERSION} into {localstack_home()} (once; ~2 min)")
        info = api.localstack_start(port=port, state_dir=state_dir, mode="host",
                        progress=lambda m: None if m.startswith("  ") else _say(request, m))
    except DorcError as exc:
        _localstack_unavailable(request, str(exc))
    _say(request, f"LocalStack ready at {info.endpoint} (pid {info.pid}) in {time.monotonic() - t0:.1f} s")
    try:
        yield LocalStackHandle(endpoint=info.endpoint, mode=info.mode, port=port, state_dir=str(state_dir))
    finally:
        api.localstack_stop(port=port, state_dir=state_dir)
