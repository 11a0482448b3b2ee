"""The deployment as a list of API calls, worked out from the plans and what the endpoint holds.

Pure: no client, no clock, no file. ``plan_deployment`` compares each resource a deployment needs
with the ``RemoteState`` and emits a call only for what is missing (a create) or differs (an
update), so an unchanged package is not uploaded and an unchanged function is not touched. The
executor makes the calls; a dry run only shows them. Keeping the two apart is what lets the
decisions be tested against recorded endpoints and previewed without changing anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ...errors import DorcError, LocalStackRunError
from ...package import code_sha256, hex_digest
from ...plan import FunctionPlan, InfraPlan, LayerPlan, UniversalPlan, artifact_key, function_policy, trust_policy
from .remote import POLICY_NAME, RemoteState


@dataclass(frozen=True)
class APICall:
    """One call to make: ``service``/``operation`` as AWS names them (``lambda``,
    ``CreateFunction``), its parameters, a one-line ``description`` for people (never an
    environment variable's value: they may be secrets) and the ``done`` message to report once
    it succeeded. ``params`` stay out of ``repr`` for the same reason."""

    service: str
    operation: str
    params: dict[str, Any] = field(repr=False)
    description: str
    done: str = ""
    # error codes that mean "already done" (another deploy got there between read and write)
    already: tuple[str, ...] = ()

    def line(self) -> str:
        return f"{self.service}.{self.operation} {self.description}"


@dataclass(frozen=True)
class LocalFile:
    """A request body read from a file when the call is made (``s3.PutObject`` of a package)."""

    path: str


def plan_deployment(plans: dict[str, LayerPlan], universal: UniversalPlan, infra: InfraPlan, remote: RemoteState,
                    environments: dict[str, dict[str, dict[str, str]]],
                    promoted: dict[str, dict[str, str]] | None = None) -> list[APICall]:
    """The calls that make the endpoint hold ``plans``: shared resources (buckets, roles), then
    each layer, hand-over targets first: packages, log groups, functions, state machine, rules.
    ``environments``: layer key -> function key -> variables as deployed. ``promoted``: layer
    key -> function key -> sha256 of packages that must already be in the artifact bucket; every
    other function must have been packaged."""
    refuse_foreign(plans, remote)
    calls = _shared(universal, infra, remote)
    uploaded = set(remote.artifacts)
    for key in children_first(plans):
        plan = plans[key]
        if promoted and key in promoted:
            plan = plan.with_packages(promoted[key])
        calls += _packages(plan, universal.artifact_bucket, uploaded)
        calls += _log_groups(plan, remote)
        calls += _function_roles(plan, remote)
        calls += _functions(plan, infra, universal.artifact_bucket, remote, environments[key])
        calls += _state_machine(plan, infra, remote)
        calls += _rules(plan, infra, remote)
    return calls


def children_first(plans: dict[str, LayerPlan]) -> list[str]:
    """Layer keys, each after the layer it hands over to: a state machine that starts another
    must find it deployed."""
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


def owner(tags: dict[str, str] | None, environment: dict[str, Any] | None = None) -> str | None:
    """The project a deployed resource belongs to: its ``dorc:project`` tag, else (a function
    deployed before dorc tagged it) its ``DORC_PROJECT`` variable; None when neither says."""
    return (tags or {}).get("dorc:project") or ((environment or {}).get("Variables") or {}).get("DORC_PROJECT")


def refuse_foreign(plans: dict[str, LayerPlan], remote: RemoteState) -> None:
    """Names carry no project, so two projects deploying the same instance and layer to one
    endpoint get the same names: updating them would take over the other project's pipeline."""
    foreign = []
    for plan in plans.values():
        for fn in plan.functions:
            have = remote.functions.get(fn.name)
            who = owner(have.get("Tags"), have.get("Environment")) if have else None
            if who and who != plan.project:
                foreign.append((f"function {fn.name}", who, plan))
        sm = remote.state_machines.get(plan.state_machine_arn)
        who = owner(sm.get("tags")) if sm else None
        if who and who != plan.project:
            foreign.append((f"state machine {plan.state_machine_name}", who, plan))
    if not foreign:
        return
    plan = foreign[0][2]
    lines = "\n".join(f"  - {what} belongs to project {who!r} (tag dorc:project), not {p.project!r}"
                      for what, who, p in foreign)
    raise DorcError(  # exit 2: nothing was changed, nothing ran
        f"refused to deploy {plan.key} ({plan.env}): the endpoint holds resources of the same names that "
        f"another project deployed:\n{lines}",
        hint=f"deployed names carry no project: deploy {plan.key} to another endpoint or account, rename the "
             f"instance or layer, or remove the other project's deployment first (from project {foreign[0][1]!r}: "
             f"dorc destroy {plan.instance} {plan.layer} --env {plan.env} --target localstack)")


# -- shared: the universal and infra-<env> stacks' resources ----------------------------------

def _shared(universal: UniversalPlan, infra: InfraPlan, remote: RemoteState) -> list[APICall]:
    calls: list[APICall] = []
    for bucket in dict.fromkeys((universal.artifact_bucket, infra.holding_bucket)):
        if bucket not in remote.buckets:
            where = {} if infra.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": infra.region}}
            calls.append(APICall("s3", "CreateBucket", {"Bucket": bucket, **where}, f"{bucket} ({infra.region})",
                                 f"created bucket {bucket}", ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")))
    # as the infra stack does: S3Triggers on the holding store are EventBridge rules
    if not remote.buckets.get(infra.holding_bucket, {}).get("eventbridge"):
        calls.append(APICall("s3", "PutBucketNotificationConfiguration",
                             {"Bucket": infra.holding_bucket,
                              "NotificationConfiguration": {"EventBridgeConfiguration": {}}},
                             f"{infra.holding_bucket} (EventBridge notifications on)",
                             f"sent {infra.holding_bucket}'s events to EventBridge"))
    for role in infra.roles.values():
        have = remote.roles.get(role.name)
        if have is None:
            calls.append(APICall("iam", "CreateRole",
                                 {"RoleName": role.name, "AssumeRolePolicyDocument": json.dumps(role.trust_policy),
                                  "Tags": [{"Key": k, "Value": v} for k, v in infra.tags.items()]},
                                 f"{role.name} (assumed by {role.service})", f"created role {role.name}"))
        elif have.get("trust_policy") != role.trust_policy:
            calls.append(APICall("iam", "UpdateAssumeRolePolicy",
                                 {"RoleName": role.name, "PolicyDocument": json.dumps(role.trust_policy)},
                                 f"{role.name} (assumed by {role.service})", f"updated the trust policy of {role.name}"))
        if have is None or have.get("policy") != role.policy:
            calls.append(APICall("iam", "PutRolePolicy",
                                 {"RoleName": role.name, "PolicyName": POLICY_NAME,
                                  "PolicyDocument": json.dumps(role.policy)},
                                 f"{role.name} policy {POLICY_NAME} ({len(role.policy['Statement'])} statement(s))",
                                 f"put policy {POLICY_NAME} on role {role.name}"))
    return calls


# -- one layer --------------------------------------------------------------------------------

def _packages(plan: LayerPlan, bucket: str, uploaded: set[str]) -> list[APICall]:
    """Content-addressed: a digest already in the bucket (or uploaded by an earlier call) is
    not uploaded again."""
    calls = []
    for fn in plan.functions:
        key = artifact_key(fn)
        if key in uploaded:
            continue
        if fn.package_path is None:  # promoted: the package must already be in the artifact store
            raise LocalStackRunError(f"package {fn.package_sha256[:12]} of {fn.key} is not in s3://{bucket}",
                                     hint="promote from an environment that was deployed to this endpoint")
        uploaded.add(key)
        calls.append(APICall("s3", "PutObject", {"Bucket": bucket, "Key": key, "Body": LocalFile(fn.package_path)},
                             f"s3://{bucket}/{key} ({plan.key} {fn.key} package)",
                             f"uploaded {fn.key} package {fn.package_sha256[:12]}"))
    return calls


def _log_groups(plan: LayerPlan, remote: RemoteState) -> list[APICall]:
    calls = []
    for fn in plan.functions:
        name, days = fn.log_group, plan.log_retention_days
        if name not in remote.log_groups:
            calls.append(APICall("logs", "CreateLogGroup", {"logGroupName": name}, name,
                                 f"created log group {name}", ("ResourceAlreadyExistsException",)))
        if remote.log_groups.get(name) != days:
            calls.append(APICall("logs", "PutRetentionPolicy", {"logGroupName": name, "retentionInDays": days},
                                 f"{name} ({days} days)", f"set the retention of {name} to {days} days"))
    return calls


LAMBDA_TRUST = trust_policy("lambda.amazonaws.com")


def _function_roles(plan: LayerPlan, remote: RemoteState) -> list[APICall]:
    """Each function's own role: exactly ``function_policy(fn)`` inline and ``fn.managed_policies``
    attached (a policy attached earlier and no longer planned is detached)."""
    calls: list[APICall] = []
    for fn in plan.functions:
        name, have = fn.role_name, remote.roles.get(fn.role_name)
        policy = function_policy(fn)
        if have is None:
            calls.append(APICall("iam", "CreateRole",
                                 {"RoleName": name, "AssumeRolePolicyDocument": json.dumps(LAMBDA_TRUST),
                                  "Description": f"dorc: what {plan.key} {fn.key} may do ({plan.env})",
                                  "Tags": [{"Key": k, "Value": v} for k, v in plan.tags.items()]},
                                 f"{name} (role of {fn.name})", f"created role {name}"))
        elif have.get("trust_policy") != LAMBDA_TRUST:
            calls.append(APICall("iam", "UpdateAssumeRolePolicy",
                                 {"RoleName": name, "PolicyDocument": json.dumps(LAMBDA_TRUST)},
                                 f"{name} (assumed by lambda.amazonaws.com)", f"updated the trust policy of {name}"))
        if have is None or have.get("policy") != policy:
            calls.append(APICall("iam", "PutRolePolicy",
                                 {"RoleName": name, "PolicyName": POLICY_NAME, "PolicyDocument": json.dumps(policy)},
                                 f"{name} policy {POLICY_NAME} ({len(policy['Statement'])} statement(s))",
                                 f"put policy {POLICY_NAME} on role {name}"))
        attached = (have or {}).get("managed_policies") or []
        for arn in fn.managed_policies:
            if arn not in attached:
                calls.append(APICall("iam", "AttachRolePolicy", {"RoleName": name, "PolicyArn": arn},
                                     f"{name} ← {arn}", f"attached {arn} to {name}"))
        for arn in attached:
            if arn not in fn.managed_policies:
                calls.append(APICall("iam", "DetachRolePolicy", {"RoleName": name, "PolicyArn": arn},
                                     f"{name} ✕ {arn} (no longer declared)", f"detached {arn} from {name}",
                                     ("NoSuchEntity",)))
    return calls


def function_config(fn: FunctionPlan, role_arn: str, environment: dict[str, str]) -> dict[str, Any]:
    """The configuration a function is created or updated with (code aside)."""
    return {"Role": role_arn, "Handler": fn.handler, "Runtime": fn.runtime, "Timeout": fn.timeout,
            "MemorySize": fn.memory, "Description": fn.description[:256],
            "Environment": {"Variables": environment},
            "EphemeralStorage": {"Size": fn.ephemeral_storage}, "LoggingConfig": logging_config(fn)}


def logging_config(fn: FunctionPlan) -> dict[str, str]:
    """Lambda's ``LoggingConfig``: levels only with the JSON format (Lambda refuses them with
    Text); the system level is Lambda's default, INFO. The log group stays Lambda's default."""
    if fn.log_format != "JSON":
        return {"LogFormat": "Text"}
    return {"LogFormat": "JSON", "ApplicationLogLevel": fn.log_level or "INFO", "SystemLogLevel": "INFO"}


def _functions(plan: LayerPlan, infra: InfraPlan, bucket: str, remote: RemoteState,
               environments: dict[str, str]) -> list[APICall]:
    calls = []
    for fn in plan.functions:
        config = function_config(fn, fn.role_arn, environments[fn.key])
        code = f"s3://{bucket}/{artifact_key(fn)}"
        current = remote.functions.get(fn.name)
        if current is None:
            names = ", ".join(environments[fn.key]) or "none"
            calls.append(APICall("lambda", "CreateFunction",
                                 {"FunctionName": fn.name, "Code": {"S3Bucket": bucket, "S3Key": artifact_key(fn)},
                                  "Tags": plan.tags, **config},
                                 f"{fn.name} ({fn.runtime}, {fn.memory} MB, {fn.timeout} s, code {code}, "
                                 f"environment: {names})", f"created function {fn.name}"))
            continue
        if current.get("CodeSha256") != code_sha256(fn.package_sha256):
            was = _short_digest(current.get("CodeSha256"))
            calls.append(APICall("lambda", "UpdateFunctionCode",
                                 {"FunctionName": fn.name, "S3Bucket": bucket, "S3Key": artifact_key(fn)},
                                 f"{fn.name} (code {code}, was {was})", f"updated code of {fn.name}"))
        changes = config_changes(current, config)
        if changes:
            calls.append(APICall("lambda", "UpdateFunctionConfiguration", {"FunctionName": fn.name, **config},
                                 f"{fn.name} ({'; '.join(changes)})", f"updated configuration of {fn.name}"))
    return calls


def _short_digest(code_sha: str | None) -> str:
    if not code_sha:
        return "unknown"
    try:
        return hex_digest(code_sha)[:12] + "…"
    except ValueError:
        return code_sha


def _said_logging(config: dict[str, str]) -> str:
    """``Text``, ``JSON WARN``: a logging configuration in a change line."""
    return " ".join(config[k] for k in ("LogFormat", "ApplicationLogLevel") if config.get(k)) or "unset"


def config_changes(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between a function's configuration and the wanted one, said for people:
    environment variables by name only."""
    out = []
    units = {"Timeout": " s", "MemorySize": " MB"}
    labels = {"Role": "role", "Handler": "handler", "Runtime": "runtime", "Timeout": "timeout",
              "MemorySize": "memory"}
    for key, value in wanted.items():
        have = current.get(key)
        if key == "EphemeralStorage":
            size = (have or {}).get("Size", 512)  # absent: Lambda's default
            if size != value["Size"]:
                out.append(f"ephemeral storage {size} MB → {value['Size']} MB")
        elif key == "LoggingConfig":
            # the endpoint also reports the log group (Lambda's default, not set by dorc)
            have = {k: v for k, v in (have or {"LogFormat": "Text"}).items() if k in value or k.endswith("LogLevel")}
            if have != value:
                out.append(f"logging {_said_logging(have)} → {_said_logging(value)}")
        elif key == "Environment":
            have, value = (have or {}).get("Variables", {}), value["Variables"]
            diff = ([f"{k} added" for k in value if k not in have]
                    + [f"{k} changed" for k in value if k in have and have[k] != value[k]]
                    + [f"{k} removed" for k in have if k not in value])
            if diff:
                out.append("environment: " + ", ".join(diff))
        elif key == "Description":
            if (have or "") != value:
                out.append("description")
        elif have != value:
            unit = units.get(key, "")
            out.append(f"{labels[key]} {have if have is not None else 'unset'}{unit if have is not None else ''}"
                       f" → {value}{unit}")
    return out


def _state_machine(plan: LayerPlan, infra: InfraPlan, remote: RemoteState) -> list[APICall]:
    role_arn = infra.roles["states"].arn
    definition = json.dumps(plan.asl)
    current = remote.state_machines.get(plan.state_machine_arn)
    if current is None:
        return [APICall("states", "CreateStateMachine",
                        {"name": plan.state_machine_name, "definition": definition, "roleArn": role_arn,
                         "type": "STANDARD", "tags": [{"key": k, "value": v} for k, v in plan.tags.items()]},
                        f"{plan.state_machine_name} ({len(plan.asl['States'])} states, role {role_arn})",
                        f"created state machine {plan.state_machine_name}")]
    changed = [what for what, differs in (("definition", current.get("definition") != plan.asl),
                                          ("role", current.get("roleArn") != role_arn)) if differs]
    if not changed:
        return []
    return [APICall("states", "UpdateStateMachine",
                    {"stateMachineArn": plan.state_machine_arn, "definition": definition, "roleArn": role_arn},
                    f"{plan.state_machine_name} ({' and '.join(changed)} changed)",
                    f"updated state machine {plan.state_machine_name}")]


def _rules(plan: LayerPlan, infra: InfraPlan, remote: RemoteState) -> list[APICall]:
    calls = []
    target = {"Id": "state-machine", "Arn": plan.state_machine_arn, "RoleArn": infra.roles["events"].arn}
    for t in plan.triggers:
        wanted: dict[str, Any] = {"State": "ENABLED", "Description": f"starts {plan.state_machine_name}"}
        if t.schedule_expression:
            wanted["ScheduleExpression"] = t.schedule_expression
            what = t.schedule_expression
        else:
            wanted["EventPattern"] = t.event_pattern
            what = "event pattern " + json.dumps(t.event_pattern, separators=(",", ":"))
        have = remote.rules.get(t.rule_name)
        if have is None or any(have.get(k) != v for k, v in wanted.items()) or \
                ("ScheduleExpression" in have) != ("ScheduleExpression" in wanted):
            params = {"Name": t.rule_name, **wanted}
            if "EventPattern" in params:
                params["EventPattern"] = json.dumps(t.event_pattern)
            calls.append(APICall("events", "PutRule", params, f"{t.rule_name} ({what})",
                                 f"{'created' if have is None else 'updated'} rule {t.rule_name}"))
        if have is None or target not in have.get("Targets", []):
            calls.append(APICall("events", "PutTargets", {"Rule": t.rule_name, "Targets": [target]},
                                 f"{t.rule_name} → {plan.state_machine_name}",
                                 f"pointed rule {t.rule_name} at {plan.state_machine_name}"))
    return calls
