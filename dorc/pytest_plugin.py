"""pytest fixtures for testing your own pipelines (installed with dorc, entry point ``pytest11``).

    def test_processed(dorc_aws, dorc_run):
        dorc_aws.put("census/raw/2020/states.json", rows)        # seed the holding store
        result = dorc_run("census", "processed")
        assert result.succeeded
        assert dorc_aws.get_json("census/processed/2020/features.json")["states"] == 51

One test, both targets: ``--dorc-targets=local,localstack`` (or ``$DORC_TARGETS``, or the marker
``@pytest.mark.dorc_targets("local", "localstack")``) runs every test that uses ``dorc_run``,
``dorc_invoke``, ``dorc_aws`` or ``dorc_target`` once per target (``test_x[local]``,
``test_x[localstack]``); the fixtures follow the test's target. Default: local only.

Each test gets its own state folder (run records, local holding store) so tests never see each
other's data or yours. In LocalStack, every test of the session runs in one environment of its
own (``localstack-t``; ``localstack-t<N>`` per pytest-xdist worker), deployed once and updated
only where sources changed, and each test starts with that environment's holding store empty.
Set the pipeline-config folder with the ini option ``dorc_config_repo``, ``CONFIG_REPO_PATH`` or
by running pytest where ``./pipeline-config`` exists.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import pytest


TARGETS = ("local", "localstack")
_TARGETS = pytest.StashKey[tuple]()


def pytest_addoption(parser):
    parser.addini("dorc_config_repo", "pipeline-config folder for dorc's fixtures", default="")
    parser.getgroup("dorc").addoption(
        "--dorc-targets", default=None, metavar="TARGETS",
        help="run each test that uses dorc's fixtures once per target: local, localstack or "
             "local,localstack (default: $DORC_TARGETS, else local)")


def pytest_configure(config):
    config.addinivalue_line("markers", "localstack: needs LocalStack (started by the dorc_localstack fixture)")
    config.addinivalue_line("markers", "dorc_targets(*targets): run this test on these dorc targets, "
                                       "whatever --dorc-targets says")
    given = config.getoption("dorc_targets", None)
    where = "--dorc-targets"
    if given is None:
        given, where = os.environ.get("DORC_TARGETS", "").strip() or "local", "$DORC_TARGETS"
    config.stash[_TARGETS] = _parse_targets(given.split(","), where)


def _parse_targets(names, where: str) -> tuple[str, ...]:
    targets = tuple(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise pytest.UsageError(f"{where}: unknown dorc target(s) {', '.join(unknown) or '(none given)'}; "
                                f"choose from {', '.join(TARGETS)}, e.g. local,localstack")
    return targets


def pytest_generate_tests(metafunc):
    """Every test that (through dorc's fixtures) uses ``dorc_target`` runs once per target; the
    LocalStack run carries the ``localstack`` mark (``-m "not localstack"`` leaves it out)."""
    if "dorc_target" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if "dorc_target" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)):
            return  # the test chose its targets itself
    marker = metafunc.definition.get_closest_marker("dorc_targets")
    if marker is not None:
        targets = _parse_targets(marker.args, f"{metafunc.definition.nodeid}: @pytest.mark.dorc_targets")
    else:
        targets = metafunc.config.stash[_TARGETS]
    if targets == ("local",):
        return  # the default: ids stay as they are
    metafunc.parametrize("dorc_target", [
        pytest.param(t, id=t, marks=(pytest.mark.localstack,) if t == "localstack" else ()) for t in targets
    ], indirect=True)


@pytest.fixture
def dorc_target(request) -> str:
    """The target this test runs on: ``"local"`` or ``"localstack"`` (see ``--dorc-targets``)."""
    return getattr(request, "param", "local")


@pytest.fixture
def dorc_project(request, tmp_path):
    """The pipeline-config project, with state (records, local store) in this test's tmp folder."""
    from dorc.project import find_project

    repo = request.config.getini("dorc_config_repo") or os.environ.get("CONFIG_REPO_PATH") or None
    if repo and not os.path.isabs(repo):
        repo = os.path.join(str(request.config.rootpath), repo)
    project = find_project(repo)
    project = dataclasses.replace(project, state_root=tmp_path / ".dorc")
    request.addfinalizer(lambda: _stop_local_aws(project.local_aws_dir))  # this test's store, this test's server
    return project


def _stop_local_aws(store_dir) -> None:
    """The local AWS server a test's runs started on its own store: stopped by its PID."""
    from dorc_sim.aws import stop_server

    stop_server(store_dir)


@dataclasses.dataclass
class LocalStackTest:
    """This test's place in LocalStack: the session's endpoint, the session's test environment
    (``localstack-t``) and its holding store, emptied when the test first uses LocalStack."""

    endpoint: str
    env: str
    region: str
    holding_bucket: str

    @functools.cached_property
    def session(self):
        """A ``localstack_client.session.Session`` on this endpoint, in the project's region."""
        from dorc.localstack.endpoint import session

        return session(self.endpoint, self.region)

    def empty_holding_store(self) -> None:
        """Create the holding bucket if missing (a test may seed it before anything is deployed),
        else delete every object in it: what an earlier test stored is gone."""
        s3 = self.session.client("s3")
        try:
            s3.head_bucket(Bucket=self.holding_bucket)
        except Exception:  # noqa: BLE001 - 404: not created yet
            where = {} if self.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": self.region}}
            s3.create_bucket(Bucket=self.holding_bucket, **where)
            return
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.holding_bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=self.holding_bucket, Delete={"Objects": keys, "Quiet": True})


