"""The library API: every command of the CLI is one function here (the CLI only parses,
calls and renders), and users' scripts and the pytest plugin call the same functions.

    run_pipeline, invoke_function      a pipeline or one function, on a run target -> RunResult
    rerun_pipeline, watch_pipeline     a recorded run again (or part-way: ``dorc.resume``); runs on every change
    validate, plan_layer, environments definitions checked and planned (``dorc.planning``)
    deploy, destroy, promote           plans delivered to a deployment target (``dorc.delivery``)
    plan_stacks                        a Pulumi stack previewed offline (``dorc plan``)
    localstack_*                       LocalStack's install and life cycle (``dorc.localstack``)
    run_records                        the recorded runs, newest first
    pipeline_graph                     layers in run order, functions, hand-overs, triggers (``dorc graph``)
    run_record, executions, function_logs   one past run; LocalStack's executions; functions' logs
    store_objects, clear_store         the local holding store
    trigger_event, put_object, fire    triggers fired by hand or by a stored file (``dorc.triggers``)
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
from .triggers import Firing, StoredObject, put_object, trigger_event, wait_for_executions

__all__ = [
    "run_pipeline", "rerun_pipeline", "watch_pipeline", "invoke_function", "parse_event", "validate", "plan_layer", "environments", "deploy", "destroy",
    "promote", "plan_stacks", "localstack_install", "localstack_start", "localstack_stop", "localstack_status",
    "localstack_logs", "run_records", "run_record", "executions", "function_logs", "pipeline_graph", "store_objects", "clear_store", "trigger_event", "put_object", "fire", "wait_for_executions",
    "Firing", "StoredObject", "init_project", "new_layer",
]
TARGETS = tuple(RUN_TARGETS)
OPTION_FLAGS = {"endpoint": "--endpoint", "deploy_first": "--no-deploy", "timeout": "--timeout", "debug": "--debug",
                "no_iam": "--no-iam"}


def _check_no_iam(module, iam: bool) -> None:
    if not iam and "no_iam" not in module.OPTIONS:
        raise DorcError("--no-iam turns off the local AWS's IAM checks: it applies to local runs only (LocalStack "
                        "checks what the deployed roles allow)",
                        hint="run with --local --no-iam; to turn LocalStack's checks off, start it with "
                             "DORC_ENFORCE_IAM=0 in the environment")


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
                 deploy: bool = True, timeout: float | None = None, dry_run: bool = False,
                 start_at: str | None = None, resume_from: str | dict | None = None,
                 rerun_of: str | None = None, debug: bool = False, iam: bool = True) -> RunResult | None:
    """Run a pipeline and return its ``RunResult`` (the same shape from every target).

    ``event`` is a Python value (sent as JSON) or, with ``bytes``, JSON already encoded.
    ``endpoint``, ``deploy``, ``timeout`` and ``dry_run`` apply to the LocalStack target only.
    ``debug`` (local target): handlers attached to the terminal with their timeout suspended, so
    ``breakpoint()`` works. ``iam=False`` (local target, ``--no-iam``): the handlers' AWS calls
    are not checked against their functions' roles; the result says so (``RunResult.iam``).
    ``dry_run``: report (``observer.progress``) the API calls that deploying every layer the run
    reaches would make, make none, run nothing, record nothing, and return None.
    ``start_at``: start ``layer`` at this function (local target: the same state machine, entered
    at its Task), with ``event`` when given, else with the input it received in run
    ``resume_from`` (an id, ``"last"``, or a record) or in the newest recorded run of the layer;
    the record links back (``"resumed_from"``). ``rerun_of``: the id of the run this one repeats.
    """
    module = run_target(target)
    if dry_run and not hasattr(module, "dry_run"):
        raise DorcError("--dry-run only applies to --localstack runs",
                        hint="add --localstack to see what deploying to LocalStack would change, or drop --dry-run")
    if dry_run and not deploy:
        raise DorcError("--dry-run shows what deploying would change; with --no-deploy nothing is deployed",
                        hint="drop --no-deploy, or drop --dry-run")
    if debug and "debug" not in module.OPTIONS:
        raise DorcError("--debug runs the handlers on this machine, attached to the terminal: it applies to "
                        "local runs only", hint="run with --local --debug, or drop --debug")
    _check_no_iam(module, iam)
    given = {"endpoint": endpoint, "deploy_first": None if deploy else False, "timeout": timeout,
             "debug": True if debug else None, "no_iam": None if iam else True}
    given = {name: value for name, value in given.items() if value is not None}
    refused = [OPTION_FLAGS[name] for name in given if name not in module.OPTIONS]
    if refused:
        raise DorcError(f"{', '.join(refused)} only appl{'ies' if len(refused) == 1 else 'y'} to --localstack runs",
                        hint="add --localstack, or drop " + ", ".join(refused))
    _check_start(module, instance, layer, start_at, resume_from)
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
    request = {"event": json.loads(event_json), **({"whole_instance": True} if layer is None else {}),
               **({"rerun_of": rerun_of} if rerun_of else {})}  # kept in the record: what `dorc rerun` repeats
    if start_at is not None:
        event_json = _start_point(project, plans, starts[0], start_at, resume_from, event, event_json, watch,
                                  given, sources, request)
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
            _write_record(project, result, sources, plans, None if deploy else {}, request)
        raise RunCancelled(result) from None
    except OSError as exc:  # the machine refused a file (read-only .dorc, full disk): a message, not a traceback
        if not exc.filename:  # not a file operation (a connection, ...): not ours to explain
            raise
        ran = bool(watch.steps) or watch.running is not None
        err = FileSystemError.from_os_error(exc, doing="during the run" if ran else "before the run", ran=ran)
        if ran and record:  # recorded as failed, if the disk still lets us
            failed = watch.stopped(plans[starts[0]], module.TARGET, StepError(type(exc).__name__, str(exc)))
            _write_record(project, failed, sources, plans, None if deploy else {}, request)
            err.message += (f" (the run is recorded as failed: {failed.record_path})" if failed.record_path
                            else " (no run record could be written either)")
        raise err from None
    result = _merge(results)
    if record:
        ran = None if deploy else _deployed_code(target, plans, project, endpoint)  # --no-deploy: what was there
        _write_record(project, result, sources, plans, ran, request)
    return result


def _check_start(module, instance: str, layer: str | None, start_at: str | None, resume_from) -> None:
    """``--from``: a function of one layer, and a target that can enter a state machine part-way."""
    if start_at is None:
        if resume_from is not None:
            raise DorcError("--run picks the run whose input --from resumes with; it needs --from FUNCTION",
                            hint="add --from FUNCTION, or run a recorded run again with: dorc rerun ID")
        return
    if layer is None:
        raise DorcError(f"--from {start_at} needs the layer it belongs to",
                        hint=f"dorc run {instance} LAYER --local --from {start_at} (dorc list shows the layers)")
    if "start_at" not in module.OPTIONS:
        where = {"localstack": "LocalStack"}.get(module.TARGET, module.TARGET)
        raise DorcError(f"--from cannot start a {where} run part-way: Step Functions always starts an "
                        "execution at its state machine's first state",
                        hint=f"resume locally, where the same state machine is entered at {start_at}: "
                             f"dorc run {instance} {layer} --local --from {start_at} (add --env to use that "
                             "environment's names); or run the whole layer there with --event")


def _start_point(project: Project, plans: dict[str, LayerPlan], key: str, function: str, resume_from,
                 event: Any, event_json: bytes, observer, given: dict, sources: dict, request: dict) -> bytes:
    """Where a ``--from`` run starts and with what; says so (``observer.progress``), and keeps
    the link in the record. The layer's functions before it do not run, so its record claims
    only the sources of those that did (promotion wants a run of the whole build)."""
    from .records import short_id
    from .resume import functions_run, resume_point

    point = resume_point(project, plans, key, function, run=resume_from,
                         event_json=event_json if event is not None else None)
    if point.record is None:
        observer.progress(f"starting {key} at {point.function} with the given event")
    elif event is None:
        observer.progress(f"resuming {key} at {point.function} with the input it received in run "
                          f"{short_id(point.record)} ({point.record.get('started_at')})")
    else:  # a rerun of a resumed run
        observer.progress(f"starting {key} at {point.function} again, with the input run "
                          f"{short_id(point.record)} started it with")
    if point.changed:
        observer.progress(f"the code of {', '.join(point.changed)} changed since that run: "
                          "resuming with the current code")
    given["start_at"] = point.function
    if key in sources:
        ran = functions_run(plans[key], point.function)
        sources[key] = {fn: digest for fn, digest in sources[key].items() if fn in ran}
    request["event"] = json.loads(point.event_json)
    request["resumed_from"] = point.link
    return point.event_json


def watch_pipeline(instance: str, layer: str | None = None, *, run_once, on_change, on_wait=None,
                   env: str | None = None, target: str = "local", config_repo: str | os.PathLike | None = None,
                   project: Project | None = None, interval: float | None = None):
    """``dorc run … --watch``: ``run_once()`` now and after every change to a file of the layers
    the run reaches (their folders) or to ``dorc.toml``, until Ctrl-C (``KeyboardInterrupt``
    propagates). ``on_change(paths)`` hears what changed, ``on_wait(paths)`` what is watched."""
    from .watch import INTERVAL, watch, watched_paths

    project = project or find_project(config_repo)
    env = env or run_target(target).DEFAULT_ENV
    watched_paths(project, instance, layer, env)  # an unknown instance or layer: refused before the first run
    watch(run_once, lambda: watched_paths(project, instance, layer, env), on_change, on_wait=on_wait,
          interval=interval or INTERVAL)


def rerun_pipeline(run_id: str = "last", *, start_at: str | None = None, observer=None, record: bool = True,
                   endpoint: str | None = None, config_repo: str | os.PathLike | None = None,
                   project: Project | None = None) -> RunResult | None:
    """Run a recorded run again (``dorc rerun``): its pipeline, layer, target, env and first
    event; a resumed run resumes at the same function with the same input. ``start_at``: start
    at that function instead, with the input it received in that run."""
    from .resume import rerun_of as recorded_run

    project = project or find_project(config_repo)
    again = recorded_run(project, run_id, start_at)
    return run_pipeline(again.instance, again.layer, target=again.target, env=again.env, project=project,
                        observer=observer, record=record, endpoint=endpoint,
                        event=again.event_json if start_at is None else None, start_at=again.start_at,
                        resume_from=again.record if again.start_at else None, rerun_of=again.record.get("id"))


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
                  deployed: dict | None = None, request: dict | None = None) -> None:
    """The run happened whatever the disk says: a record that cannot be written (read-only
    folder, full disk) is a warning on the result, which is still shown, not a lost run."""
    from .records import run_identity, runs_dir, write_record

    try:  # what ran: sources, packages, plan digests (promotion compares them with its build)
        write_record(project.state_dir, result, {**run_identity(plans, sources, deployed), **(request or {})},
                     payload_limit_kb=project.settings.record_payload_limit_kb)
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


def invoke_function(instance: str, layer: str, function: str, *, event: Any = None, env: str | None = None,
                    config_repo: str | os.PathLike | None = None, project: Project | None = None,
                    observer=None, target: str = "local", endpoint: str | None = None,
                    deploy: bool = True, iam: bool = True) -> StepResult:
    """Invoke one function of a layer and return its ``StepResult``: locally, or (``target=
    "localstack"``) the deployed function at ``endpoint``, deployed first unless ``deploy`` is False.
    ``iam=False``: as ``run_pipeline``'s (local only)."""
    module = run_target(target)
    _check_no_iam(module, iam)
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
    given = {"endpoint": endpoint, "deploy_first": None if deploy else False, "no_iam": None if iam else True}
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
                config_repo: str | os.PathLike | None = None, project: Project | None = None,
                env: str | None = None) -> list[dict]:
    """The recorded runs (``.dorc/runs``), newest first, each with its ``id``; ``instance``/``layer``/``env``
    narrow them."""
    from .records import read_records

    project = project or find_project(config_repo)
    if instance is not None and instance not in project.instances():
        raise DorcError(f"no pipeline instance {instance!r}",
                        hint="instances: " + (", ".join(project.instances()) or "none") + " (see dorc list)")
    records = read_records(project.state_dir, pipeline=instance, layer=layer, env=env)[::-1]
    return records[:limit] if limit is not None else records


