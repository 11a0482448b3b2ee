"""The resource plan: every deployed fact of one layer in one environment, decided here once.

Names, limits, environment variables, roles, buckets, triggers and the state machine (ASL, as
data) come from this module and nowhere else. The local runner interprets the plan's ASL; the
LocalStack target deploys it with boto3; the Pulumi programs register it as resources. A fact
computed anywhere else is a place where the targets could start to disagree.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from dorc_sim.fixtures import placeholders
from pydantic import BaseModel, ConfigDict

from .errors import Problem
from .loader import LoadedPipeline
from .models import FunctionType, fill_template
from .permissions import (FUNCTION, MANAGED_POLICIES_MAX, PIPELINE, ROLE_POLICY_MAX_CHARS, Grant, declared_grants,
                          default_grants, fit_name, policy_document, policy_size, trigger_grants)
from .project import FixtureSpec
from .graph import chain, handover_key
from .validate import AWS_NAME_PART_RE

LOCAL_ACCOUNT_ID = "000000000000"  # LocalStack's and moto's default account
HANDLER = "lambda.handler"

# AWS limits, checked before anything is deployed.
LAMBDA_NAME_MAX = 64
STATE_MACHINE_NAME_MAX = 80
RULE_NAME_MAX = 64
ROLE_NAME_MAX = 64
ENV_VARS_MAX_BYTES = 4096
STATE_PAYLOAD_MAX_BYTES = 262_144  # Step Functions: 256 KiB per state input/output
DEFINITION_MAX_BYTES = 1_048_576  # Step Functions: a state machine's definition, as sent
STATE_NAME_MAX = 80  # Step Functions: a state's name
LOG_GROUP_NAME_MAX = 512
TAG_KEY_MAX, TAG_VALUE_MAX, TAGS_MAX = 128, 256, 50
EVENT_PATTERN_MAX = 4096  # EventBridge: a rule's event pattern
# CloudWatch Logs takes only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
# The characters AWS accepts in each deployed name (checked with ``fullmatch``).
LAMBDA_NAME_RE = re.compile(r"[a-zA-Z0-9_-]+")
RULE_NAME_RE = re.compile(r"[.\-_A-Za-z0-9]+")
ROLE_NAME_RE = re.compile(r"[A-Za-z0-9_+=,.@-]+")
LOG_GROUP_RE = re.compile(r"[.\-_/#A-Za-z0-9]+")
# Step Functions refuses whitespace, brackets, wildcards, these marks and control characters.
STATE_MACHINE_REFUSED_RE = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")
TAG_RE = re.compile(r"[\w\s.:/=+\-@]*")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")

# Errors the deployed state machine raises itself; the local runner raises the same names.
ERROR_CONTRACT = "dorc.ContractViolation"
ERROR_STATUS = "dorc.NonSuccessStatusCode"
ERROR_DATA_LIMIT = "States.DataLimitExceeded"
# Transient Lambda service errors, retried in AWS; they cannot happen in local runs.
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
    ephemeral_storage: int = 512  # MB of /tmp
    log_format: str = "Text"  # "Text" | "JSON"
    log_level: str | None = None  # JSON only; None: Lambda's default (INFO)
    log_group: str
    role_name: str  # the function's own role (``function_role_name``)
    role_arn: str
    # What the role may do (``function_policy``), each statement with its source, and the
    # managed policies attached to it: the defaults, the pipeline's and the function's grants.
    grants: list[Grant] = []
    managed_policies: list[str] = []
    description: str = ""
    # Set by ``dorc.package.package_plan``; a plan for local runs carries none (their task roots are built by dorc.taskroot).
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


def function_role_name(project: str, instance: str, layer: str, function: str, env: str) -> str:
    """A role per function (its grants are its own), within IAM's 64 characters."""
    return fit_name(f"{project}-{instance}-{layer}-{function}-{env}", ROLE_NAME_MAX)


