"""Making the planned calls (``execute``), or only showing them (``describe``), and recording
what now runs (``record``).

The planner decided what to call; this module knows how: which boto3 method an operation is,
that a package body is read from its file, that Lambda must finish one change to a function
before it takes the next (and before a state machine may run it). Those waits are part of
executing, not planned calls: a dry run has nothing to wait for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

from ...errors import DorcError, LocalStackRunError
from ...observer import Progress
from ...plan import LayerPlan
from .clients import Clients, error_code
from .planner import APICall, LocalFile, children_first
from .record import Deployment, deployment_of, write_deployment

_CLIENT = {"lambda": "awslambda"}  # service name -> ``Clients`` attribute
_WAIT_BEFORE = ("UpdateFunctionCode", "UpdateFunctionConfiguration")  # Lambda takes one change at a time


def describe(calls: list[APICall]) -> list[str]:
    """One line per call, as a dry run prints them (names, never environment values)."""
    return [call.line() for call in calls]


def execute(calls: list[APICall], c: Clients, progress: Progress, *, ready: Iterable[str] = ()) -> None:
    """Make ``calls`` in order, then wait until every function in ``ready`` (and every one
    created or updated) can run. A call that fails stops here with the call named: what was done
    stays done, and a re-run plans only the rest."""
    pending: dict[str, None] = {}  # functions changed and not yet seen ready
    for call in calls:
        name = call.params.get("FunctionName") if call.service == "lambda" else None
        if call.service != "lambda":
            _wait_all(c, pending)
        elif call.operation in _WAIT_BEFORE:
            wait_function(c, name)
        size = _make(c, call)
        if name:
            pending[name] = None
        if call.done:
            progress(call.done + (f" ({size:,} bytes)" if size is not None else ""))
    _wait_all(c, {**pending, **dict.fromkeys(ready)})


def _make(c: Clients, call: APICall) -> int | None:
    """One call; returns the size of a body read from a file."""
    from botocore import xform_name

    method = getattr(getattr(c, _CLIENT.get(call.service, call.service)), xform_name(call.operation))
    params, size = dict(call.params), None
    try:
        body = params.get("Body")
        if isinstance(body, LocalFile):
            size = Path(body.path).stat().st_size
            with open(body.path, "rb") as fh:
                method(**{**params, "Body": fh})
        else:
            method(**params)
    except DorcError:
        raise
    except Exception as exc:
        if call.already and error_code(exc) in call.already:
            return size
        raise LocalStackRunError(f"{call.line()} failed: {type(exc).__name__}: {exc}",
                                 hint="fix the cause and run again; a re-run completes a half-done deployment") from None
    return size


def _wait_all(c: Clients, names: dict[str, None]) -> None:
    for name in names:
        wait_function(c, name)
    names.clear()


def wait_function(c: Clients, name: str, timeout: float = 60.0) -> None:
    """Until Lambda reports the function Active with its last update done."""
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


def record(plans: dict[str, LayerPlan], endpoint: str, state_dir: Path) -> dict[str, Deployment]:
    """After the calls succeeded: one deployment record per layer, hand-over targets first."""
    out = {}
    for key in children_first(plans):
        dep = deployment_of(plans[key], endpoint)
        write_deployment(state_dir, dep)
        out[key] = dep
    return out
