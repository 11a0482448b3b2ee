"""The LocalStack target: deploy the plan with boto3, execute the state machine, read the history.

A deployment is a sequence of idempotent create-or-update stages (shared resources, packages,
functions, state machines, triggers), so a re-run after a failure half way repairs it and an
unchanged package is not uploaded again. The execution history is turned into the same
``RunResult`` an in-process run gives.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import DorcError
from ..plan import (InfraPlan, LayerPlan, UniversalPlan, artifact_key, build_infra_plan,
                    build_universal_plan)
from ..plan import stack_name as plan_stack_name
from ..result import RunResult, StepError, StepResult

TARGET = "localstack"
_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


class LocalStackError(DorcError):
    exit_code = 1  # something was attempted against LocalStack and did not work


@dataclass
class Clients:
    endpoint: str
    region: str

    def __post_init__(self):
        import boto3
        from botocore.config import Config

        cfg = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        self._make = lambda svc: boto3.client(svc, endpoint_url=self.endpoint, region_name=self.region,
                                              config=cfg, **_CREDENTIALS)
        self._cache: dict[str, Any] = {}

    def __getattr__(self, service: str):
        if service.startswith("_"):
            raise AttributeError(service)
        if service not in self._cache:
            self._cache[service] = self._make({"states": "stepfunctions", "awslambda": "lambda"}.get(service, service))
        return self._cache[service]


def require_ready(endpoint: str) -> None:
    from ..localstack_endpoint import is_ready

    if not is_ready(endpoint):
        raise DorcError(  # exit 2: nothing ran
            f"LocalStack is not reachable at {endpoint}",
            hint="start it with `dorc localstack start` (or `docker compose -f docker-compose.localstack.yml up -d`), "
                 "or pass --endpoint URL",
        )


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


# -- deployment -------------------------------------------------------------------------------

Progress = Callable[[str], None]


def deploy_shared(c: Clients, universal: UniversalPlan, infra: InfraPlan, progress: Progress) -> None:
    """The universal and infra-<env> stacks' resources: artifact and holding buckets, roles."""
    for bucket in (universal.artifact_bucket, infra.holding_bucket):
        _ensure_bucket(c, bucket, infra.region)
    # as the infra stack does: S3Triggers on the holding store are EventBridge rules
    c.s3.put_bucket_notification_configuration(
        Bucket=infra.holding_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    for role in infra.roles.values():
        try:
            c.iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=json.dumps(role.trust_policy),
                              Tags=[{"Key": k, "Value": v} for k, v in infra.tags.items()])
            progress(f"created role {role.name}")
        except Exception as exc:
            if _error_code(exc) != "EntityAlreadyExists":
                raise
            c.iam.update_assume_role_policy(RoleName=role.name, PolicyDocument=json.dumps(role.trust_policy))
        c.iam.put_role_policy(RoleName=role.name, PolicyName="dorc", PolicyDocument=json.dumps(role.policy))


def _ensure_bucket(c: Clients, bucket: str, region: str) -> None:
    try:
        c.s3.head_bucket(Bucket=bucket)
        return
    except Exception:
        pass
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        c.s3.create_bucket(Bucket=bucket, **kwargs)
    except Exception as exc:
        if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def upload_packages(c: Clients, plan: LayerPlan, artifact_bucket: str, progress: Progress) -> None:
    """Content-addressed: a digest already in the bucket is not uploaded again."""
    for fn in plan.functions:
        key = artifact_key(fn)
        try:
            c.s3.head_object(Bucket=artifact_bucket, Key=key)
            continue
        except Exception:
            pass
        if fn.package_path is None:  # promoted: the package must already be in the artifact store
            raise LocalStackError(f"package {fn.package_sha256[:12]} of {fn.key} is not in s3://{artifact_bucket}",
                                  hint="promote from an environment that was deployed to this endpoint")
        c.s3.upload_file(fn.package_path, artifact_bucket, key)
        progress(f"uploaded {fn.key} package {fn.package_sha256[:12]} ({Path(fn.package_path).stat().st_size:,} bytes)")