def function_policy(fn: FunctionPlan) -> dict[str, Any]:
    """The IAM policy document of ``fn``'s role: every target puts exactly this on it."""
    return policy_document(fn.grants)


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
    values = {"project": settings.project, "env": env, "region": region, "account_id": account_id}
    pipeline_grants = declared_grants(p.definition.permissions, values, PIPELINE)
    entry_grants = _trigger_grants(p, holding, env)
    functions = []
    for i, fn in enumerate(chain(p.definition.functions)):
        name = lambda_name(p.instance, p.layer, fn.name, env)
        role = function_role_name(settings.project, p.instance, p.layer, fn.name, env)
        grants = [*default_grants(region=region, account_id=account_id, holding_bucket=holding,
                                  log_group=f"/aws/lambda/{name}"),
                  *(entry_grants if i == 0 else []),  # the trigger's event reaches the first function
                  *pipeline_grants, *declared_grants(fn.permissions, values, FUNCTION)]
        managed = [fill_template(a, values) for a in [*p.definition.all_managed_policies, *fn.managed_policies]]
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
                ephemeral_storage=fn.ephemeral_storage,
                log_format=fn.log_format,
                log_level=fn.log_level,
                log_group=f"/aws/lambda/{name}",
                role_name=role,
                role_arn=f"arn:aws:iam::{account_id}:role/{role}",
                grants=grants,
                managed_policies=list(dict.fromkeys(managed)),
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
        tags={**settings.tags, "dorc:project": settings.project, "dorc:pipeline": p.key, "dorc:env": env},
        local_environment=dict(settings.local_environment),
        local_fixtures=dict(settings.fixtures),
    )


def _trigger_grants(p: LoadedPipeline, holding: str, env: str) -> list[Grant]:
    """Read on each S3 trigger's bucket and prefix, unless it is the holding store (already granted)."""
    settings = p.config.project.settings
    out: list[Grant] = []
    for t in p.definition.triggers:
        if t.kind != "s3":
            continue
        bucket = settings.render(t.bucket_name, env) if "{" in t.bucket_name else t.bucket_name
        if bucket != holding:
            out += trigger_grants(t.name, bucket, t.key_prefix)
    return out


def _sm_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:states:{region}:{account}:stateMachine:{name}"


def state_name(subject: str, rest: str = "") -> str:
    """``subject + rest``, cut to Step Functions' 80 characters when too long: the subject is
    shortened and a digest of it added, so names stay unique and the same on every build."""
    name = f"{subject}{rest}"
    if len(name) <= STATE_NAME_MAX:
        return name
    tag = "~" + hashlib.sha256(subject.encode()).hexdigest()[:8]  # '~' is in no function name
    return f"{subject[:STATE_NAME_MAX - len(rest) - len(tag)]}{tag}{rest}"


def check_state(fn: str) -> str:
    return state_name(fn, " returned")


CONTRACT = "a handler must return a JSON object with a numeric 'statusCode' and a 'body'"


def contract_guard(key: str, on_success: str) -> dict[str, Any]:
    """The Choice after each function: the first broken rule picks the Fail state that names it."""
    return {
        "Type": "Choice",
        "Choices": [
            {"Not": {"Variable": "$.statusCode", "IsPresent": True}, "Next": state_name(key, " returned no statusCode")},
            {"Not": {"Variable": "$.statusCode", "IsNumeric": True}, "Next": state_name(key, " returned a non-numeric statusCode")},
            {"Not": {"Variable": "$.body", "IsPresent": True}, "Next": state_name(key, " returned no body")},
            {
                "And": [
                    {"Variable": "$.statusCode", "NumericGreaterThanEquals": 200},
                    {"Variable": "$.statusCode", "NumericLessThan": 300},
                ],
                "Next": on_success,
            },
        ],
        "Default": state_name(key, " failed"),
    }


def contract_failures(key: str) -> dict[str, dict[str, Any]]:
    """Fail states with the reason in the cause; a non-2xx one quotes the code (``CausePath``)."""
    return {
        state_name(key, " returned no statusCode"): {
            "Type": "Fail", "Error": ERROR_CONTRACT,
            "Cause": f"{key} returned no 'statusCode' (not a JSON object, or an object without it): {CONTRACT}",
        },
        state_name(key, " returned a non-numeric statusCode"): {
            "Type": "Fail", "Error": ERROR_CONTRACT,
            "Cause": f"{key} returned a 'statusCode' that is not a number (\"200\", a string, is not 200): {CONTRACT}",
        },
        state_name(key, " returned no body"): {
            "Type": "Fail", "Error": ERROR_CONTRACT,
            "Cause": f"{key} returned no 'body': {CONTRACT}",
        },
        state_name(key, " failed"): {
            # function names are [A-Za-z0-9_-]: nothing to escape in the intrinsic's string literal
            "Type": "Fail", "Error": ERROR_STATUS,
            "CausePath": f"States.Format('{key} returned statusCode {{}}, outside 200-299', $.statusCode)",
        },
    }


def handover_state(handover: Handover) -> str:
    return state_name(f"start {handover.instance}/{handover.layer}")


