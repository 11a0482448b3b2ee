"""Deployment facts: what an environment runs and when it last ran it.

Every target that deploys (LocalStack, Pulumi) records the same facts, and promotion reads
them through ``Backend``. They live here, below the targets and the promotion rules, so that
neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol


@dataclass
class Deployed:
    """What an environment runs, as recorded at deploy time (stack outputs or a record)."""

    env: str
    packages: dict[str, str]
    plan_settings: dict[str, Any]
    plan_digest: str
    deployed_at: str  # ISO 8601 UTC
    state_machine_arn: str


@dataclass
class LastRun:
    status: str  # "succeeded" | "failed" | "running" | "stale" | "none"
    when: str | None
    what: str  # human description of where it was read


@dataclass
class Running:
    """What an environment actually runs, read from the services themselves (Lambda's
    ``GetFunction``, Step Functions' ``DescribeStateMachine``), never from a record: another
    checkout, a manual change or a half-done deploy leaves the record saying something else.

    ``functions``: function key -> ``{"sha256", "timeout", "memory", "runtime", "handler",
    "environment": {name: hash as in ``LayerPlan.snapshot`` | None}}``, None for a function that
    is not there; an environment value is None where this machine replaces it (LocalStack's
    ``[local.environment]``), so it is not compared. ``asl``: the state machine's definition
    (None: not there). ``changed_at``: the newest change of a function (ISO 8601 UTC)."""

    functions: dict[str, dict[str, Any] | None]
    asl: dict[str, Any] | None
    changed_at: str | None = None

    @property
    def packages(self) -> dict[str, str | None]:
        return {k: (f or {}).get("sha256") for k, f in self.functions.items()}


def running_differences(deployed: Deployed, running: Running) -> list[str]:
    """How what runs differs from what ``deployed`` records, one line each (never a value of
    an environment variable)."""
    out = []
    settings = {f["key"]: f for f in deployed.plan_settings.get("functions", [])}
    for key in sorted(set(deployed.packages) | set(running.functions)):
        have, recorded = running.functions.get(key), deployed.packages.get(key)
        if have is None:
            out.append(f"function {key}: not there (recorded {(recorded or '')[:12]})")
            continue
        if recorded is None:
            out.append(f"function {key}: runs but is not recorded")
            continue
        if have.get("sha256") != recorded:
            out.append(f"function {key}: runs code {(have.get('sha256') or 'unknown')[:12]}, recorded {recorded[:12]}")
        want = settings.get(key)
        if want is None:
            continue
        for name in ("timeout", "memory", "runtime", "handler"):
            if name in have and have[name] != want.get(name):
                out.append(f"function {key}: runs {name} {have[name]}, recorded {want.get(name)}")
        env, wanted_env = have.get("environment") or {}, want.get("environment") or {}
        changed = sorted(n for n in set(env) | set(wanted_env)
                         if n not in env or n not in wanted_env or (env[n] is not None and env[n] != wanted_env[n]))
        if changed:
            out.append(f"function {key}: runs other environment variable(s) {', '.join(changed)}")
    if running.asl is None:
        out.append("state machine: not there")
    elif deployed.plan_settings.get("asl") is not None and running.asl != deployed.plan_settings["asl"]:
        out.append("state machine: runs another definition than recorded")
    return out


def lambda_facts(cfg: dict[str, Any], replaced: Any = ()) -> dict[str, Any]:
    """A ``Running.functions`` item from Lambda's ``GetFunction`` "Configuration"; variables
    named in ``replaced`` get no value (this machine replaces them)."""
    from ..package import hex_digest

    env = (cfg.get("Environment") or {}).get("Variables") or {}
    return {"sha256": hex_digest(cfg["CodeSha256"]) if cfg.get("CodeSha256") else None,
            "timeout": cfg.get("Timeout"), "memory": cfg.get("MemorySize"), "runtime": cfg.get("Runtime"),
            "handler": cfg.get("Handler"),
            "environment": {k: None if k in replaced else env_hash(v) for k, v in env.items()}}


def read_running(deployed: Deployed, awslambda, states, replaced: Any = ()) -> Running:
    """``Running`` read with a Lambda and a Step Functions client (LocalStack's or AWS's): the
    functions ``deployed`` names and its state machine."""
    import json

    functions: dict[str, dict[str, Any] | None] = {}
    changed = []
    for f in deployed.plan_settings.get("functions", []):
        try:
            cfg = awslambda.get_function(FunctionName=f["name"])["Configuration"]
        except Exception as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            functions[f["key"]] = None
            continue
        functions[f["key"]] = lambda_facts(cfg, replaced)
        changed.append(lambda_time(cfg.get("LastModified")))
    for key in deployed.packages:
        functions.setdefault(key, None)
    try:
        asl = json.loads(states.describe_state_machine(stateMachineArn=deployed.state_machine_arn)["definition"])
    except Exception as exc:
        if _code(exc) != "StateMachineDoesNotExist":
            raise
        asl = None
    stamps = [c for c in changed if c]
    return Running(functions, asl, max(stamps) if stamps else None)


def _code(exc: Exception) -> str | None:
    return (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")


def env_hash(value: Any) -> str:
    """An environment value as ``LayerPlan.snapshot`` records it."""
    import hashlib

    return hashlib.sha256(str(value).encode()).hexdigest()[:16]


def lambda_time(value: Any) -> str | None:
    """Lambda's ``LastModified`` ("2024-05-01T12:00:00.123+0000") as ISO 8601 UTC."""
    if not value:
        return None
    if isinstance(value, datetime):
        when = value
    else:
        try:  # LocalStack's "+0000", moto's nanoseconds and "Z" included
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def running_since(deployed: Deployed, running: Running) -> str:
    """When what runs was put there: the record's time, or a later change of a function (a
    redeploy of the same code by another checkout): an execution before it ran other code."""
    stamps = [s for s in (deployed.deployed_at, running.changed_at) if s]
    if not stamps:
        return ""
    return max(stamps, key=lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")))


class Backend(Protocol):
    """One deployment target seen by promotion: read what runs (as recorded, and as the
    services report it), read its last run, deploy."""

    name: str

    def deployed(self, plan) -> Deployed | None: ...
    def running(self, deployed: Deployed) -> Running: ...
    def last_run(self, deployed: Deployed) -> LastRun: ...
    def deploy(self, plan, packages: dict[str, str] | None) -> Deployed: ...


def deployment_stamp() -> str:
    """When a deployment is recorded, to the millisecond: an execution a moment before a
    redeploy must not count as a run of what was deployed."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def last_execution_since(executions: list[dict[str, Any]], deployed: Deployed) -> LastRun:
    """The newest of a deployed state machine's executions (``ListExecutions`` items) started
    after that deployment: an execution of older code says nothing about what runs now."""
    runs = executions
    if deployed.deployed_at:
        since = datetime.fromisoformat(deployed.deployed_at.replace("Z", "+00:00")).astimezone(timezone.utc)
        runs = [r for r in runs if r["startDate"] >= since]
    if not runs:
        return LastRun("none", None, f"no execution of {deployed.state_machine_arn.rsplit(':', 1)[-1]} "
                                     f"since it was deployed at {deployed.deployed_at}")
    last = max(runs, key=lambda r: r["startDate"])
    status = {"SUCCEEDED": "succeeded", "RUNNING": "running"}.get(last["status"], "failed")
    return LastRun(status, last["startDate"].isoformat(), f"execution {last['name']} ({last['status']})")