def _code_sha256_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def deploy_functions(c: Clients, plan: LayerPlan, infra: InfraPlan, artifact_bucket: str, progress: Progress,
                     environments: dict[str, dict[str, str]]) -> None:
    role_arn = infra.roles["lambda"].arn
    for fn in plan.functions:
        _ensure_log_group(c, fn.log_group, plan.log_retention_days)
        config = {
            "Role": role_arn, "Handler": fn.handler, "Runtime": fn.runtime, "Timeout": fn.timeout,
            "MemorySize": fn.memory, "Description": fn.description[:256],
            "Environment": {"Variables": environments[fn.key]},
        }
        try:
            current = c.awslambda.get_function(FunctionName=fn.name)["Configuration"]
        except Exception as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            current = None
        if current is None:
            c.awslambda.create_function(FunctionName=fn.name, Code={"S3Bucket": artifact_bucket, "S3Key": artifact_key(fn)},
                                        Tags=plan.tags, **config)
            progress(f"created function {fn.name}")
        else:
            if current.get("CodeSha256") != _code_sha256_b64(fn.package_sha256):
                _wait_function(c, fn.name)
                c.awslambda.update_function_code(FunctionName=fn.name, S3Bucket=artifact_bucket, S3Key=artifact_key(fn))
                progress(f"updated code of {fn.name}")
            if _config_differs(current, config):
                _wait_function(c, fn.name)
                c.awslambda.update_function_configuration(FunctionName=fn.name, **config)
                progress(f"updated configuration of {fn.name}")
    for fn in plan.functions:
        _wait_function(c, fn.name)


def _config_differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    for key, value in wanted.items():
        have = current.get(key)
        if key == "Environment":
            have = (have or {}).get("Variables", {})
            value = value["Variables"]
        elif key == "Description":
            have = have or ""
        if have != value:
            return True
    return False


