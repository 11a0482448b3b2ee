"""The resource plan: every deployed fact of one layer in one environment, decided here once.

Names, limits, environment variables, roles, buckets, triggers and the state machine (ASL, as
data) come from this module and nowhere else. The local runner interprets the plan's ASL; the
LocalStack target deploys it with boto3; the Pulumi programs register it as resources. A fact
computed anywhere else is a place where the targets could start to disagree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dorc_sim.fixtures import placeholders
from pydantic import BaseModel, ConfigDict

from .errors import Problem
from .loader import LoadedPipeline
from .models import FunctionType
from .project import FixtureSpec
from .graph import chain, handover_key

LOCAL_ACCOUNT_ID = "000000000000"  # LocalStack's and moto's default account
HANDLER = "lambda.handler"

# AWS limits, checked before anything is deployed.
LAMBDA_NAME_MAX = 64
STATE_MACHINE_NAME_MAX = 80
RULE_NAME_MAX = 64
ROLE_NAME_MAX = 64
ENV_VARS_MAX_BYTES = 4096
STATE_PAYLOAD_MAX_BYTES = 262_144  # Step Functions: 256 KiB per state input/output

# Errors the deployed state machine raises itself; the local runner raises the same names.
ERROR_CONTRACT = "dorc.ContractViolation"
ERROR_STATUS = "dorc.NonSuccessStatusCode"
ERROR_DATA_LIMIT = "States.DataLimitExceeded"
# Transient Lambda service errors, retried in AWS; they cannot happen in-process.
TRANSIENT_LAMBDA_ERRORS = [
    "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class FunctionPlan(_Frozen):
    key: str  # the name in the definition, e.g. "function1"
    name: str  # the deployed Lambda name
    arn: str
    source_dir: str
    handler: str = HANDLER
    runtime: str
    memory: int
    timeout: int
    environment: dict[str, str]
    log_group: str
    role_name: str
    description: str = ""
    # Set by ``dorc.package.package_plan``; a plan for in-process runs needs no zip.
    package_path: str | None = None
    package_sha256: str | None = None


class TriggerPlan(_Frozen):
    key: str
    rule_name: str
    kind: str  # "cron" | "s3"
    schedule_expression: str | None = None
    event_pattern: dict[str, Any] | None = None


class Handover(_Frozen):
    instance: str
    layer: str
    state_machine_arn: str


class LayerPlan(_Frozen):
    project: str
    instance: str
    layer: str
    env: str
    region: str
    account_id: str
    description: str
    main_file: str
    functions: list[FunctionPlan]  # in run order
    state_machine_name: str
    state_machine_arn: str
    asl: dict[str, Any]
    handover: Handover | None
    triggers: list[TriggerPlan]
    holding_bucket: str
    artifact_bucket: str
    lambda_role: str
    states_role: str
    events_role: str
    log_retention_days: int
    tags: dict[str, str]
    # Environment variables replaced on this machine (local and LocalStack runs only), and the
    # fixtures (``[fixtures.<name>]``) their ``{sim.<name>}`` placeholders start. Machine-local:
    # neither is part of ``snapshot()`` or ``digest()``.
    local_environment: dict[str, str]
    local_fixtures: dict[str, FixtureSpec] = {}

    @property
    def key(self) -> str:
        return f"{self.instance}/{self.layer}"

    def function(self, key: str) -> FunctionPlan:
        for f in self.functions:
            if f.key == key or f.name == key:
                return f
        raise KeyError(key)

    def asl_json(self) -> str:
        return json.dumps(self.asl, indent=2, sort_keys=False)

    def snapshot(self) -> dict[str, Any]:
        """Every deployed setting, comparable across machines: no local paths, no packages, and
        environment values only as hashes (they may hold secrets; records must not)."""
        doc = self.model_dump(exclude={"main_file", "local_environment", "local_fixtures"})
        for f in doc["functions"]:
            for key in ("source_dir", "package_path", "package_sha256"):
                f.pop(key)
            f["environment"] = {k: hashlib.sha256(str(v).encode()).hexdigest()[:16]
                                for k, v in f["environment"].items()}
        return doc

    def packages(self) -> dict[str, str | None]:
        return {f.key: f.package_sha256 for f in self.functions}

    def with_packages(self, packages: dict[str, str]) -> "LayerPlan":
        """This plan deploying packages that already exist (promotion): digests, no zips."""
        return self.model_copy(update={"functions": [
            f.model_copy(update={"package_sha256": packages[f.key], "package_path": None}) for f in self.functions]})

    def digest(self) -> str:
        """sha256 of the settings and the packages: equal digests, identical deployments."""
        doc = {"settings": self.snapshot(), "packages": self.packages()}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def lambda_name(instance: str, layer: str, function: str, env: str) -> str:
    return f"{instance}-{layer}-{function}-{env}"


def state_machine_name(instance: str, layer: str, env: str) -> str:
    return f"{instance}-{layer}-{env}"


def role_names(project: str, env: str) -> dict[str, str]:
    """One role per service per environment, owned by the ``infra-<env>`` stack."""
    return {
        "lambda": f"{project}-lambda-{env}",
        "states": f"{project}-states-{env}",
        "events": f"{project}-events-{env}",
    }


def build_plan(p: LoadedPipeline, *, account_id: str = LOCAL_ACCOUNT_ID) -> LayerPlan:
    """Assumes ``check_definition`` passed; ``plan_problems`` checks the AWS limits."""
    settings = p.config.project.settings
    env, region = p.config.env, p.config.region
    roles = role_names(settings.project, env)
    holding = p.config.holding_bucket
    base_env = {
        "DORC_PROJECT": settings.project,
        "DORC_ENV": env,
        "DORC_PIPELINE": p.key,
        "HOLDING_BUCKET": holding,
    }
    functions = []
    for fn in chain(p.definition.functions):
        name = lambda_name(p.instance, p.layer, fn.name, env)
        functions.append(
            FunctionPlan(
                key=fn.name,
                name=name,
                arn=f"arn:aws:lambda:{region}:{account_id}:function:{name}",
                source_dir=str(p.function_dir(fn.name)),
                runtime=fn.runtime,
                memory=fn.memory,
                timeout=fn.timeout,
                environment={**base_env, **fn.environment},
                log_group=f"/aws/lambda/{name}",
                role_name=roles["lambda"],
                description=fn.description,
            )
        )
    sm_name = state_machine_name(p.instance, p.layer, env)
    handover = None
    last = chain(p.definition.functions)[-1]
    if last.next is not None and last.next.type == FunctionType.Pipeline.value:
        inst, layer = handover_key(p.instance, last.next.name).split("/")
        handover = Handover(
            instance=inst, layer=layer,
            state_machine_arn=_sm_arn(region, account_id, state_machine_name(inst, layer, env)),
        )
    triggers = []
    for t in p.definition.triggers:
        rule = f"{p.instance}-{p.layer}-{t.name}-{env}"
        if t.kind == "cron":
            triggers.append(TriggerPlan(key=t.name, rule_name=rule, kind="cron", schedule_expression=f"cron({t.cron})"))
        else:
            bucket = settings.render(t.bucket_name, env) if "{" in t.bucket_name else t.bucket_name
            detail: dict[str, Any] = {"bucket": {"name": [bucket]}}
            if t.key_prefix:
                detail["object"] = {"key": [{"prefix": t.key_prefix}]}
            triggers.append(TriggerPlan(
                key=t.name, rule_name=rule, kind="s3",
                event_pattern={"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail},
            ))
    return LayerPlan(
        project=settings.project,
        instance=p.instance,
        layer=p.layer,
        env=env,
        region=region,
        account_id=account_id,
        description=p.definition.description,
        main_file=str(p.main_file),
        functions=functions,
        state_machine_name=sm_name,
        state_machine_arn=_sm_arn(region, account_id, sm_name),
        asl=build_asl(p.definition.description, functions, handover),
        handover=handover,
        triggers=triggers,
        holding_bucket=holding,
        artifact_bucket=settings.render(settings.artifact_bucket, env),
        lambda_role=roles["lambda"],
        states_role=roles["states"],
        events_role=roles["events"],
        log_retention_days=settings.log_retention_days,
        tags={**settings.tags, "dorc:pipeline": p.key, "dorc:env": env},
        local_environment=dict(settings.local_environment),
        local_fixtures=dict(settings.fixtures),
    )


def _sm_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:states:{region}:{account}:stateMachine:{name}"


def check_state(fn: str) -> str:
    return f"{fn} returned"


CONTRACT = "a handler must return a JSON object with a numeric 'statusCode' and a 'body'"


def contract_guard(key: str, on_success: str) -> dict[str, Any]:
    """The Choice after each function: the first broken rule picks the Fail state that names it."""
    return {
        "Type": "Choice",
        "Choices": [
            {"Not": {"Variable": "$.statusCode", "IsPresent": True}, "Next": f"{key} returned no statusCode"},
            {"Not": {"Variable": "$.statusCode", "IsNumeric": True}, "Next": f"{key} returned a non-numeric statusCode"},
            {"Not": {"Variable": "$.body", "IsPresent": True}, "Next": f"{key} returned no body"},
            {
                "And": [
                    {"Variable": "$.statusCode", "NumericGreaterThanEquals": 200},
                    {"Variable": "$.statusCode", "NumericLessThan": 300},
                ],
                "Next": on_success,
            },
        ],
        "Default": f"{key} failed",
    }


def contract_failures(key: str) -> dict[str, dict[str, Any]]:
    """Fail states with the reason in the cause; a non-2xx one quotes the code (``CausePath``)."""
    return {
        f"{key} returned no statusCode": {
            "Type": "Fail", "Error": ERROR_CONTRACT,
            "Cause": f"{key} returned no 'statusCode' (not a JSON object, or an object without it): {CONTRACT}",
        },
        f"{key} returned a non-numeric statusCode": {
            "Type": "Fail", "Error": ERROR_CONTRACT,
            "Cause": f"{key} returned a 'statusCode' that is not a number (\"200\", a string, is not 200): {CONTRACT}",
        },
        f"{key} returned no body": {
            "Type": "Fail", "Error": ERROR_CONTRACT,
            "Cause": f"{key} returned no 'body': {CONTRACT}",
        },
        f"{key} failed": {
            # function names are [A-Za-z0-9_-]: nothing to escape in the intrinsic's string literal
            "Type": "Fail", "Error": ERROR_STATUS,
            "CausePath": f"States.Format('{key} returned statusCode {{}}, outside 200-299', $.statusCode)",
        },
    }


def build_asl(description: str, functions: list[FunctionPlan], handover: Handover | None) -> dict[str, Any]:
    """Each function is a Task whose output is the next one's input, guarded by a Choice that
    stops the execution on a broken contract or a non-2xx ``statusCode``."""
    states: dict[str, Any] = {}
    for i, fn in enumerate(functions):
        if i + 1 < len(functions):
            on_success = functions[i + 1].key
        elif handover is not None:
            on_success = f"start {handover.instance}/{handover.layer}"
        else:
            on_success = "succeeded"
        states[fn.key] = {
            "Type": "Task",
            "Comment": fn.description or f"Lambda {fn.name}",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": fn.arn, "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "Retry": [{"ErrorEquals": TRANSIENT_LAMBDA_ERRORS, "IntervalSeconds": 1, "MaxAttempts": 3,
                       "BackoffRate": 2.0}],
            "Next": check_state(fn.key),
        }
        states[check_state(fn.key)] = contract_guard(fn.key, on_success)
        states.update(contract_failures(fn.key))
    if handover is not None:
        states[f"start {handover.instance}/{handover.layer}"] = {
            "Type": "Task",
            "Comment": f"hand over to the {handover.instance}/{handover.layer} pipeline",
            "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": handover.state_machine_arn, "Input.$": "$"},
            "OutputPath": "$.Output",
            "End": True,
        }
    else:
        states["succeeded"] = {"Type": "Succeed"}
    return {"Comment": description, "StartAt": functions[0].key, "States": states}


def plan_problems(plan: LayerPlan) -> list[Problem]:
    """AWS naming and size rules: a plan that breaks them would fail half way through a deploy."""
    out: list[Problem] = []
    file = plan.main_file
    for f in plan.functions:
        if len(f.name) > LAMBDA_NAME_MAX:
            out.append(Problem(file, f"deployed Lambda name {f.name!r} is {len(f.name)} characters; "
                                     f"AWS allows {LAMBDA_NAME_MAX}. Shorten the function, layer or instance name", f.key))
        size = len(json.dumps(f.environment, separators=(",", ":")).encode())
        if size > ENV_VARS_MAX_BYTES:
            out.append(Problem(file, f"environment variables total {size} bytes; Lambda allows "
                                     f"{ENV_VARS_MAX_BYTES} (4 KB). Move large values to S3 or SSM", f.key))
    if len(plan.state_machine_name) > STATE_MACHINE_NAME_MAX:
        out.append(Problem(file, f"state machine name {plan.state_machine_name!r} is "
                                 f"{len(plan.state_machine_name)} characters; AWS allows {STATE_MACHINE_NAME_MAX}"))
    for t in plan.triggers:
        if len(t.rule_name) > RULE_NAME_MAX:
            out.append(Problem(file, f"trigger rule name {t.rule_name!r} is longer than {RULE_NAME_MAX} characters"))
    for role in (plan.lambda_role, plan.states_role, plan.events_role):
        if len(role) > ROLE_NAME_MAX:
            out.append(Problem(file, f"IAM role name {role!r} is longer than {ROLE_NAME_MAX} characters; "
                                     "shorten [project] name in dorc.toml"))
    return out


def fixture_problems(plan: LayerPlan, settings_file: str) -> list[Problem]:
    """``[local.environment]`` values naming a fixture that ``[fixtures.<name>]`` does not declare.

    Project-wide settings, so every layer reports them (as it does a role name that is too long):
    a local or LocalStack run would stop at the first function that declares the variable."""
    declared = sorted(plan.local_fixtures)
    out: list[Problem] = []
    for var, value in plan.local_environment.items():
        for name in placeholders(value):
            if name not in plan.local_fixtures:
                out.append(Problem(settings_file, (
                    f"[local.environment] {var} = {value!r} names fixture {{sim.{name}}}, which is not declared "
                    f"(declared: {', '.join(declared) or 'none'}); fix: declare it as [fixtures.{name}] with module "
                    "and factory, or correct the name")))
    return out


# -- the shared stacks: infra-<env> (roles, holding store, logs) and universal (artifacts) -------

class RolePlan(_Frozen):
    name: str
    arn: str
    service: str  # who may assume it, e.g. "lambda.amazonaws.com"
    trust_policy: dict[str, Any]
    policy: dict[str, Any]


class InfraPlan(_Frozen):
    project: str
    env: str
    region: str
    account_id: str
    holding_bucket: str
    roles: dict[str, RolePlan]  # "lambda" | "states" | "events"
    log_retention_days: int
    tags: dict[str, str]


class UniversalPlan(_Frozen):
    project: str
    region: str
    artifact_bucket: str
    tags: dict[str, str]


def _trust(service: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


def build_infra_plan(settings, env: str, region: str | None = None, *, account_id: str = LOCAL_ACCOUNT_ID,
                     holding_bucket: str | None = None) -> InfraPlan:
    """Least privilege per service, scoped to this environment's names."""
    region = region or settings.region
    names = role_names(settings.project, env)
    holding = holding_bucket or settings.render(settings.holding_bucket, env)
    fn_arns = f"arn:aws:lambda:{region}:{account_id}:function:*-{env}"
    sm_arns = f"arn:aws:states:{region}:{account_id}:stateMachine:*-{env}"
    exec_arns = f"arn:aws:states:{region}:{account_id}:execution:*-{env}:*"
    policies = {
        "lambda": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": f"arn:aws:logs:{region}:{account_id}:log-group:/aws/lambda/*-{env}:*"},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
             "Resource": f"arn:aws:s3:::{holding}/*"},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{holding}"},
        ]},
        "states": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [fn_arns, f"{fn_arns}:*"]},
            {"Effect": "Allow", "Action": ["states:StartExecution"], "Resource": sm_arns},
            {"Effect": "Allow", "Action": ["states:DescribeExecution", "states:StopExecution"], "Resource": exec_arns},
            {"Effect": "Allow", "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
             "Resource": f"arn:aws:events:{region}:{account_id}:rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"},
        ]},
        "events": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["states:StartExecution"], "Resource": sm_arns}]},
    }
    services = {"lambda": "lambda.amazonaws.com", "states": "states.amazonaws.com", "events": "events.amazonaws.com"}
    roles = {
        kind: RolePlan(name=names[kind], arn=f"arn:aws:iam::{account_id}:role/{names[kind]}",
                       service=services[kind], trust_policy=_trust(services[kind]), policy=policies[kind])
        for kind in ("lambda", "states", "events")
    }
    return InfraPlan(project=settings.project, env=env, region=region, account_id=account_id,
                     holding_bucket=holding, roles=roles, log_retention_days=settings.log_retention_days,
                     tags={**settings.tags, "dorc:env": env})


def build_universal_plan(settings, region: str | None = None) -> UniversalPlan:
    return UniversalPlan(project=settings.project, region=region or settings.region,
                         artifact_bucket=settings.render(settings.artifact_bucket, "shared"),
                         tags=dict(settings.tags))


def artifact_key(fn: FunctionPlan) -> str:
    """Packages are stored by content: the same digest is the same object in every environment."""
    if not fn.package_sha256:
        raise ValueError(f"{fn.key} has not been packaged")
    return f"packages/{fn.package_sha256}.zip"


# -- Pulumi stacks: one place for the names, importable without Pulumi (deploy, promote, plan) ---

UNIVERSAL_STACK = "universal"


SHARED_STACKS = ("universal", "infra")
"""Names that mean one of the shared stacks, never a pipeline instance."""


def stack_name(instance: str, layer: str | None, env: str | None) -> str:
    """``universal``, ``infra-<env>`` or ``<instance>-<layer>-<env>``."""
    if instance == "universal":
        return UNIVERSAL_STACK
    if instance == "infra":
        return f"infra-{env}"
    return f"{instance}-{layer}-{env}"


def pulumi_project_name(project: str, instance: str, layer: str | None = None) -> str:
    """``<project>-universal``, ``<project>-infra`` or ``<project>-<instance>-<layer>``."""
    if instance in SHARED_STACKS:
        return f"{project}-{instance}"
    return f"{project}-{instance}-{layer}"


def stack_reference_name(org: str, pulumi_project: str, stack: str) -> str:
    return f"{org}/{pulumi_project}/{stack}"
