"""The local target: the plan's state machine, interpreted here; each Task runs in its function's
sandbox (``dorc_sim.sandbox``: a worker process on the runtime's Python, in the task root the
package unzips to), and AWS calls go to moto, served to the sandboxes over 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from pathlib import Path

from dorc_sim.aws import LocalAWS
from dorc_sim.fixtures import FixtureError, Fixtures
from dorc_sim.runtime import FunctionSpec

from ..errors import DorcError, ProjectError, ToolMissingError
from ..observer import NullObserver, Observer
from ..plan import FunctionPlan, LayerPlan
from ..result import RunResult, StepError, StepResult
from . import asl

TARGET = "local"
DEFAULT_ENV = "local"  # the environment whose names a run uses unless --env says otherwise
OPTIONS: tuple[str, ...] = ("start_at", "debug", "no_iam")  # run options this target takes (see dorc.api.run_pipeline)
IAM_OFF = "off (--no-iam)"


def local_environment(plan: LayerPlan, fn: FunctionPlan, fixtures: Fixtures) -> dict[str, str]:
    """The deployed variables, with ``[local.environment]`` overrides applied (fixture URLs).
    A fixture that cannot start is the project's mistake (``[fixtures.<name>]`` in dorc.toml)."""
    env = dict(fn.environment)
    for key, value in plan.local_environment.items():
        if key in env:  # only what the function declares: the others never start a fixture
            try:
                env[key] = fixtures.render(value)
            except FixtureError as exc:
                raise ProjectError(f"{exc.message} (for [local.environment] {key} of {plan.key}/{fn.key})",
                                   hint=exc.hint) from None
    return env