def _wait_function(c: Clients, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        cfg = c.awslambda.get_function_configuration(FunctionName=name)
        state, update = cfg.get("State"), cfg.get("LastUpdateStatus")
        if state == "Failed" or update == "Failed":
            reason = cfg.get("StateReason") or cfg.get("LastUpdateStatusReason") or "no reason given"
            raise LocalStackError(
                f"LocalStack could not start function {name}: {reason}",
                hint="run LocalStack with dorc's Lambda executor: `dorc localstack start` (host mode), or a "
                     "LocalStack that can run Lambda containers (docker-compose.localstack.yml)",
            )
        if state == "Active" and update in (None, "Successful"):
            return
        if time.monotonic() > deadline:
            raise LocalStackError(f"function {name} is still {state}/{update} after {timeout:.0f} s")
        time.sleep(0.1)


def _ensure_log_group(c: Clients, name: str, retention: int) -> None:
    try:
        c.logs.create_log_group(logGroupName=name)
    except Exception as exc:
        if _error_code(exc) != "ResourceAlreadyExistsException":
            raise
    c.logs.put_retention_policy(logGroupName=name, retentionInDays=retention)


def deploy_state_machine(c: Clients, plan: LayerPlan, infra: InfraPlan, progress: Progress) -> str:
    role_arn = infra.roles["states"].arn
    definition = json.dumps(plan.asl)
    try:
        current = c.states.describe_state_machine(stateMachineArn=plan.state_machine_arn)
    except Exception as exc:
        if _error_code(exc) != "StateMachineDoesNotExist":
            raise
        current = None
    if current is None:
        arn = c.states.create_state_machine(
            name=plan.state_machine_name, definition=definition, roleArn=role_arn, type="STANDARD",
            tags=[{"key": k, "value": v} for k, v in plan.tags.items()],
        )["stateMachineArn"]
        progress(f"created state machine {plan.state_machine_name}")
        return arn
    if json.loads(current["definition"]) != plan.asl or current.get("roleArn") != role_arn:
        c.states.update_state_machine(stateMachineArn=plan.state_machine_arn, definition=definition, roleArn=role_arn)
        progress(f"updated state machine {plan.state_machine_name}")
    return plan.state_machine_arn


def deploy_triggers(c: Clients, plan: LayerPlan, infra: InfraPlan) -> None:
    for t in plan.triggers:
        kwargs: dict[str, Any] = {"Name": t.rule_name, "State": "ENABLED",
                                  "Description": f"starts {plan.state_machine_name}"}
        if t.schedule_expression:
            kwargs["ScheduleExpression"] = t.schedule_expression
        else:
            kwargs["EventPattern"] = json.dumps(t.event_pattern)
        c.events.put_rule(**kwargs)
        c.events.put_targets(Rule=t.rule_name, Targets=[
            {"Id": "state-machine", "Arn": plan.state_machine_arn, "RoleArn": infra.roles["events"].arn}])


@dataclass
class Deployment:
    """What a deployed layer runs: promotion compares these, never rebuilt zips."""

    stack: str
    endpoint: str
    plan_digest: str
    packages: dict[str, str]
    state_machine_arn: str
    deployed_at: str
    plan_settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stack_name(plan: LayerPlan) -> str:
    """The same name the Pulumi stack of this layer and environment has."""
    return plan_stack_name(plan.instance, plan.layer, plan.env)


def deployments_dir(state_dir: Path) -> Path:
    return state_dir / "deployments" / TARGET


def read_deployment(state_dir: Path, stack: str) -> Deployment | None:
    path = deployments_dir(state_dir) / f"{stack}.json"
    try:
        return Deployment(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_deployment(state_dir: Path, dep: Deployment) -> None:
    folder = deployments_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{dep.stack}.json.tmp"
    tmp.write_text(json.dumps(dep.to_dict(), indent=2))
    tmp.replace(folder / f"{dep.stack}.json")


def deploy(plans: dict[str, LayerPlan], *, project, endpoint: str, environments: dict[str, dict[str, dict[str, str]]],
           progress: Progress, promoted: dict[str, dict[str, str]] | None = None) -> dict[str, Deployment]:
    """Deploy every plan, hand-over targets first. Layers in ``promoted`` (key -> function ->
    sha256) get those existing packages instead of a fresh build."""
    from ..package import package_plan

    first = next(iter(plans.values()))
    c = Clients(endpoint, first.region)
    universal = build_universal_plan(project.settings, first.region)
    infra = build_infra_plan(project.settings, first.env, first.region, account_id=first.account_id,
                             holding_bucket=first.holding_bucket)
    deploy_shared(c, universal, infra, progress)
    out: dict[str, Deployment] = {}
    for key in _children_first(plans):
        plan = plans[key]
        if promoted and key in promoted:
            plan = plan.model_copy(update={"functions": [
                f.model_copy(update={"package_sha256": promoted[key][f.key], "package_path": None})
                for f in plan.functions]})
        elif any(f.package_sha256 is None for f in plan.functions):
            plan = package_plan(plan, project.state_dir / "build", project.state_dir / "cache")
        plans[key] = plan
        upload_packages(c, plan, universal.artifact_bucket, progress)
        deploy_functions(c, plan, infra, universal.artifact_bucket, progress, environments[key])
        deploy_state_machine(c, plan, infra, progress)
        deploy_triggers(c, plan, infra)
        dep = Deployment(stack=stack_name(plan), endpoint=endpoint, plan_digest=plan.digest(),
                         packages={f.key: f.package_sha256 for f in plan.functions},
                         state_machine_arn=plan.state_machine_arn,
                         deployed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         plan_settings=plan.snapshot())
        _write_deployment(project.state_dir, dep)
        out[key] = dep
    return out


def _children_first(plans: dict[str, LayerPlan]) -> list[str]:
    order: list[str] = []

    def visit(key: str) -> None:
        if key in order:
            return
        ho = plans[key].handover
        if ho and f"{ho.instance}/{ho.layer}" in plans:
            visit(f"{ho.instance}/{ho.layer}")
        order.append(key)

    for key in plans:
        visit(key)
    return order


# -- execution and history --------------------------------------------------------------------

def execute(c: Clients, plans: dict[str, LayerPlan], start: str, event_json: bytes, observer,
            timeout: float) -> RunResult:
    plan = plans[start]
    result = RunResult(pipeline=plan.instance, layer=plan.layer, target=TARGET, env=plan.env)
    t0 = time.perf_counter()
    arn = c.states.start_execution(stateMachineArn=plan.state_machine_arn, name=f"dorc-{uuid.uuid4().hex[:20]}",
                                   input=event_json.decode())["executionArn"]
    result.execution_arn = arn
    reader = _HistoryReader(c, plans, result, observer)
    status, details = reader.follow(arn, timeout)
    result.duration_ms = (time.perf_counter() - t0) * 1000
    if status == "SUCCEEDED":
        out = details.get("output")
        result.output_json = json.dumps(json.loads(out)).encode() if out is not None else None
    else:
        failed = result.failed_step
        if status == "TIMED_OUT_WAITING":
            result.error = StepError("dorc.ExecutionTimeout", details["message"])
        else:
            result.error = failed.error if failed and failed.error else StepError(
                details.get("error") or status, details.get("cause") or "")
    return result


class _HistoryReader:
    """Follows an execution (and the child executions it starts), emitting steps as they end."""

    def __init__(self, c: Clients, plans: dict[str, LayerPlan], result: RunResult, observer):
        self.c = c
        self.result = result
        self.observer = observer
        self.functions = {fn.arn: (p, fn) for p in plans.values() for fn in p.functions}
        self.by_state = {(p.state_machine_arn, fn.key): (p, fn) for p in plans.values() for fn in p.functions}

    def follow(self, execution_arn: str, timeout: float) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        seen = 0
        open_step: dict[str, Any] | None = None
        sm_arn = execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        while True:
            events = self._history(execution_arn)
            for ev in events[seen:]:
                open_step = self._on_event(ev, sm_arn, open_step, deadline)
            seen = len(events)
            desc = self.c.states.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                events = self._history(execution_arn)
                for ev in events[seen:]:
                    open_step = self._on_event(ev, sm_arn, open_step, deadline)
                return desc["status"], desc
            if time.monotonic() > deadline:
                try:
                    self.c.states.stop_execution(executionArn=execution_arn, error="dorc.ExecutionTimeout",
                                                 cause=f"not finished after {timeout:.0f} s")
                except Exception:
                    pass
                return "TIMED_OUT_WAITING", {"message": f"execution {execution_arn} did not finish within "
                                                        f"{timeout:.0f} s; dorc stopped it"}
            time.sleep(0.05)

    def _history(self, arn: str) -> list[dict[str, Any]]:
        events, token = [], None
        while True:
            kw = {"executionArn": arn, "maxResults": 1000}
            if token:
                kw["nextToken"] = token
            page = self.c.states.get_execution_history(**kw)
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                return events

    def _on_event(self, ev: dict[str, Any], sm_arn: str, open_step, deadline: float):
        kind = ev["type"]
        if kind == "TaskStateEntered":
            name = ev["stateEnteredEventDetails"]["name"]
            hit = self.by_state.get((sm_arn, name))
            if hit is not None:
                plan, fn = hit
                self.observer.step_started(plan.key, fn.key, fn.name)
                return {"plan": plan, "fn": fn, "input": ev["stateEnteredEventDetails"].get("input"),
                        "start": ev["timestamp"]}
            return {"handover": name, "start": ev["timestamp"]}
        if open_step is None:
            if kind in ("FailStateEntered",):
                return None
            return open_step
        if kind == "TaskSucceeded" and "fn" in open_step:
            payload = json.loads(ev["taskSucceededEventDetails"]["output"]).get("Payload")
            self._finish(open_step, ev, output=json.dumps(payload).encode(), error=None)
            return open_step | {"done": True}
        if kind == "TaskFailed" and "fn" in open_step:
            d = ev["taskFailedEventDetails"]
            self._finish(open_step, ev, output=None, error=_error_from(d.get("error", ""), d.get("cause", "")))
            return open_step | {"done": True}
        if kind == "TaskSubmitted" and "handover" in open_step:
            child = json.loads(ev["taskSubmittedEventDetails"]["output"]).get("ExecutionArn")
            if child:
                status, _ = self.follow(child, max(1.0, deadline - time.monotonic()))
            return open_step
        if kind == "ExecutionFailed" and open_step.get("done") and "fn" in open_step:
            d = ev.get("executionFailedEventDetails", {})
            step = self.result.steps[-1]
            if step.error is None:  # a Fail state after a successful invoke: the step failed the checks
                step.status = "failed"
                step.error = StepError(d.get("error", "States.Failed"), d.get("cause", ""))
                self.observer.step_finished(step)
        return open_step

    def _finish(self, open_step, ev, *, output: bytes | None, error: StepError | None) -> None:
        plan, fn = open_step["plan"], open_step["fn"]
        logs, request_id, duration, memory = self._logs(fn, open_step["start"], ev["timestamp"])
        for line in logs.splitlines():
            self.observer.log(line)
        if duration is None:
            duration = (ev["timestamp"] - open_step["start"]).total_seconds() * 1000
        inp = open_step.get("input")
        step = StepResult(
            function=fn.key, layer=plan.key, deployed_name=fn.name,
            status="succeeded" if error is None else "failed", duration_ms=duration,
            input_json=json.dumps(json.loads(inp)).encode() if inp is not None else None,
            output_json=output, error=error, request_id=request_id, logs=logs, max_memory_mb=memory,
        )
        self.result.steps.append(step)
        self.observer.step_finished(step)

    def _logs(self, fn, start, end) -> tuple[str, str | None, float | None, int | None]:
        """The invocation's CloudWatch lines (START..REPORT), written asynchronously: retry briefly."""
        t_start = int(start.timestamp() * 1000) - 2000
        t_end = int(end.timestamp() * 1000) + 5000
        for _ in range(20):
            try:
                events = self.c.logs.filter_log_events(logGroupName=fn.log_group, startTime=t_start, endTime=t_end)["events"]
            except Exception:
                events = []
            lines = [e["message"].rstrip("\n") for e in sorted(events, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))]
            chunk = _last_invocation(lines)
            if chunk and chunk[-1].startswith("REPORT"):
                return _parse_report(chunk)
            time.sleep(0.05)
        return "", None, None, None


def _last_invocation(lines: list[str]) -> list[str]:
    starts = [i for i, l in enumerate(lines) if l.startswith("START RequestId:")]
    if not starts:
        return []
    chunk = lines[starts[-1]:]
    for i, l in enumerate(chunk):
        if l.startswith("REPORT RequestId:"):
            return chunk[: i + 1]
    return chunk


def _parse_report(chunk: list[str]) -> tuple[str, str | None, float | None, int | None]:
    request_id = chunk[0].split("RequestId:", 1)[1].split()[0]
    duration = memory = None
    for part in chunk[-1].split("\t"):
        part = part.strip()
        if part.startswith("Duration:"):
            duration = float(part.split()[1])
        elif part.startswith("Max Memory Used:"):
            memory = int(part.split()[3])
    return "\n".join(chunk) + "\n", request_id, duration, memory


def _error_from(error: str, cause: str) -> StepError:
    """Lambda errors arrive with the function's error JSON as the cause."""
    try:
        doc = json.loads(cause)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "errorMessage" in doc:
        return StepError(error or doc.get("errorType", "Error"), doc["errorMessage"], doc.get("stackTrace") or [])
    return StepError(error, cause)


# -- the target --------------------------------------------------------------------------------

def function_environments(plans: dict[str, LayerPlan], fixtures) -> dict[str, dict[str, dict[str, str]]]:
    from .local import local_environment

    return {key: {fn.key: local_environment(p, fn, fixtures) for fn in p.functions} for key, p in plans.items()}


def run(plans: dict[str, LayerPlan], start: str, event_json: bytes, *, project, observer=None,
        endpoint: str | None = None, progress: Progress | None = None, timeout: float | None = None,
        deploy_first: bool = True) -> RunResult:
    """Deploy (unless ``deploy_first`` is False: run what is deployed) and execute ``start``."""
    from sim.fixtures import Fixtures

    from ..localstack_endpoint import endpoint_url
    from .local import NullObserver

    observer = observer or NullObserver()
    progress = progress or getattr(observer, "progress", None) or (lambda msg: None)
    ep = endpoint_url(endpoint)
    require_ready(ep)
    if timeout is None:
        timeout = sum(fn.timeout for p in plans.values() for fn in p.functions) + 60.0
    with Fixtures(stable_ports=True) as fixtures:
        envs = function_environments(plans, fixtures)
        try:
            if deploy_first:
                deploy(plans, project=project, endpoint=ep, environments=envs, progress=progress)
            else:
                missing = [k for k, p in plans.items() if read_deployment(project.state_dir, stack_name(p)) is None]
                if missing:
                    raise LocalStackError(f"not deployed to LocalStack: {', '.join(missing)}",
                                          hint="run without --no-deploy, or `dorc deploy ... --target localstack`")
        except DorcError:
            raise
        except Exception as exc:
            raise LocalStackError(f"deploying to LocalStack at {ep} failed: {type(exc).__name__}: {exc}",
                                  hint="fix the cause and run again; a re-run completes a half-done deployment") from None
        c = Clients(ep, plans[start].region)
        return execute(c, plans, start, event_json, observer, timeout)


# -- promotion backend: environments deployed to LocalStack (the rehearsal of preprod -> prod) ---

class LocalStackBackend:
    """``dorc.promote.Backend`` for environments deployed to one LocalStack endpoint."""

    name = "localstack"

    def __init__(self, project, endpoint: str | None = None, progress: Progress | None = None):
        from ..localstack_endpoint import endpoint_url

        self.project = project
        self.endpoint = endpoint_url(endpoint)
        self.progress = progress or (lambda m: None)
        require_ready(self.endpoint)

    def _clients(self, plan: LayerPlan) -> Clients:
        return Clients(self.endpoint, plan.region)

    def deployed(self, plan: LayerPlan):
        from ..promote import Deployed

        dep = read_deployment(self.project.state_dir, stack_name(plan))
        if dep is None or dep.endpoint != self.endpoint:
            return None
        try:  # LocalStack forgets everything on restart; the record alone proves nothing
            self._clients(plan).states.describe_state_machine(stateMachineArn=dep.state_machine_arn)
        except Exception:
            return None
        return Deployed(env=plan.env, packages=dep.packages, plan_settings=dep.plan_settings,
                        plan_digest=dep.plan_digest, deployed_at=dep.deployed_at,
                        state_machine_arn=dep.state_machine_arn)

    def last_run(self, deployed):
        """The newest execution of the deployed state machine started after that deployment."""
        from datetime import datetime, timezone

        from ..promote import LastRun

        c = Clients(self.endpoint, deployed.state_machine_arn.split(":")[3])
        since = datetime.strptime(deployed.deployed_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        runs = c.states.list_executions(stateMachineArn=deployed.state_machine_arn, maxResults=100)["executions"]
        runs = [r for r in runs if r["startDate"] >= since.replace(microsecond=0)]
        if not runs:
            return LastRun("none", None, f"no execution of {deployed.state_machine_arn.rsplit(':', 1)[-1]} "
                                         f"since it was deployed at {deployed.deployed_at}")
        last = max(runs, key=lambda r: r["startDate"])
        status = {"SUCCEEDED": "succeeded", "RUNNING": "running"}.get(last["status"], "failed")
        return LastRun(status, last["startDate"].isoformat(), f"execution {last['name']} ({last['status']})")

    def deploy(self, plan: LayerPlan, packages: dict[str, str] | None):
        from sim.fixtures import Fixtures

        with Fixtures(stable_ports=True) as fixtures:
            envs = function_environments({plan.key: plan}, fixtures)
            deploy({plan.key: plan}, project=self.project, endpoint=self.endpoint, environments=envs,
                   progress=self.progress, promoted={plan.key: packages} if packages else None)
        found = self.deployed(plan)
        assert found is not None
        return found

    def running_packages(self, plan: LayerPlan) -> dict[str, str]:
        """sha256 of the code each deployed function runs, as Lambda reports it."""
        c = self._clients(plan)
        return {fn.key: base64.b64decode(c.awslambda.get_function(FunctionName=fn.name)["Configuration"]["CodeSha256"]).hex()
                for fn in plan.functions}


def destroy(plan: LayerPlan, *, project, endpoint: str | None, progress: Progress) -> None:
    """Removes the layer's functions, state machine and rules (shared buckets and roles stay)."""
    from ..localstack_endpoint import endpoint_url

    ep = endpoint_url(endpoint)
    require_ready(ep)
    c = Clients(ep, plan.region)

    def delete(what: str, missing_code: str, *calls) -> None:
        """Already gone is fine: destroy must finish what an earlier destroy started."""
        try:
            for call in calls:
                call()
            progress(f"deleted {what}")
        except Exception as exc:
            if _error_code(exc) != missing_code:
                raise

    for t in plan.triggers:
        delete(f"rule {t.rule_name}", "ResourceNotFoundException",
               lambda: c.events.remove_targets(Rule=t.rule_name, Ids=["state-machine"]),
               lambda: c.events.delete_rule(Name=t.rule_name))
    delete(f"state machine {plan.state_machine_name}", "StateMachineDoesNotExist",
           lambda: c.states.delete_state_machine(stateMachineArn=plan.state_machine_arn))
    for fn in plan.functions:
        delete(f"function {fn.name}", "ResourceNotFoundException",
               lambda: c.awslambda.delete_function(FunctionName=fn.name))
    (deployments_dir(project.state_dir) / f"{stack_name(plan)}.json").unlink(missing_ok=True)