def build_asl(description: str, functions: list[FunctionPlan], handover: Handover | None) -> dict[str, Any]:
    """Each function is a Task whose output is the next one's input, guarded by a Choice that
    stops the execution on a broken contract or a non-2xx ``statusCode``."""
    states: dict[str, Any] = {}
    for i, fn in enumerate(functions):
        if i + 1 < len(functions):
            on_success = functions[i + 1].key
        elif handover is not None:
            on_success = handover_state(handover)
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
        states[handover_state(handover)] = {
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


def plan_problems(plan: LayerPlan, settings_file: str = "dorc.toml") -> list[Problem]:
    """AWS naming and size rules: a plan that breaks them would fail half way through a deploy.
    ``settings_file``: how messages name ``dorc.toml`` (project name, buckets, tags, logs)."""
    out: list[Problem] = []
    file = plan.main_file
    env_ok = bool(AWS_NAME_PART_RE.fullmatch(plan.env))
    if not env_ok:
        out.append(Problem(file, f"environment name {plan.env!r} cannot be part of AWS names (Lambda functions, state "
                                 "machine, rules, roles): use letters, digits, '-' and '_'; rename Pulumi."
                                 f"{plan.env}.yaml or pick another --env"))
    # instance and layer folder names are checked by dorc.validate; the characters of the
    # composed names only when their parts are sound, so one mistake is said once
    parts_ok = env_ok and all(AWS_NAME_PART_RE.fullmatch(x) for x in (plan.instance, plan.layer))
    for f in plan.functions:
        if len(f.name) > LAMBDA_NAME_MAX:
            out.append(Problem(file, f"deployed Lambda name {f.name!r} is {len(f.name)} characters; "
                                     f"AWS allows {LAMBDA_NAME_MAX}. Shorten the function, layer or instance name", f.key))
        elif parts_ok and not LAMBDA_NAME_RE.fullmatch(f.name):
            out.append(Problem(file, f"deployed Lambda name {f.name!r} has characters AWS refuses (letters, digits, "
                                     "'-', '_' only): rename the function", f.key))
        if parts_ok and not (len(f.log_group) <= LOG_GROUP_NAME_MAX and LOG_GROUP_RE.fullmatch(f.log_group)):
            out.append(Problem(file, f"log group name {f.log_group!r} is not one CloudWatch Logs accepts "
                                     "(at most 512 of letters, digits, '.', '-', '_', '/', '#'): rename the function", f.key))
        size = policy_size(function_policy(f))
        if size > ROLE_POLICY_MAX_CHARS:
            out.append(Problem(file, f"the role policy of {f.key} is {size:,} characters; IAM allows "
                                     f"{ROLE_POLICY_MAX_CHARS:,} per role. Merge statements (several actions or "
                                     "resources in one Permission, wildcards), or attach a managed policy instead "
                                     "(managed_policies=[...])", f.key))
        if len(f.managed_policies) > MANAGED_POLICIES_MAX:
            out.append(Problem(file, f"{len(f.managed_policies)} managed policies for {f.key} (pipeline and function "
                                     f"together); IAM attaches at most {MANAGED_POLICIES_MAX} to a role: merge some",
                               f.key))
        size = len(json.dumps(f.environment, separators=(",", ":")).encode())
        if size > ENV_VARS_MAX_BYTES:
            out.append(Problem(file, f"environment variables total {size} bytes; Lambda allows "
                                     f"{ENV_VARS_MAX_BYTES} (4 KB). Move large values to S3 or SSM", f.key))
    sm = plan.state_machine_name
    if len(sm) > STATE_MACHINE_NAME_MAX:
        out.append(Problem(file, f"state machine name {sm!r} is "
                                 f"{len(sm)} characters; AWS allows {STATE_MACHINE_NAME_MAX}. "
                                 "Shorten the layer or instance name"))
    elif parts_ok and STATE_MACHINE_REFUSED_RE.search(sm):
        out.append(Problem(file, f"state machine name {sm!r} has characters Step Functions refuses: rename the "
                                 "instance or layer folder (letters, digits, '-', '_')"))
    size = len(json.dumps(plan.asl).encode())
    if size > DEFINITION_MAX_BYTES:
        out.append(Problem(file, f"state machine definition is {size:,} bytes ({len(plan.functions)} functions); "
                                 f"Step Functions allows {DEFINITION_MAX_BYTES:,} (1 MB). Split the layer into layers "
                                 "that hand over to each other (NextFunction(name=..., type='Pipeline')), or shorten "
                                 "the descriptions"))
    for t in plan.triggers:
        if len(t.rule_name) > RULE_NAME_MAX:
            out.append(Problem(file, f"trigger rule name {t.rule_name!r} is longer than {RULE_NAME_MAX} characters; "
                                     "shorten the trigger, layer or instance name"))
        elif parts_ok and not RULE_NAME_RE.fullmatch(t.rule_name):
            out.append(Problem(file, f"trigger rule name {t.rule_name!r} has characters EventBridge refuses "
                                     "(letters, digits, '.', '-', '_' only): rename the trigger"))
        if t.kind == "s3":
            size = len(json.dumps(t.event_pattern))
            if size > EVENT_PATTERN_MAX:
                out.append(Problem(file, f"S3Trigger {t.key!r}: its event pattern is {size} characters; EventBridge "
                                         f"allows {EVENT_PATTERN_MAX}. Shorten key_prefix"))
            for bucket in t.event_pattern["detail"]["bucket"]["name"]:
                problem = bucket_name_problem(bucket)
                if problem:
                    out.append(Problem(file, f"S3Trigger {t.key!r}: bucket_name {bucket!r} {problem}; correct "
                                             "bucket_name"))
    if env_ok:
        for role in (plan.lambda_role, plan.states_role, plan.events_role):
            if len(role) > ROLE_NAME_MAX:
                out.append(Problem(settings_file, f"IAM role name {role!r} is longer than {ROLE_NAME_MAX} characters; "
                                                  "shorten [project] name"))
            elif not ROLE_NAME_RE.fullmatch(role):
                out.append(Problem(settings_file, f"IAM role name {role!r} has characters IAM refuses (letters, digits, "
                                                  "'+=,.@-_' only): rename [project] name"))
        for what, bucket, setting in (("holding store", plan.holding_bucket, "[buckets] holding"),
                                      ("artifact", plan.artifact_bucket, "[buckets] artifacts")):
            problem = bucket_name_problem(bucket)
            if problem:
                out.append(Problem(settings_file, f"{what} bucket name {bucket!r} {problem}; make [project] name "
                                                  f"lower-case letters, digits and '-' (e.g. {_bucket_like(plan.project)!r}), "
                                                  f"or set {setting}"))
    out += tag_problems(plan.tags, settings_file)
    if plan.log_retention_days not in LOG_RETENTION_DAYS:
        out.append(Problem(settings_file, f"[logs] retention_days = {plan.log_retention_days}: CloudWatch Logs accepts "
                                          f"only {', '.join(map(str, LOG_RETENTION_DAYS))}; pick one of them"))
    return out


def bucket_name_problem(name: str) -> str | None:
    """S3's rules for a general purpose bucket's name, or None when it keeps them."""
    if not 3 <= len(name) <= 63:
        return f"is {len(name)} characters; S3 takes 3-63"
    if not _BUCKET_RE.fullmatch(name):
        return ("is not a valid S3 bucket name: lower-case letters, digits, '.' and '-' only, starting and ending "
                "with a letter or digit")
    if ".." in name:
        return "has two adjacent periods, which S3 refuses"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "is formatted as an IP address, which S3 refuses"
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if name.startswith(prefix):
            return f"starts with {prefix!r}, which S3 reserves"
    for suffix in ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"):
        if name.endswith(suffix):
            return f"ends with {suffix!r}, which S3 reserves"
    return None


def _bucket_like(project: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", project.lower())).strip("-") or "my-data"


def tag_problems(tags: dict[str, str], settings_file: str) -> list[Problem]:
    """Tags go on every function, bucket, log group and state machine: AWS's tag rules."""
    out: list[Problem] = []
    if len(tags) > TAGS_MAX:
        out.append(Problem(settings_file, f"{len(tags)} tags (dorc adds dorc:pipeline and dorc:env to [tags]); AWS "
                                          f"allows {TAGS_MAX} per resource: remove some from [tags]"))
    for key, value in tags.items():
        if key.lower().startswith("aws:"):
            out.append(Problem(settings_file, f"[tags] {key!r}: keys starting with 'aws:' are reserved by AWS; rename it"))
        elif not 1 <= len(key) <= TAG_KEY_MAX or not TAG_RE.fullmatch(key):
            out.append(Problem(settings_file, f"[tags] key {key[:60]!r} is not one AWS accepts (1-{TAG_KEY_MAX} letters, "
                                              "digits, spaces and _.:/=+-@): rename it"))
        if len(value) > TAG_VALUE_MAX or not TAG_RE.fullmatch(value):
            out.append(Problem(settings_file, f"[tags] {key!r} = {value[:60]!r}: AWS takes values of at most "
                                              f"{TAG_VALUE_MAX} letters, digits, spaces and _.:/=+-@; shorten or "
                                              "correct it"))
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


def trust_policy(service: str) -> dict[str, Any]:
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
        # the defaults every function's own role gets (``build_plan``), for any function of the env
        "lambda": {"Version": "2012-10-17", "Statement": [g.statement() for g in default_grants(
            region=region, account_id=account_id, holding_bucket=holding, log_group=f"/aws/lambda/*-{env}")]},
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
                       service=services[kind], trust_policy=trust_policy(services[kind]), policy=policies[kind])
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