# -- past runs: records (local) and executions (LocalStack), one run, the functions' logs ---------

def run_record(run_id: str, *, target: str = "local", env: str | None = None, endpoint: str | None = None,
               config_repo: str | os.PathLike | None = None, project: Project | None = None) -> dict:
    """One past run as a record: ``run_id`` is the start of a record's id (``dorc runs`` shows 8
    characters) or ``last``; with ``target="localstack"`` an execution's name (or ARN) in ``env``,
    read from its history whoever started it."""
    from .records import find_record

    project = project or find_project(config_repo)
    if target != "local":
        return _executions_module(target).execution_record(_env_plans(project, target, env), run_id, endpoint=endpoint)
    record = find_record(project.state_dir, run_id)
    if record is None:
        folder = project.display_path(project.state_dir / "runs")
        raise DorcError(f"no recorded run {run_id!r} in {folder}" if run_id != "last" else f"no runs recorded in {folder} yet",
                        hint="`dorc runs` lists the recorded runs with their ids; `dorc runs show last` shows the newest; "
                             "runs in LocalStack: `dorc runs --target localstack`")
    return record


def executions(instance: str | None = None, layer: str | None = None, *, target: str = "localstack",
               env: str | None = None, endpoint: str | None = None, limit: int | None = None,
               config_repo: str | os.PathLike | None = None, project: Project | None = None) -> list[dict]:
    """Executions of the state machines deployed to ``target`` in ``env``, newest first, whatever
    started them (dorc, an S3 upload's rule, a schedule): id (name), pipeline, layer, status,
    started_at, duration_ms."""
    project = project or find_project(config_repo)
    plans = _env_plans(project, target, env, instance, layer)
    return _executions_module(target).list_executions(plans, endpoint=endpoint, limit=limit)


