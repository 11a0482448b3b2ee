"""What the endpoint already holds, as far as a deployment depends on it: the read side of
plan-then-execute.

``read_remote_state`` asks the endpoint (read calls only: a client that refuses anything else
does the asking) and returns a ``RemoteState``; the planner compares the plans with it and never
talks to the endpoint itself. ``RemoteState`` is plain data (``from_dict``/``to_dict``) so that
the planner can be tested against recorded endpoints without LocalStack.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

from ...plan import InfraPlan, LayerPlan, UniversalPlan, artifact_key
from .clients import Clients, error_code

# The parts of a function's configuration the planner compares (GetFunction's "Configuration").
FUNCTION_KEYS = ("Role", "Handler", "Runtime", "Timeout", "MemorySize", "Description", "Environment",
                 "EphemeralStorage", "LoggingConfig", "CodeSha256", "State", "LastUpdateStatus")
POLICY_NAME = "dorc"  # the one inline policy dorc puts on each role


@dataclass(frozen=True)
class RemoteState:
    """A snapshot of the endpoint. Absent from a mapping means absent from the endpoint."""

    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"eventbridge": bool}
    # name -> {"trust_policy", "policy" | None}; a function's role also "managed_policies" (attached ARNs)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # keys present in the artifact bucket
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> FUNCTION_KEYS subset, "Tags"
    log_groups: dict[str, int | None] = field(default_factory=dict)  # name -> retention days (None: never expire)
    state_machines: dict[str, dict[str, Any]] = field(default_factory=dict)  # arn -> {"definition", "roleArn", "tags"}
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> rule settings and "Targets"

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "RemoteState":
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown remote state field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: (list(v) if k == "artifacts" else dict(v)) for k, v in doc.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


class _ReadOnly:
    """A client that can only read: a dry run must not change the endpoint, whatever a later
    edit of this module calls."""

    READS = ("head_", "get_", "describe_", "list_")

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name: str):
        if not name.startswith(self.READS):
            raise AttributeError(f"{name} is not a read call; reading remote state changes nothing")
        return getattr(self._client, name)


def _absent(exc: Exception, *codes: str) -> bool:
    return error_code(exc) in codes


def _policy(doc: Any) -> Any:
    """IAM policy documents come back URL-encoded JSON or, decoded by botocore, as a dict."""
    if isinstance(doc, str):
        try:
            return json.loads(unquote(doc))
        except ValueError:
            return doc
    return doc


def _role(iam, name: str) -> dict[str, Any] | None:
    """A role's trust policy and dorc's inline policy (None: no such policy); None: no such role."""
    try:
        got = iam.get_role(RoleName=name)["Role"]
    except Exception as exc:
        if not _absent(exc, "NoSuchEntity"):
            raise
        return None
    try:
        policy = _policy(iam.get_role_policy(RoleName=name, PolicyName=POLICY_NAME)["PolicyDocument"])
    except Exception as exc:
        if not _absent(exc, "NoSuchEntity"):
            raise
        policy = None
    return {"trust_policy": _policy(got.get("AssumeRolePolicyDocument")), "policy": policy}


def read_remote_state(clients: Clients, plans: dict[str, LayerPlan], universal: UniversalPlan,
                      infra: InfraPlan) -> RemoteState:
    """Everything ``plan_deployment`` compares, read from the endpoint. ``plans`` must carry
    package digests (built or promoted): the artifact keys are named by them."""
    s3, iam = _ReadOnly(clients.s3), _ReadOnly(clients.iam)
    lam, logs = _ReadOnly(clients.awslambda), _ReadOnly(clients.logs)
    sfn, events = _ReadOnly(clients.states), _ReadOnly(clients.events)
    state = RemoteState()

    for bucket in dict.fromkeys((universal.artifact_bucket, infra.holding_bucket)):
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            if not _absent(exc, "404", "NoSuchBucket", "NotFound"):
                raise
            continue
        notif = s3.get_bucket_notification_configuration(Bucket=bucket)
        state.buckets[bucket] = {"eventbridge": "EventBridgeConfiguration" in notif}

    for role in infra.roles.values():
        got = _role(iam, role.name)
        if got is not None:
            state.roles[role.name] = got
    for plan in plans.values():
        for fn in plan.functions:
            got = _role(iam, fn.role_name)
            if got is not None:
                # one page: a role holds at most 20 managed policies, a page up to 100
                attached = iam.list_attached_role_policies(RoleName=fn.role_name)["AttachedPolicies"]
                got["managed_policies"] = [p["PolicyArn"] for p in attached]
                state.roles[fn.role_name] = got

    if universal.artifact_bucket in state.buckets:
        keys = dict.fromkeys(artifact_key(fn) for p in plans.values() for fn in p.functions)
        for key in keys:
            try:
                s3.head_object(Bucket=universal.artifact_bucket, Key=key)
            except Exception as exc:
                if not _absent(exc, "404", "NoSuchKey", "NotFound"):
                    raise
                continue
            state.artifacts.append(key)

    for plan in plans.values():
        for fn in plan.functions:
            try:
                cfg = lam.get_function(FunctionName=fn.name)["Configuration"]
            except Exception as exc:
                if not _absent(exc, "ResourceNotFoundException"):
                    raise
            else:
                state.functions[fn.name] = {k: cfg[k] for k in FUNCTION_KEYS if k in cfg}
                # whose it is: a deploy must not take over another project's function of the same name
                tags = lam.list_tags(Resource=cfg.get("FunctionArn", fn.arn)).get("Tags", {})
                state.functions[fn.name]["Tags"] = tags
            groups = logs.describe_log_groups(logGroupNamePrefix=fn.log_group)["logGroups"]
            for group in groups:
                if group["logGroupName"] == fn.log_group:
                    state.log_groups[fn.log_group] = group.get("retentionInDays")
        try:
            sm = sfn.describe_state_machine(stateMachineArn=plan.state_machine_arn)
        except Exception as exc:
            if not _absent(exc, "StateMachineDoesNotExist"):
                raise
        else:
            tags = sfn.list_tags_for_resource(resourceArn=plan.state_machine_arn).get("tags", [])
            state.state_machines[plan.state_machine_arn] = {"definition": json.loads(sm["definition"]),
                                                            "roleArn": sm.get("roleArn"),
                                                            "tags": {t["key"]: t["value"] for t in tags}}
        for t in plan.triggers:
            try:
                rule = events.describe_rule(Name=t.rule_name)
            except Exception as exc:
                if not _absent(exc, "ResourceNotFoundException"):
                    raise
                continue
            doc = {k: rule[k] for k in ("ScheduleExpression", "State", "Description") if k in rule}
            if rule.get("EventPattern"):
                doc["EventPattern"] = json.loads(rule["EventPattern"])
            doc["Targets"] = [{k: v for k, v in target.items() if k in ("Id", "Arn", "RoleArn")}
                              for target in events.list_targets_by_rule(Rule=t.rule_name)["Targets"]]
            state.rules[t.rule_name] = doc
    return state
