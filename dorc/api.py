"""The library API: every command of the CLI is one function here (the CLI only parses,
calls and renders), and users' scripts and the pytest plugin call the same functions.

    run_pipeline, invoke_function      a pipeline or one function, on a run target -> RunResult
    validate, plan_layer, environments definitions checked and planned (``dorc.planning``)
    deploy, destroy, promote           plans delivered to a deployment target (``dorc.delivery``)
    plan_stacks                        a Pulumi stack previewed offline (``dorc plan``)
    localstack_*                       LocalStack's install and life cycle (``dorc.localstack``)
    run_records                        the recorded runs, newest first
    store_objects, clear_store         the local holding store
    init_project, new_layer            a new config repo, a new layer in it (``dorc.scaffold``)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .delivery import deploy, destroy, plan_stacks, promote
from .errors import DorcError, FileSystemError
from .plan import LayerPlan
from .planning import environments, load_layer, plan_layer, reachable_plans, start_layers, validate  # noqa: F401
from .project import Project, find_project, read_text
from .registry import RUN_TARGETS, run_target
from .result import RunCancelled, RunResult, StepError, StepResult
from .scaffold import init_project, new_layer

__all__ = [
    "run_pipeline", "invoke_function", "parse_event", "validate", "plan_layer", "environments", "deploy", "destroy",
    "promote", "plan_stacks", "localstack_install", "localstack_start", "localstack_stop", "localstack_status",
    "localstack_logs", "run_records", "store_objects", "clear_store", "init_project", "new_layer",
]
TARGETS = tuple(RUN_TARGETS)
OPTION_FLAGS = {"endpoint": "--endpoint", "deploy_first": "--no-deploy", "timeout": "--timeout"}


def parse_event(text: str | None) -> bytes:
    """``--event``: JSON text, or ``@file.json``; default ``{}``. Returned as the JSON that is sent."""
    if text is None:
        return b"{}"
    source = "--event"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = read_text(path, "event file")  # UTF-8, or UTF-16 with a BOM as Windows editors save it
        except OSError as exc:
            raise DorcError(f"cannot read the event file {path}: {exc.strerror}",
                            hint="--event @FILE takes a path to a JSON file; or give the JSON itself: --event '{}'") from None
        source = str(path)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DorcError(f"{source} is not valid JSON: {exc}", hint="e.g. --event '{\"year\": 2020}' or --event @event.json") from None
    return json.dumps(value).encode()


def run_pipeline(instance: str, layer: str | None = None, *, target: str = "local", event: Any = None,
                 env: str | None = None, config_repo: str | os.PathLike | None = None, project: Project | None = None,
                 observer=None, record: bool = True, endpoint: str | None = None,
                 deploy: bool = True, timeout: float | None = None, dry_run: bool = False) -> RunResult | None:
    """Run a pipeline and return its ``RunResult`` (the same shape from every target).

    ``event`` is a Python value (sent as JSON) or, with ``bytes``, JSON already encoded.
    ``endpoint``, ``deploy``, ``timeout`` and ``dry_run`` apply to the LocalStack target only.
    ``dry_run``: report (``observer.progress``) the API calls that deploying every layer the run
    reaches would make, make none, run nothing, record nothing, and return None.
    """
    module = run_target(target)
    if dry_run and not hasattr(module, "dry_run"):
        raise DorcError("--dry-run only applies to --localstack runs",
                        hint="add --localstack to see what deploying to LocalStack would change, or drop --dry-run")
    if dry_run and not deploy:
        raise DorcError("--dry-run shows what deploying would change; with --no-deploy nothing is deployed",
                        hint="drop --no-deploy, or drop --dry-run")
    given = {"endpoint": endpoint, "deploy_first": None if deploy else False, "timeout": timeout}
    given = {name: value for name, value in given.items() if value is not None}
    refused = [OPTION_FLAGS[name] for name in given if name not in module.OPTIONS]
    if refused:
        raise DorcError(f"{', '.join(refused)} only appl{'ies' if len(refused) == 1 else 'y'} to --localstack runs",
                        hint="add --localstack, or drop " + ", ".join(refused))
    project = project or find_project(config_repo)
    env = env or module.DEFAULT_ENV
    event_json = _event_json(event)
    planned: dict[str, LayerPlan] = {}
    starts = start_layers(project, instance, layer, env, planned)
    plans = reachable_plans(project, starts, env, planned=planned)
    if dry_run:
        module.dry_run(plans, project=project, endpoint=endpoint, observer=observer)
        return None
    sources = _source_digests(plans) if record else {}  # before the run: the sources that ran
    watch = _StepsSoFar(observer)
    results = []
    try:
        for start in starts:
            res = module.run(plans, start, event_json, project=project, observer=watch, **given)
            results.append(res)
            if not res.succeeded:
                break
    except KeyboardInterrupt:  # Ctrl-C: the run is recorded as cancelled, with the steps done so far
        where = f"while {watch.running[0]} {watch.running[1]} was running" if watch.running else "between steps"
        result = watch.stopped(plans[starts[0]], module.TARGET,
                               StepError("Interrupted", f"interrupted (Ctrl-C) {where}"), cancelled=True)
        if record:
            _write_record(project, result, sources, plans, None if deploy else {})
        raise RunCancelled(result) from None
    except OSError as exc:  # the machine refused a file (read-only .dorc, full disk): a message, not a traceback
        if not exc.filename:  # not a file operation (a connection, ...): not ours to explain
            raise
        ran = bool(watch.steps) or watch.running is not None
        err = FileSystemError.from_os_error(exc, doing="during the run" if ran else "before the run", ran=ran)
        if ran and record:  # recorded as failed, if the disk still lets us
            failed = watch.stopped(plans[starts[0]], module.TARGET, StepError(type(exc).__name__, str(exc)))
            _write_record(project, failed, sources, plans, None if deploy else {})
            err.message += (f" (the run is recorded as failed: {failed.record_path})" if failed.record_path
                            else " (no run record could be written either)")
        raise err from None
    result = _merge(results)
    result.warnings = import_warnings(project, plans)
    if record:
        ran = None if deploy else _deployed_code(target, plans, project, endpoint)  # --no-deploy: what was there
        _write_record(project, result, sources, plans, ran)
    return result


def _deployed_code(target: str, plans: dict[str, LayerPlan], project: Project, endpoint: str | None) -> dict:
    """``--no-deploy`` ran what is deployed, not this checkout: its record says what that was."""
    from .registry import deploy_target

    try:
        return deploy_target(target).backend(project, endpoint=endpoint).ran(plans)
    except DorcError:  # the endpoint went away after the run: nothing proves which code ran
        return {key: {"packages": {}, "plan_digest": None} for key in plans}


def _source_digests(plans: dict[str, LayerPlan]) -> dict[str, dict[str, str]]:
    from .package import source_digest

    return {key: {fn.key: source_digest(Path(fn.source_dir)) for fn in p.functions} for key, p in plans.items()}


def _write_record(project: Project, result: RunResult, sources: dict, plans: dict[str, LayerPlan],
                  deployed: dict | None = None) -> None:
    """The run happened whatever the disk says: a record that cannot be written (read-only
    folder, full disk) is a warning on the result, which is still shown, not a lost run."""
    from .records import run_identity, runs_dir, write_record

    try:  # what ran: sources, packages, plan digests (promotion compares them with its build)
        write_record(project.state_dir, result, run_identity(plans, sources, deployed))
    except OSError as exc:
        folder = project.display_path(runs_dir(project.state_dir))
        result.warnings.append(f"the run record could not be written to {folder}: "
                               f"{exc.strerror or exc} ({exc.filename or folder}); make that folder writable "
                               "or free disk space: promotion reads the records")


class _StepsSoFar:
    """The caller's observer, passed through, remembering what a run stopped by Ctrl-C had done."""

    def __init__(self, observer):
        from .observer import NullObserver

        self._observer = observer or NullObserver()
        self._started_at = time.time()
        self._t0 = time.perf_counter()
        self.steps: list[StepResult] = []
        self.running: tuple[str, str] | None = None

    def __getattr__(self, name: str):
        return getattr(self._observer, name)

    def step_started(self, layer: str, function: str, deployed_name: str) -> None:
        self.running = (layer, function)
        self._observer.step_started(layer, function, deployed_name)

    def step_finished(self, step: StepResult) -> None:
        self.running = None
        if not any(s is step for s in self.steps):
            self.steps.append(step)
        self._observer.step_finished(step)

    def stopped(self, first: LayerPlan, target: str, error: StepError, *, cancelled: bool = False) -> RunResult:
        """The run as far as it went, for a run that did not return."""
        return RunResult(pipeline=first.instance, layer=first.layer, target=target, env=first.env,
                         steps=list(self.steps), started_at=self._started_at, cancelled=cancelled,
                         duration_ms=(time.perf_counter() - self._t0) * 1000, error=error)