def localstack_test_env() -> str:
    """The LocalStack environment of this pytest process: ``localstack-t``, or ``localstack-t<N>``
    for pytest-xdist's worker ``gw<N>`` (workers must not empty each other's store)."""
    from dorc.project import TEST_ENV

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return TEST_ENV + worker.removeprefix("gw") if worker.removeprefix("gw").isdigit() else TEST_ENV



class SessionDeployments:
    """What this pytest session deployed to LocalStack, per endpoint and stack: a fingerprint of
    what went into each layer's deployment and its deployment record. A later test whose layers
    have the same fingerprints runs them as deployed (``deploy=False``, the record copied into
    its own state folder) instead of reading the endpoint to find that nothing changed."""

    def __init__(self):
        self._done: dict[tuple[str, str], tuple[str, str]] = {}  # (endpoint, stack) -> (fingerprint, record)

    @staticmethod
    def fingerprint(project, plan) -> str:
        """The plan (names, settings, variables) and every file a deployment of it is built from:
        the functions' sources and requirements, the layer's requirements, dorc.toml (its
        ``[local.environment]`` is deployed too)."""
        import hashlib
        from pathlib import Path

        from dorc.package import source_digest
        from dorc.project import SETTINGS_FILE

        h = hashlib.sha256(plan.digest().encode())
        for fn in plan.functions:
            h.update(fn.key.encode() + b"\0" + source_digest(Path(fn.source_dir)).encode())
        for path in (project.layer_dir(plan.instance, plan.layer) / "requirements.txt", project.root / SETTINGS_FILE):
            h.update(path.read_bytes() if path.is_file() else b"-")
        return h.hexdigest()

    @staticmethod
    def _fixed_urls(plans) -> bool:
        """Fixture URLs are deployed: skipping is safe only when each fixture gets its declared
        port again (declared, and free now), so the deployed URL is the one that will answer."""
        import socket

        for plan in plans.values():
            for spec in (getattr(plan, "local_fixtures", None) or {}).values():
                if not getattr(spec, "port", None):
                    return False
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind it
                    try:
                        sock.bind(("127.0.0.1", spec.port))
                    except OSError:
                        return False
        return True

    def restore(self, project, plans, endpoint: str) -> bool:
        """Copy the records of ``plans`` into ``project``'s state folder if each layer is deployed
        as it is now; False (deploy) otherwise."""
        from dorc.targets.localstack.record import deployment_file, stack_name

        found = {}
        for plan in plans.values():
            done = self._done.get((endpoint, stack_name(plan)))
            if done is None or done[0] != self.fingerprint(project, plan):
                return False
            found[stack_name(plan)] = done[1]
        if not self._fixed_urls(plans):
            return False
        for stack, text in found.items():
            path = deployment_file(project.state_dir, stack)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return True

    def remember(self, project, plans, endpoint: str) -> None:
        """After a deploying run: what it deployed (the records it wrote), if ports were fixed."""
        from dorc.targets.localstack.record import deployment_file, stack_name

        for plan in plans.values():
            path = deployment_file(project.state_dir, stack_name(plan))
            self._done.pop((endpoint, stack_name(plan)), None)
            if path.is_file() and self._fixed_urls({plan.key: plan}):
                self._done[(endpoint, stack_name(plan))] = (self.fingerprint(project, plan), path.read_text())


@pytest.fixture(scope="session")
def _dorc_session_deployments() -> SessionDeployments:
    return SessionDeployments()


@pytest.fixture
def _dorc_localstack_test(request, dorc_project):
    """``get()`` -> this test's ``LocalStackTest``, made (LocalStack started, store emptied) on first use."""
    made: list[LocalStackTest] = []

    def get() -> LocalStackTest:
        if not made:
            handle = request.getfixturevalue("dorc_localstack")
            settings = dorc_project.settings
            env = localstack_test_env()
            made.append(LocalStackTest(endpoint=handle.endpoint, env=env, region=settings.region,
                                       holding_bucket=settings.render(settings.holding_bucket, env)))
            made[0].empty_holding_store()
        return made[0]

    return get