def function_logs(instance: str, layer: str, *, target: str = "localstack", env: str | None = None,
                  endpoint: str | None = None, functions: list[str] | None = None, since_ms: int | None = None,
                  follow: bool = False, config_repo: str | os.PathLike | None = None,
                  project: Project | None = None):
    """The layer's functions' log events (dicts with ``function``, ``timestamp`` in ms, ``message``),
    oldest first; ``follow`` keeps yielding new ones. In LocalStack its CloudWatch log groups; locally
    the newest recorded run of the layer (local runs keep their logs in the run record)."""
    project = project or find_project(config_repo)
    plan = plan_layer(project, instance, layer, env or run_target(target).DEFAULT_ENV)
    unknown = [f for f in functions or [] if f not in {fn.key for fn in plan.functions}]
    if unknown:
        raise DorcError(f"{instance}/{layer} has no function {', '.join(map(repr, unknown))}",
                        hint="functions: " + ", ".join(fn.key for fn in plan.functions))
    if target == "local":
        if follow:
            raise DorcError("--follow reads logs as a deployed function writes them",
                            hint="add --target localstack; a local run prints its logs as it runs")
        return _recorded_logs(project, plan, functions, since_ms)
    return _executions_module(target).log_events(plan, endpoint=endpoint, functions=functions,
                                                 since_ms=since_ms, follow=follow)