def _event_json(event: Any) -> bytes:
    return event if isinstance(event, bytes) else json.dumps({} if event is None else event).encode()


def import_warnings(project: Project, plans: dict[str, LayerPlan]) -> list[str]:
    """What ran here but would not import in AWS (``dorc validate`` lists the same as problems):
    a local run shares dorc's environment, so "it passed" must not hide it."""
    from .import_check import function_import_problems

    return [str(problem) for plan in plans.values() for fn in plan.functions
            for problem in function_import_problems(project, fn.key, Path(fn.source_dir), fn.runtime)]


def invoke_function(instance: str, layer: str, function: str, *, event: Any = None, env: str | None = None,
                    config_repo: str | os.PathLike | None = None, project: Project | None = None,
                    observer=None, target: str = "local", endpoint: str | None = None,
                    deploy: bool = True) -> StepResult:
    """Invoke one function of a layer and return its ``StepResult``: locally, or (``target=
    "localstack"``) the deployed function at ``endpoint``, deployed first unless ``deploy`` is False."""
    module = run_target(target)
    if endpoint is not None and "endpoint" not in module.OPTIONS:
        raise DorcError("endpoint= only applies to LocalStack", hint="pass target=\"localstack\", or drop endpoint=")
    project = project or find_project(config_repo)
    env = env or module.DEFAULT_ENV
    plan = plan_layer(project, instance, layer, env)
    try:
        plan.function(function)
    except KeyError:
        names = ", ".join(f.key for f in plan.functions)
        raise DorcError(f"{instance}/{layer} has no function {function!r} (functions: {names})") from None
    given = {"endpoint": endpoint, "deploy_first": None if deploy else False}
    options = {name: value for name, value in given.items() if value is not None and name in module.OPTIONS}
    return module.invoke_function(plan, function, _event_json(event), project=project, observer=observer, **options)