@pytest.fixture
def dorc_run(dorc_project, dorc_target, _dorc_localstack_test, _dorc_session_deployments):
    """``dorc_run(instance, layer=None, event=None, env=None, target=<the test's>)`` -> RunResult.

    In LocalStack the layers are deployed to the test environment unless this session already
    deployed them as they are now (``deploy=True`` deploys anyway, ``deploy=False`` runs what is
    deployed), then executed; ``endpoint=`` runs on your own LocalStack instead (env
    ``localstack`` by default, nothing emptied).
    """
    from dorc.api import run_pipeline

    def run(instance, layer=None, *, event=None, env=None, target=None, deploy=None, **kwargs):
        target = target or dorc_target
        if deploy is not None:
            kwargs["deploy"] = deploy
        if target != "localstack" or kwargs.get("endpoint"):
            return run_pipeline(instance, layer, event=event, env=env, target=target, project=dorc_project, **kwargs)
        from dorc.planning import reachable_plans, start_layers

        ls = _dorc_localstack_test()
        env = env or ls.env
        if deploy is False or kwargs.get("dry_run"):  # as deployed / nothing deployed: nothing to remember
            return run_pipeline(instance, layer, event=event, env=env, target=target, project=dorc_project,
                                endpoint=ls.endpoint, **kwargs)
        plans = reachable_plans(dorc_project, start_layers(dorc_project, instance, layer, env), env)
        deployed = deploy is None and _dorc_session_deployments.restore(dorc_project, plans, ls.endpoint)
        kwargs["deploy"] = not deployed
        try:
            return run_pipeline(instance, layer, event=event, env=env, target=target, project=dorc_project,
                                endpoint=ls.endpoint, **kwargs)
        finally:
            if not deployed:
                _dorc_session_deployments.remember(dorc_project, plans, ls.endpoint)

    return run


@pytest.fixture
def dorc_invoke(dorc_project, dorc_target, _dorc_localstack_test, _dorc_session_deployments):
    """``dorc_invoke(instance, layer, function, event=None)`` -> StepResult of that one function;
    in LocalStack the deployed function (its layer deployed first), invoked directly."""
    from dorc.api import invoke_function

    def invoke(instance, layer, function, *, event=None, env=None, target=None, endpoint=None):
        target = target or dorc_target
        if target != "localstack" or endpoint:
            return invoke_function(instance, layer, function, event=event, env=env, project=dorc_project,
                                   target=target, endpoint=endpoint)
        from dorc.planning import plan_layer

        ls = _dorc_localstack_test()
        env = env or ls.env
        plans = {f"{instance}/{layer}": plan_layer(dorc_project, instance, layer, env)}
        deployed = _dorc_session_deployments.restore(dorc_project, plans, ls.endpoint)
        try:
            return invoke_function(instance, layer, function, event=event, env=env, project=dorc_project,
                                   target=target, endpoint=ls.endpoint, deploy=not deployed)
        finally:
            if not deployed:
                _dorc_session_deployments.remember(dorc_project, plans, ls.endpoint)

    return invoke


class DorcAWS:
    """What ``dorc_aws`` gives: this test's AWS on its target and the holding store's name there.

    ``client(service)`` (boto3 API), ``holding_bucket``, ``put(key, data)`` (bytes, text, or any
    other value as JSON), ``get(key)`` -> bytes, ``get_json(key)``, ``keys(prefix="")``; ``target``
    and ``env`` say where it is. Locally it is the local AWS server with this test's store;
    in LocalStack, clients of a ``localstack_client`` session on the session's LocalStack.
    """

    def __init__(self, target: str, env: str, holding_bucket: str, client, local=None):
        self.target, self.env, self.holding_bucket = target, env, holding_bucket
        self._client, self._local = client, local

    def client(self, service: str, **kwargs):
        return self._client(service, **kwargs)

    def put(self, key: str, data, *, bucket: str | None = None) -> None:
        import json

        body = data if isinstance(data, bytes) else data.encode() if isinstance(data, str) else json.dumps(data).encode()
        self.client("s3").put_object(Bucket=bucket or self.holding_bucket, Key=key, Body=body)

    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        return self.client("s3").get_object(Bucket=bucket or self.holding_bucket, Key=key)["Body"].read()

    def get_json(self, key: str, *, bucket: str | None = None):
        import json

        return json.loads(self.get(key, bucket=bucket))

    def keys(self, prefix: str = "", *, bucket: str | None = None) -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket or self.holding_bucket,
                                                                            Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def __getattr__(self, name: str):
        if name.startswith("_") or self._local is None:
            raise AttributeError(name)
        return getattr(self._local, name)  # locally, the rest of dorc_sim's LocalAWS


