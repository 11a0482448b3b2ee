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


class Backend(Protocol):
    """One deployment target seen by promotion: read what runs, read its last run, deploy."""

    name: str

    def deployed(self, plan) -> Deployed | None: ...
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