def logging_environment(fn: FunctionPlan) -> dict[str, str]:
    """The variables Lambda sets from the function's logging configuration: with the JSON format
    only (the Text format sets none), the level being Lambda's default INFO unless declared."""
    if fn.log_format != "JSON":
        return {}
    return {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": fn.log_level or "INFO"}


def function_spec(plan: LayerPlan, fn: FunctionPlan, environment: dict[str, str],
                  task_root: str | None = None) -> FunctionSpec:
    return FunctionSpec(
        name=fn.name, source_dir=task_root or fn.source_dir, handler=fn.handler, runtime=fn.runtime,
        memory=fn.memory, timeout=float(fn.timeout), environment={**environment, **logging_environment(fn)},
        region=plan.region, account_id=plan.account_id,
    )


KEEP_OPEN = 4  # sandboxes kept warm during a run (the next function's is started early)
# functions whose sandboxes are started ahead of the one that runs: one, or, while sandboxes are
# forks of a fork server (a few milliseconds each), enough to keep the machine's other core busy
AHEAD, AHEAD_FORKED = 1, 3


class _NotEarly(Exception):
    """A sandbox that cannot be started in the background (its package must be built first: the
    run's own thread builds it, and says so); it is started when its function is called."""


class _Sandboxes:
    """One sandbox per function of the run, started on its first call and ended with the run;
    what each could enforce and which Python ran it, for the run's result."""

    def __init__(self, project, aws: LocalAWS, observer: Observer, debug: bool,
                 credentials: dict[str, dict] | None = None):
        from dorc_sim.sandbox.forkserver import ForkServers
        from dorc_sim.sandbox.isolation import probe

        self._servers = ForkServers()  # a fork server per runtime Python: sandboxes start as forks of it
        self._project = project
        self._aws = aws
        self._credentials = credentials  # role name -> its session; None: --no-iam
        self._observer = observer
        self._debug = debug
        self.isolation = probe()
        self._open: OrderedDict[str, object] = OrderedDict()  # the most recently used last
        self._early: dict[str, object] = {}  # arn -> a Future of its sandbox, started in the background
        self._starter = None  # the thread that starts them, made on first use
        self._compiled: set[tuple[str, str]] = set()  # (Python, runtime dir) whose SDK byte code was seen to
        self.notes: list[str] = []
        self.missing: list[str] = list(self.isolation.missing)

    def get(self, plan: LayerPlan, fn: FunctionPlan, environment: dict[str, str]):
        """The function's sandbox: warm if it ran in this run and is still kept, else new. At most
        ``KEEP_OPEN`` stay (a long chain must not hold a process per function)."""
        box = self._open.get(fn.arn)
        if box is None:
            box = self._open[fn.arn] = self._started_early(fn.arn) or self._new(plan, fn, environment)
            while len(self._open) > KEEP_OPEN:
                _, oldest = self._open.popitem(last=False)
                oldest.close()
        self._open.move_to_end(fn.arn)
        return box

    def start_early(self, plan: LayerPlan, fn: FunctionPlan, environment: dict[str, str]) -> None:
        """Start ``fn``'s worker in the background, while the functions before it run (its
        start-up then costs the run nothing); its handler is still imported only when called."""
        if fn.arn in self._open or fn.arn in self._early or self._debug:
            return
        if self._starter is None:
            from concurrent.futures import ThreadPoolExecutor

            self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dorc-sandboxes")
        self._early[fn.arn] = self._starter.submit(self._start_new, plan, fn, environment)

    def _start_new(self, plan: LayerPlan, fn: FunctionPlan, environment: dict[str, str]):
        box = self._new(plan, fn, environment, early=True)
        try:
            box.start()
        except BaseException:
            box.close()
            raise
        return box

    def _started_early(self, arn: str):
        """The sandbox started in the background for ``arn``, once it is; None when there is none or
        it could not start there (the caller starts it now, so that any error is the run's own)."""
        future = self._early.pop(arn, None)
        if future is None:
            return None
        try:
            return future.result()
        except Exception:  # noqa: BLE001 - started again by the caller, which reports what fails
            return None

    def ahead(self, box) -> int:
        """How many functions after ``box``'s to start early."""
        return AHEAD_FORKED if getattr(box, "forked", False) else AHEAD

    def _new(self, plan: LayerPlan, fn: FunctionPlan, environment: dict[str, str], *, early: bool = False):
        from dorc_sim.sandbox.interpreters import find_interpreter
        from dorc_sim.sandbox.launcher import Sandbox, SandboxSpec
        from dorc_sim.sandbox.sdk import runtime_dir

        from ..package import PackageError
        from ..taskroot import prepare

        progress = _not_early if early else getattr(self._observer, "progress", None)  # what takes a while
        try:
            root = prepare(self._project.state_dir, fn.name, Path(fn.source_dir), fn.runtime, on_build=progress)
        except PackageError as exc:
            raise DorcError(f"{plan.key}/{fn.key}: {exc.message}", hint=exc.hint) from None
        from dorc_sim.aws import LocalAWSServerError
        from dorc_sim.sandbox.interpreters import InterpreterError
        from dorc_sim.sandbox.sdk import RuntimeDirError

        try:
            python = find_interpreter(fn.runtime)
            runtime = str(runtime_dir())
            access = self._aws.sandbox_environment(
                None if self._credentials is None else self._credentials[fn.role_name])
        except (InterpreterError, RuntimeDirError, LocalAWSServerError) as exc:
            raise ToolMissingError(f"{plan.key}/{fn.key}: {exc.message}", hint=exc.hint) from None
        if not python.exact and python.note not in self.notes:
            self.notes.append(python.note)
        if (python.executable, runtime) not in self._compiled:  # once a run and Python: its stamp is read
            from dorc_sim.sandbox.sdk import compile_for  # the sandbox cannot write the SDK's .pyc files: here

            bytecode = compile_for(python.executable, runtime, label="python{}.{}".format(*python.version),
                                   on_compile=progress)
            self._compiled.add((python.executable, runtime))
            if bytecode.fresh and bytecode.warning and bytecode.warning not in self.notes:
                self.notes.append(bytecode.warning)
        home_aws = os.path.join(os.path.expanduser("~"), ".aws")  # the host's credentials: not Lambda's
        spec = SandboxSpec(
            function=function_spec(plan, fn, environment, task_root=str(root.path)),
            python=python.executable, runtime_dir=runtime, ephemeral_mb=fn.ephemeral_storage,
            access=access, attached=self._debug, hide=[home_aws],
        )
        shown = _SourcePaths(str(root.path), fn.source_dir)
        box = Sandbox(spec, self.isolation, sink=lambda line: self._observer.log(shown(line)), servers=self._servers)
        box.shown = shown
        return box

    def seen(self, box) -> None:
        for item in box.missing:
            if item not in self.missing:
                self.missing.append(item)

    def close(self) -> None:
        early, self._early = list(self._early.values()), {}
        for future in early:  # started for functions the run did not reach
            try:
                future.result().close()
            except Exception:  # noqa: BLE001 - never started: nothing to end
                pass
        if self._starter is not None:
            self._starter.shutdown(wait=True)
            self._starter = None
        for box in self._open.values():
            box.close()
        self._open.clear()
        self._servers.close()

    @property
    def line(self) -> str:
        return "full" if not self.missing else f"partial ({', '.join(self.missing)})"


def _not_early(message: str) -> None:
    raise _NotEarly(message)


class _SourcePaths:
    """The task root is a copy; tracebacks and logs name the user's own file instead (the one to
    open and fix), as long as it is one of the function's files; a vendored dependency keeps
    its task-root path."""

    def __init__(self, task_root: str, source_dir: str):
        import re

        self._source = source_dir.rstrip(os.sep) + os.sep
        self._pattern = re.compile(re.escape(task_root.rstrip(os.sep) + os.sep) + r"([^\s\"',:]+)")

    def _one(self, match) -> str:
        relative = match.group(1)
        own = self._source + relative
        return own if os.path.isfile(own) else match.group(0)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(self._one, text) if text else text


class _Backend:
    """Connects the interpreter's Tasks to function sandboxes and records each step."""

    def __init__(self, plans: dict[str, LayerPlan], fixtures: Fixtures, observer: Observer, result: RunResult,
                 sandboxes: _Sandboxes):
        self._fixtures = fixtures
        self._observer = observer
        self._result = result
        self._sandboxes = sandboxes
        self._functions: dict[str, tuple[LayerPlan, FunctionPlan]] = {}
        self._machines: dict[str, LayerPlan] = {}
        # the function that most likely runs after each: the next of its layer, or the first of
        # the layer it hands over to
        self._next: dict[str, tuple[LayerPlan, FunctionPlan]] = {}
        for plan in plans.values():
            self._machines[plan.state_machine_arn] = plan
            for fn, following in zip(plan.functions, plan.functions[1:]):
                self._next[fn.arn] = (plan, following)
            for fn in plan.functions:
                self._functions[fn.arn] = (plan, fn)
            after = plans.get(f"{plan.handover.instance}/{plan.handover.layer}") if plan.handover else None
            if after is not None and plan.functions and after.functions:
                self._next[plan.functions[-1].arn] = (after, after.functions[0])

    def run_machine(self, plan: LayerPlan, input_json: bytes, start_at: str | None = None) -> asl.ExecutionOutcome:
        """``start_at``: a function of ``plan``; its Task becomes the entry (``StartAt``), so the
        rest of the chain, its checks and its hand-overs run as deployed."""
        if start_at is None:
            return asl.execute(plan.asl, input_json, self)
        state = plan.function(start_at).key  # each function's Task state is named by its key
        if plan.asl["States"].get(state, {}).get("Type") != "Task":
            raise asl.UnsupportedASL(f"no Task state {state!r} to start {plan.key} at")
        return asl.execute({**plan.asl, "StartAt": state}, input_json, self)

    def invoke_lambda(self, function_arn: str, state_name: str, input_json: bytes,
                      parsed=asl.UNPARSED) -> asl.TaskOutcome:
        plan, fn = self._functions[function_arn]
        box = self._sandboxes.get(plan, fn, local_environment(plan, fn, self._fixtures))
        following = self._next.get(function_arn)
        for _ in range(self._sandboxes.ahead(box)):
            if following is None:
                break
            after, fn_after = following
            self._sandboxes.start_early(after, fn_after, local_environment(after, fn_after, self._fixtures))
            following = self._next.get(fn_after.arn)
        self._observer.step_started(plan.key, fn.key, fn.name)
        try:
            inv = box.invoke(input_json)
        except Exception as exc:  # noqa: BLE001 - the sandbox could not start: dorc's, not the handler's
            from dorc_sim.sandbox.launcher import SandboxError

            if not isinstance(exc, SandboxError):
                raise
            raise DorcError(f"{plan.key}/{fn.key}: {exc}",
                            hint="`dorc doctor` shows the Pythons and the sandbox this machine has") from None
        self._sandboxes.seen(box)
        shown = box.shown
        inv.logs = shown(inv.logs)
        if inv.error is not None:
            inv.error.message = shown(inv.error.message)
            inv.error.stack_trace = [shown(frame) for frame in inv.error.stack_trace]
        step = StepResult(
            function=fn.key, layer=plan.key, deployed_name=fn.name,
            status="succeeded" if inv.ok else "failed", duration_ms=inv.duration_ms,
            input_json=input_json, output_json=inv.payload, request_id=inv.request_id,
            logs=inv.logs, max_memory_mb=inv.max_memory_mb,
            error=StepError(inv.error.type, inv.error.message, inv.error.stack_trace) if inv.error else None,
        )
        self._result.add_step(step)  # large payloads go to the run's spool file, not memory
        self._observer.step_finished(step)
        if inv.error is not None:
            return asl.TaskOutcome(error=inv.error.type, cause=json.dumps(inv.error.to_lambda()))
        return asl.TaskOutcome(output_json=inv.payload)

    def start_execution(self, state_machine_arn: str, input_json: bytes) -> asl.TaskOutcome:
        child = self._machines.get(state_machine_arn)
        if child is None:
            return asl.TaskOutcome(error="StateMachineDoesNotExist", cause=f"no plan for {state_machine_arn}")
        outcome = self.run_machine(child, input_json)
        if not outcome.succeeded:
            return asl.TaskOutcome(error="States.TaskFailed", cause=f"{child.key}: {outcome.error}: {outcome.cause}")
        return asl.TaskOutcome(output_json=outcome.output_json)

    def fail(self, state_name: str, error: str, cause: str) -> None:
        """A Fail state or a Task error: it belongs to the step that just ran."""
        if not self._result.steps:
            return
        step = self._result.steps[-1]
        if step.error is None:
            step.status = "failed"
            step.error = StepError(error, cause)
            self._observer.step_finished(step)


def _sandboxed(result: RunResult, sandboxes: _Sandboxes) -> None:
    result.sandbox = sandboxes.line
    result.warnings.extend(n for n in sandboxes.notes if n not in result.warnings)


def _role_sessions(aws: LocalAWS, plans, result: RunResult, no_iam: bool) -> dict[str, dict] | None:
    """Every function's role in the local IAM, as the plan grants it, and the session its sandbox
    calls AWS with (as Lambda gives each function its execution role's credentials). ``None``
    with ``--no-iam``: the sandboxes call as the administrator, and the run says so."""
    from ..plan import function_policy

    if no_iam:
        result.iam = IAM_OFF
        return None
    functions = {fn.role_name: fn for plan in plans for fn in plan.functions}
    answer = aws.role_sessions([{"name": name, "policy": function_policy(fn), "managed": list(fn.managed_policies),
                                 "session": fn.name} for name, fn in functions.items()])
    for role, arns in sorted(answer.get("unknown_managed", {}).items()):
        for arn in arns:
            note = (f"managed policy {arn} (role {role}) is not known to the local AWS, so the calls only it "
                    f"allows are refused locally: declare them as Permission(...), or run with --no-iam")
            if note not in result.warnings:
                result.warnings.append(note)
    result.iam = "enforced"
    return answer["credentials"]


def run(plans: dict[str, LayerPlan], start: str, event_json: bytes, *, project,
        observer: Observer | None = None, start_at: str | None = None, debug: bool = False,
        no_iam: bool = False) -> RunResult:
    """Run the layer ``start`` (an ``instance/layer`` key of ``plans``) and any it hands over to.

    ``plans`` holds every layer the run may reach; the caller builds them once. ``start_at``: a
    function of ``start`` to enter the layer's state machine at (``dorc run --from``).
    ``debug``: handlers attached to the terminal, no timeout (``dorc run --debug``).
    ``no_iam``: the handlers' AWS calls are not checked against their roles (``--no-iam``).
    """
    observer = observer or NullObserver()
    first = plans[start]
    result = RunResult(pipeline=first.instance, layer=first.layer, target=TARGET, env=first.env).spool_in(project.state_dir)
    buckets = sorted({p.holding_bucket for p in plans.values()})
    with (Fixtures.for_plans(plans) as fixtures,
          LocalAWS(project.local_aws_dir, first.region, buckets, project.settings.server_idle_minutes) as aws):
        sandboxes = _Sandboxes(project, aws, observer, debug, _role_sessions(aws, plans.values(), result, no_iam))
        try:
            backend = _Backend(plans, fixtures, observer, result, sandboxes)
            entry = first.function(start_at) if start_at else (first.functions[0] if first.functions else None)
            if entry is not None:  # its interpreter starts while moto and the fixtures do
                sandboxes.start_early(first, entry, local_environment(first, entry, fixtures))
            t0 = time.perf_counter()  # the execution, as in AWS: not moto's start-up
            outcome = backend.run_machine(first, event_json, start_at)
            result.duration_ms = (time.perf_counter() - t0) * 1000
        finally:
            sandboxes.close()
        _sandboxed(result, sandboxes)
    if outcome.succeeded:
        result.output_json = outcome.output_json
    else:
        failed = result.failed_step
        result.error = failed.error if failed and failed.error else StepError(outcome.error or "States.Failed", outcome.cause or "")
    return result


def invoke_function(plan: LayerPlan, function: str, event_json: bytes, *, project,
                    observer: Observer | None = None, no_iam: bool = False) -> StepResult:
    """One function alone, with the same runtime, environment and local AWS as in a run.

    Only Lambda's own rules apply (no state machine around it): a non-2xx ``statusCode`` is a
    successful invocation here, as it is when a function is invoked directly in AWS.
    """
    observer = observer or NullObserver()
    fn = plan.function(function)
    result = RunResult(pipeline=plan.instance, layer=plan.layer, target=TARGET, env=plan.env)
    with (Fixtures.for_plans([plan]) as fixtures,
          LocalAWS(project.local_aws_dir, plan.region, [plan.holding_bucket],
                   project.settings.server_idle_minutes) as aws):
        sandboxes = _Sandboxes(project, aws, observer, debug=False,
                               credentials=_role_sessions(aws, [plan], result, no_iam))
        try:
            _Backend({plan.key: plan}, fixtures, observer, result, sandboxes).invoke_lambda(fn.arn, fn.key, event_json)
        finally:
            sandboxes.close()
    return result.steps[0]