# -- LocalStack's install and life cycle: ``dorc.localstack``, imported only when used ----------

def localstack_install(python: str | None = None, **kwargs):
    """Install the pinned LocalStack and dorc's executor into a venv of their own (host mode)."""
    from .localstack.install import install

    return install(python, **kwargs)


def localstack_start(**kwargs):
    """Start LocalStack in the background (host or Docker) and wait until it answers."""
    from .localstack.service import start

    return start(**kwargs)


def localstack_stop(**kwargs):
    """Stop the LocalStack that ``localstack_start`` started (by its recorded PID or container)."""
    from .localstack.service import stop

    return stop(**kwargs)


def localstack_status(**kwargs):
    """Whether it runs and answers, and which services are up."""
    from .localstack.service import status

    return status(**kwargs)


def localstack_logs(**kwargs):
    """LocalStack's log lines (``follow=True`` keeps reading)."""
    from .localstack.service import logs

    return logs(**kwargs)


def run_records(instance: str | None = None, layer: str | None = None, *, limit: int | None = None,
                config_repo: str | os.PathLike | None = None, project: Project | None = None) -> list[dict]:
    """The recorded runs (``.dorc/runs``), newest first; ``instance``/``layer`` narrow them."""
    from .records import read_records

    project = project or find_project(config_repo)
    if instance is not None and instance not in project.instances():
        raise DorcError(f"no pipeline instance {instance!r}",
                        hint="instances: " + (", ".join(project.instances()) or "none") + " (see dorc list)")
    records = read_records(project.state_dir, pipeline=instance, layer=layer)[::-1]
    return records[:limit] if limit is not None else records


def store_objects(*, config_repo: str | os.PathLike | None = None,
                  project: Project | None = None) -> list[tuple[str, str, int]]:
    """What the local holding store holds: (bucket, key, size), sorted."""
    from dorc_sim.aws import list_store

    return list_store((project or find_project(config_repo)).local_aws_dir)


def clear_store(*, config_repo: str | os.PathLike | None = None, project: Project | None = None) -> None:
    """Delete everything local runs stored."""
    from dorc_sim.aws import clear_store as clear

    clear((project or find_project(config_repo)).local_aws_dir)


def _merge(results: list[RunResult]) -> RunResult:
    """Independent start layers run one after the other; the result reads as one run."""
    first = results[0]
    if len(results) == 1:
        return first
    first.steps = [s for r in results for s in r.steps]
    first.duration_ms = sum(r.duration_ms for r in results)
    last = results[-1]
    first.error, first.output_json = last.error, last.output_json
    return first
