"""The in-process target: the plan's state machine, interpreted here, with each Task run by
``sim.runtime`` and AWS calls answered by moto.
"""

from __future__ import annotations

import json
import time
from dorc_sim.aws import FAKE_CREDENTIALS, LocalAWS
from dorc_sim.fixtures import FixtureError, Fixtures
from dorc_sim.runtime import FunctionRuntime, FunctionSpec

from ..errors import ProjectError
from ..observer import NullObserver, Observer
from ..plan import FunctionPlan, LayerPlan
from ..result import RunResult, StepError, StepResult
from . import asl

TARGET = "local"
DEFAULT_ENV = "local"  # the environment whose names a run uses unless --env says otherwise
OPTIONS: tuple[str, ...] = ("start_at",)  # run options this target takes (see dorc.api.run_pipeline)


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


def function_spec(plan: LayerPlan, fn: FunctionPlan, environment: dict[str, str]) -> FunctionSpec:
    return FunctionSpec(
        name=fn.name, source_dir=fn.source_dir, handler=fn.handler, runtime=fn.runtime,
        memory=fn.memory, timeout=float(fn.timeout), environment={**environment, **logging_environment(fn)},
        region=plan.region, account_id=plan.account_id,
    )


class _Backend:
    """Connects the interpreter's Tasks to function runtimes and records each step."""

    def __init__(self, plans: dict[str, LayerPlan], fixtures: Fixtures, observer: Observer, result: RunResult):
        self._fixtures = fixtures
        self._observer = observer
        self._result = result
        self._functions: dict[str, tuple[LayerPlan, FunctionPlan]] = {}
        self._machines: dict[str, LayerPlan] = {}
        for plan in plans.values():
            self._machines[plan.state_machine_arn] = plan
            for fn in plan.functions:
                self._functions[fn.arn] = (plan, fn)
        self._runtimes: dict[str, FunctionRuntime] = {}

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
        runtime = self._runtimes.get(function_arn)
        if runtime is None:
            env = {**local_environment(plan, fn, self._fixtures), **FAKE_CREDENTIALS}
            runtime = FunctionRuntime(function_spec(plan, fn, env), sink=self._observer.log)
            self._runtimes[function_arn] = runtime
        self._observer.step_started(plan.key, fn.key, fn.name)
        inv = runtime.invoke(input_json) if parsed is asl.UNPARSED else runtime.invoke(input_json, event=parsed)
        step = StepResult(
            function=fn.key, layer=plan.key, deployed_name=fn.name,
            status="succeeded" if inv.ok else "failed", duration_ms=inv.duration_ms,
            input_json=input_json, output_json=inv.payload, request_id=inv.request_id,
            logs=inv.logs, max_memory_mb=inv.max_memory_mb,
            error=StepError(inv.error.type, inv.error.message, inv.error.stack_trace) if inv.error else None,
        )
        self._result.steps.append(step)
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


def run(plans: dict[str, LayerPlan], start: str, event_json: bytes, *, project,
        observer: Observer | None = None, start_at: str | None = None) -> RunResult:
    """Run the layer ``start`` (an ``instance/layer`` key of ``plans``) and any it hands over to.

    ``plans`` holds every layer the run may reach; the caller builds them once. ``start_at``: a
    function of ``start`` to enter the layer's state machine at (``dorc run --from``).
    """
    observer = observer or NullObserver()
    first = plans[start]
    result = RunResult(pipeline=first.instance, layer=first.layer, target=TARGET, env=first.env)
    buckets = sorted({p.holding_bucket for p in plans.values()})
    with Fixtures.for_plans(plans) as fixtures, LocalAWS(project.local_aws_dir, first.region, buckets):
        backend = _Backend(plans, fixtures, observer, result)
        t0 = time.perf_counter()  # the execution, as in AWS: not moto's start-up
        outcome = backend.run_machine(first, event_json, start_at)
        result.duration_ms = (time.perf_counter() - t0) * 1000
    if outcome.succeeded:
        result.output_json = outcome.output_json
    else:
        failed = result.failed_step
        result.error = failed.error if failed and failed.error else StepError(outcome.error or "States.Failed", outcome.cause or "")
    return result


def invoke_function(plan: LayerPlan, function: str, event_json: bytes, *, project,
                    observer: Observer | None = None) -> StepResult:
    """One function alone, with the same runtime, environment and local AWS as in a run.

    Only Lambda's own rules apply (no state machine around it): a non-2xx ``statusCode`` is a
    successful invocation here, as it is when a function is invoked directly in AWS.
    """
    observer = observer or NullObserver()
    fn = plan.function(function)
    result = RunResult(pipeline=plan.instance, layer=plan.layer, target=TARGET, env=plan.env)
    with (Fixtures.for_plans([plan]) as fixtures,
          LocalAWS(project.local_aws_dir, plan.region, [plan.holding_bucket])):
        _Backend({plan.key: plan}, fixtures, observer, result).invoke_lambda(fn.arn, fn.key, event_json)
    return result.steps[0]