def _recorded_logs(project: Project, plan: LayerPlan, functions: list[str] | None, since_ms: int | None):
    import calendar

    from .records import read_records

    for record in reversed(read_records(project.state_dir)):
        steps = [s for s in record.get("steps", []) if s.get("layer") == plan.key
                 and (not functions or s.get("function") in functions)]
        if not steps:
            continue
        started = calendar.timegm(time.strptime(record.get("started_at", ""), "%Y-%m-%dT%H:%M:%SZ"))
        if since_ms is not None and started * 1000 < since_ms:
            return
        for step in steps:
            for line in str(step.get("logs") or "").splitlines():
                yield {"function": step["function"], "timestamp": int(started * 1000), "message": line,
                       "run_id": record["id"]}
        return


def _executions_module(target: str):
    module = run_target(target)
    if not hasattr(module, "list_executions"):
        raise DorcError(f"--target {target} keeps its runs as records",
                        hint="drop --target: `dorc runs` lists them; or --target localstack for LocalStack's executions")
    return module


def _env_plans(project: Project, target: str, env: str | None, instance: str | None = None,
               layer: str | None = None) -> dict[str, LayerPlan]:
    """Every layer's plan in ``env`` (the target's default environment unless given): the state
    machines whose executions to read. Layers that do not load are left out."""
    from .errors import DefinitionError

    env = env or run_target(target).DEFAULT_ENV
    if instance is not None and instance not in project.instances():
        raise DorcError(f"no pipeline instance {instance!r}",
                        hint="instances: " + (", ".join(project.instances()) or "none") + " (see dorc list)")
    plans = {}
    for inst in [instance] if instance else project.instances():
        for lay in [layer] if layer else project.layers(inst):
            try:
                plan = plan_layer(project, inst, lay, env)
            except DefinitionError:
                if layer:  # the one asked for: say why
                    raise
                continue
            plans[plan.key] = plan
    return plans


