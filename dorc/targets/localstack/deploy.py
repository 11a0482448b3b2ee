"""Deploying a plan with boto3, to LocalStack (or any endpoint that speaks the AWS APIs).

A deployment is a sequence of idempotent create-or-update stages: shared resources (buckets,
roles) -> packages (content-addressed, uploaded once) -> functions -> state machines ->
triggers -> a record of what now runs. A re-run after a failure half way repairs it, and an
unchanged package is not uploaded again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import LocalStackRunError
from ...observer import Progress
from ...package import code_sha256
from ..deployments import deployment_stamp
from ...plan import (InfraPlan, LayerPlan, UniversalPlan, artifact_key, build_infra_plan,
                    build_universal_plan)
from ...plan import stack_name as plan_stack_name
from .clients import TARGET, Clients, error_code

# -- deployment -------------------------------------------------------------------------------

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
            if error_code(exc) != "EntityAlreadyExists":
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
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
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
            raise LocalStackRunError(f"package {fn.package_sha256[:12]} of {fn.key} is not in s3://{artifact_bucket}",
                                  hint="promote from an environment that was deployed to this endpoint")
        c.s3.upload_file(fn.package_path, artifact_bucket, key)
        progress(f"uploaded {fn.key} package {fn.package_sha256[:12]} ({Path(fn.package_path).stat().st_size:,} bytes)")


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
            if error_code(exc) != "ResourceNotFoundException":
                raise
            current = None
        if current is None:
            c.awslambda.create_function(FunctionName=fn.name, Code={"S3Bucket": artifact_bucket, "S3Key": artifact_key(fn)},
                                        Tags=plan.tags, **config)
            progress(f"created function {fn.name}")
        else:
            if current.get("CodeSha256") != code_sha256(fn.package_sha256):
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
            raise LocalStackRunError(
                f"LocalStack could not start function {name}: {reason}",
                hint="run LocalStack with dorc's Lambda executor: `dorc localstack start` (host mode), or a "
                     "LocalStack that can run Lambda containers (docker-compose.localstack.yml)",
            )
        if state == "Active" and update in (None, "Successful"):
            return
        if time.monotonic() > deadline:
            raise LocalStackRunError(f"function {name} is still {state}/{update} after {timeout:.0f} s")
        time.sleep(0.1)


def _ensure_log_group(c: Clients, name: str, retention: int) -> None:
    try:
        c.logs.create_log_group(logGroupName=name)
    except Exception as exc:
        if error_code(exc) != "ResourceAlreadyExistsException":
            raise
    c.logs.put_retention_policy(logGroupName=name, retentionInDays=retention)


def deploy_state_machine(c: Clients, plan: LayerPlan, infra: InfraPlan, progress: Progress) -> str:
    role_arn = infra.roles["states"].arn
    definition = json.dumps(plan.asl)
    try:
        current = c.states.describe_state_machine(stateMachineArn=plan.state_machine_arn)
    except Exception as exc:
        if error_code(exc) != "StateMachineDoesNotExist":
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


def deployment_file(state_dir: Path, stack: str) -> Path:
    return deployments_dir(state_dir) / f"{stack}.json"


def read_deployment(state_dir: Path, stack: str) -> Deployment | None:
    path = deployment_file(state_dir, stack)
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
    from ...package import package_plan

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
            plan = plan.with_packages(promoted[key])
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
                         deployed_at=deployment_stamp(),
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