@pytest.fixture
def dorc_aws(dorc_project, dorc_target, _dorc_localstack_test):
    """This test's AWS on its target, to seed or inspect data (``DorcAWS``). Locally: a local AWS
    server on this test's own store (its state folder is in the test's tmp folder, so the server
    is the test's too, stopped at its end), shared with the runs inside the test; while the
    fixture lasts, ``AWS_ENDPOINT_URL`` and test credentials point the test's own boto3 there.
    In LocalStack: the test environment's holding store, empty at the start of the test."""
    if dorc_target == "localstack":
        ls = _dorc_localstack_test()
        yield DorcAWS("localstack", ls.env, ls.holding_bucket, ls.session.client)
        return
    from dorc_sim.aws import LocalAWS

    settings = dorc_project.settings
    bucket = settings.render(settings.holding_bucket, "local")
    with LocalAWS(dorc_project.local_aws_dir, settings.region, [bucket]) as aws:
        saved = {k: os.environ.get(k) for k in (*_AWS_VARS, "AWS_DEFAULT_REGION")}
        for k in _AWS_VARS:
            os.environ.pop(k, None)
        os.environ.update({**aws.sandbox_environment(), "AWS_DEFAULT_REGION": settings.region})
        try:
            yield DorcAWS("local", "local", bucket, lambda service, **kw: aws.client(service), local=aws)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# What could point a test's boto3 elsewhere than its local AWS while ``dorc_aws`` lasts.
_AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclasses.dataclass
class LocalStackHandle:
    """What the ``dorc_localstack`` fixture yields: a LocalStack that answers at ``endpoint``."""

    endpoint: str
    mode: str  # "host" (started for this session), "docker" or "external" ($DORC_LOCALSTACK_ENDPOINT)
    port: int | None = None
    state_dir: str | None = None
    region: str = "us-east-1"

    @functools.cached_property
    def session(self):
        """A ``localstack_client.session.Session`` on this endpoint (test credentials, ``region``)."""
        from dorc.localstack.endpoint import session

        return session(self.endpoint, self.region)

    def client(self, service: str, **kwargs):
        """A boto3 client for this LocalStack from a localstack-client session (test credentials;
        ``region_name=`` as pipelines deploy to their project's region, else ``region``)."""
        from botocore.config import Config

        from dorc.localstack.endpoint import session

        region = kwargs.pop("region_name", self.region)
        kwargs.setdefault("config", Config(retries={"max_attempts": 2}, read_timeout=120))
        return (self.session if region == self.region else session(self.endpoint, region)).client(service, **kwargs)


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


# -- a failing test says why the run failed ---------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """``assert result.succeeded`` fails with pytest's one-line ``where``: below it, a section per
    failed ``RunResult``/``StepResult`` the test held (its failing step, error, stack trace, logs)."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.failed or call.excinfo is None:
        return
    from dorc.result import RunFailed

    if isinstance(call.excinfo.value, RunFailed):  # raise_for_failure(): the report is the message
        return
    for title, text in _failure_sections(item, call.excinfo):
        report.sections.append((title, text))


def _failure_sections(item, excinfo) -> list[tuple[str, str]]:
    from dorc.result import RunResult, StepResult

    code = getattr(getattr(item, "obj", None), "__code__", None)
    frames = [e.frame for e in excinfo.traceback if code is not None and e.frame.code.raw is code]
    if not frames and len(excinfo.traceback):
        frames = [excinfo.traceback[-1].frame]
    held = [(name, value) for frame in frames for name, value in frame.f_locals.items()
             if isinstance(value, (RunResult, StepResult)) and not value.succeeded]
    held.sort(key=lambda nv: not isinstance(nv[1], RunResult))  # runs first: a step of one is told with it
    message = str(excinfo.value)
    sections, told = [], set()
    for name, value in held:
        if id(value) in told:
            continue
        told.add(id(value))
        told.update(id(s) for s in getattr(value, "steps", []))
        report = value.failure_report()
        failed_line = next((line for line in report.splitlines() if line.startswith("failed step: ")), None)
        if failed_line and failed_line in message:  # pytest_assertrepr_compare said it already
            continue
        what = "the run" if name.startswith("@") else name  # ``assert dorc_run(...).succeeded``: a rewrite temporary
        sections.append((f"dorc: why {what} {value.status}", report))
    return sections


def pytest_assertrepr_compare(config, op, left, right):
    """``assert result.failed_step is None`` / ``assert step == ...``: the failure report of the
    failed run or step on either side."""
    from dorc.result import RunResult, StepResult

    for side in (left, right):
        if isinstance(side, (RunResult, StepResult)) and not side.succeeded:
            return [f"{left!r} {op} {right!r}", *side.failure_report().splitlines()]
    return None