def pipeline_graph(instance: str | None = None, *, env: str = "local", run: str | None = None,
                   config_repo: str | os.PathLike | None = None, project: Project | None = None):
    """Layers in run order, functions, hand-overs and triggers (``dorc.describe.ProjectGraph``);
    ``run`` (``last``, a record id or file name): that run's statuses and durations on the functions."""
    from .describe import project_graph

    project = project or find_project(config_repo)
    record = None
    if run == "last" and instance is not None:  # the instance's newest run
        record = next(iter(run_records(instance, project=project)), None)
        if record is None:
            raise DorcError(f"no runs of {instance} recorded yet", hint=f"dorc run {instance} records one")
    elif run is not None:
        record = run_record(run, project=project)
        instance = instance or record.get("pipeline")
    return project_graph(project, instance, env, record)


def store_objects(*, config_repo: str | os.PathLike | None = None,
                  project: Project | None = None) -> list[tuple[str, str, int]]:
    """What the local holding store holds: (bucket, key, size), sorted."""
    from dorc_sim.aws import list_store

    return list_store((project or find_project(config_repo)).local_aws_dir)


def clear_store(*, config_repo: str | os.PathLike | None = None, project: Project | None = None) -> None:
    """Delete everything local runs stored."""
    from dorc_sim.aws import clear_store as clear

    clear((project or find_project(config_repo)).local_aws_dir)


def fire(firings: list[Firing], **options) -> list[RunResult]:
    """Start the layer of each firing (``put_object(...).firings``) with its event, as EventBridge
    starts every rule that matches: one run each, a failed run does not stop the others.
    ``options`` are ``run_pipeline``'s (``observer``, ``env``, ``project``, ...)."""
    return [run_pipeline(f.instance, f.layer, event=f.event, **options) for f in firings]


def _merge(results: list[RunResult]) -> RunResult:
    """Independent start layers run one after the other; the result reads as one run."""
    first = results[0]
    if len(results) == 1:
        return first
    first.steps = [s for r in results for s in r.steps]
    first.duration_ms = sum(r.duration_ms for r in results)
    last = results[-1]
    first.error, first.output_json = last.error, last.output_json
    first.warnings = list(dict.fromkeys(w for r in results for w in r.warnings))
    first.sandbox = next((r.sandbox for r in results if r.sandbox and r.sandbox != "full"), first.sandbox)
    first.iam = next((r.iam for r in results if r.iam and r.iam != "enforced"), first.iam)
    return first
