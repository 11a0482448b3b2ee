"""What ran in LocalStack, whoever started it: the executions of the deployed state machines
(``dorc runs --target localstack``), one of them read back as a run (``dorc runs show``), and
the functions' CloudWatch logs (``dorc logs``)."""

from __future__ import annotations

import time
from typing import Any, Iterator

from ...errors import DorcError
from ...localstack.endpoint import require_ready
from ...plan import LayerPlan
from .clients import TARGET, Clients, error_code, log_event_pages
from .history import read_execution

STATUS = {"RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed", "TIMED_OUT": "timed out",
          "ABORTED": "aborted", "PENDING_REDRIVE": "failed"}


def _clients(plans: dict[str, LayerPlan], endpoint: str | None) -> tuple[str, dict[str, Clients]]:
    ep = require_ready(endpoint)
    return ep, {region: Clients(ep, region) for region in {p.region for p in plans.values()}}


def list_executions(plans: dict[str, LayerPlan], *, endpoint: str | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
    """Executions of each layer's state machine (``ListExecutions``), newest first; layers not
    deployed there are left out. Each: id (the execution's name), pipeline, layer, env, status,
    started_at, duration_ms (None while running), execution_arn."""
    _, clients = _clients(plans, endpoint)
    found: list[tuple[float, dict[str, Any]]] = []
    for plan in plans.values():
        sfn = clients[plan.region].states
        kw: dict[str, Any] = {"stateMachineArn": plan.state_machine_arn, "maxResults": 100}
        try:
            for _ in range(100):  # pages
                page = sfn.list_executions(**kw)
                for ex in page.get("executions", []):
                    found.append((ex["startDate"].timestamp(), _row(plan, ex)))
                kw["nextToken"] = page.get("nextToken")
                if not kw["nextToken"] or (limit is not None and len(found) >= limit * len(plans)):
                    break
        except Exception as exc:
            if error_code(exc) != "StateMachineDoesNotExist":
                raise
    found.sort(key=lambda t: t[0], reverse=True)
    rows = [row for _, row in found]
    return rows[:limit] if limit is not None else rows


def _row(plan: LayerPlan, ex: dict[str, Any]) -> dict[str, Any]:
    start, stop = ex["startDate"], ex.get("stopDate")
    return {"id": ex["name"], "pipeline": plan.instance, "layer": plan.layer, "target": TARGET, "env": plan.env,
            "status": STATUS.get(ex["status"], ex["status"].lower()),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start.timestamp())),
            "duration_ms": (stop - start).total_seconds() * 1000 if stop else None,
            "execution_arn": ex["executionArn"]}


def execution_record(plans: dict[str, LayerPlan], ref: str, *, endpoint: str | None = None) -> dict[str, Any]:
    """One execution as a run record (steps, inputs, outputs, errors, logs): ``ref`` is its ARN,
    its name or the start of its name, or ``last`` (the newest of all layers)."""
    if ref.startswith("arn:"):
        arn = ref
    else:
        rows = list_executions(plans, endpoint=endpoint)
        hits = rows[:1] if ref == "last" else [r for r in rows if r["id"].startswith(ref)]
        if len(hits) > 1 and not any(r["id"] == ref for r in hits):
            raise DorcError(f"{ref!r} matches {len(hits)} executions: " + ", ".join(r["id"] for r in hits[:5]),
                            hint="give more of the name (dorc runs --target localstack lists them)")
        if not hits:
            layers = ", ".join(sorted(plans)) or "none"
            raise DorcError(f"no execution {ref!r} of the state machines deployed to LocalStack (layers: {layers})",
                            hint="dorc runs --target localstack [--env ENV] lists the executions and their names")
        arn = next((r for r in hits if r["id"] == ref), hits[0])["execution_arn"]
    _, clients = _clients(plans, endpoint)
    region = arn.split(":")[3] if arn.count(":") >= 3 else next(iter(clients))
    try:
        result, desc = read_execution(clients.get(region) or next(iter(clients.values())), plans, arn)
    except StopIteration:
        raise DorcError(f"execution {arn} is not of a state machine of this project's layers",
                        hint="dorc runs --target localstack lists this project's executions") from None
    except Exception as exc:
        if error_code(exc) not in ("ExecutionDoesNotExist", "InvalidArn"):
            raise
        raise DorcError(f"no execution {arn} in LocalStack", hint="dorc runs --target localstack lists them") from None
    doc = {"id": desc["name"], **result.to_dict()}
    doc["status"] = STATUS.get(desc["status"], desc["status"].lower())
    return doc


def log_events(plan: LayerPlan, *, endpoint: str | None = None, functions: list[str] | None = None,
               since_ms: int | None = None, follow: bool = False, poll: float = 1.0) -> Iterator[dict[str, Any]]:
    """The layer's functions' CloudWatch log events (``FilterLogEvents`` on each log group), oldest
    first, each with ``function``; ``follow`` keeps polling for new ones until the caller stops."""
    ep = require_ready(endpoint)
    logs = Clients(ep, plan.region).logs
    fns = [fn for fn in plan.functions if not functions or fn.key in functions]
    seen: set[str] = set()
    start = since_ms or 0
    while True:
        batch = []
        for fn in fns:
            try:
                for page in log_event_pages(logs, fn.log_group, start, max_pages=1000):
                    batch += [e | {"function": fn.key} for e in page if e["eventId"] not in seen]
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":  # never called yet: no log group
                    raise
        batch.sort(key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))
        for e in batch:
            seen.add(e["eventId"])
            yield e
        if not follow:
            return
        if batch:
            start = max(start, batch[-1]["timestamp"])  # same-millisecond events: ``seen`` drops repeats
        time.sleep(poll)
