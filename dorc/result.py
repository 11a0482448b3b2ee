"""RunResult: one shape for a run on any target, for the terminal, ``--json``, records and tests.

Step inputs and outputs are kept as the JSON bytes that crossed the hop and parsed on demand:
the runner never holds a second copy of a large event, and what a test reads is exactly what
the next function received.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StepError:
    type: str
    message: str
    stack_trace: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "stack_trace": self.stack_trace}


@dataclass
class StepResult:
    function: str
    layer: str  # "instance/layer"
    deployed_name: str
    status: str  # "succeeded" | "failed"
    duration_ms: float
    input_json: bytes | None = None
    output_json: bytes | None = None
    error: StepError | None = None
    request_id: str | None = None
    logs: str = ""
    max_memory_mb: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def input(self) -> Any:
        return None if self.input_json is None else json.loads(self.input_json)

    @property
    def output(self) -> Any:
        return None if self.output_json is None else json.loads(self.output_json)

    def __repr__(self) -> str:
        """Short enough for pytest's one-line ``where`` (the full story: ``failure_report()``)."""
        what = f"{self.layer}:{self.function} {self.status}"
        if self.error:
            what += f": {_one_line(f'{self.error.type}: {self.error.message}')}"
        return f"StepResult({what})"

    def failure_report(self) -> str:
        """The step's error, stack trace and logs, as a failing test shows them ("" if it succeeded)."""
        if self.succeeded:
            return ""
        return "\n".join(_step_report(self))

    def raise_for_failure(self) -> StepResult:
        """``RunFailed`` (an ``AssertionError``) with ``failure_report()`` if the step failed; else ``self``."""
        if not self.succeeded:
            raise RunFailed(self.failure_report(), self)
        return self

    def to_dict(self, *, logs: bool = True) -> dict[str, Any]:
        d = {
            "function": self.function,
            "layer": self.layer,
            "deployed_name": self.deployed_name,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "input": self.input,
            "output": self.output,
            "error": self.error.to_dict() if self.error else None,
            "request_id": self.request_id,
            "max_memory_mb": self.max_memory_mb,
        }
        if logs:
            d["logs"] = self.logs
        return d


@dataclass
class RunResult:
    pipeline: str  # instance
    layer: str  # the layer the run started at
    target: str  # "local" | "localstack"
    env: str
    steps: list[StepResult] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    duration_ms: float = 0.0
    error: StepError | None = None
    output_json: bytes | None = None
    execution_arn: str | None = None
    record_path: Path | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. an import AWS could not satisfy
    cancelled: bool = False  # stopped by Ctrl-C: the steps done so far, recorded as "cancelled"
    run_id: str | None = None  # the run record's id (``dorc runs show ID``), once recorded
    sandbox: str | None = None  # local runs: "full", or "partial (what the machine could not enforce)"

    @property
    def status(self) -> str:
        return "cancelled" if self.cancelled else "succeeded" if self.error is None else "failed"

    @property
    def succeeded(self) -> bool:
        return self.error is None and not self.cancelled

    @property
    def output(self) -> Any:
        return None if self.output_json is None else json.loads(self.output_json)

    def step(self, function: str, layer: str | None = None) -> StepResult:
        """``result.step("function1")``, or ``step("function1", layer="processed")`` when names repeat."""
        matches = [s for s in self.steps if s.function == function
                   and (layer is None or s.layer == layer or s.layer.endswith("/" + layer))]
        if not matches:
            ran = ", ".join(f"{s.layer}:{s.function}" for s in self.steps) or "none"
            raise KeyError(f"no step {function!r}{f' in layer {layer}' if layer else ''} (steps: {ran})")
        return matches[0] if layer is not None or len(matches) == 1 else _ambiguous(function, matches)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if not s.succeeded), None)

    def __repr__(self) -> str:
        """Status and failing step in one short line (pytest's ``where`` shows it cut at 240 characters)."""
        what = f"{self.pipeline}/{self.layer} on {self.target} ({self.env}) {self.status}"
        failed = self.failed_step
        if failed is not None:
            what += f" at {failed.layer}:{failed.function}"
        if self.error is not None:
            what += f": {_one_line(f'{self.error.type}: {self.error.message}')}"
        return f"RunResult({what}, {len(self.steps)} step(s))"

    def failure_report(self) -> str:
        """Which step failed, its error, stack trace and logs ("" if the run succeeded): what the pytest
        plugin shows under a failing assertion and ``raise_for_failure()`` raises."""
        if self.succeeded:
            return ""
        lines = [f"run of {self.pipeline}/{self.layer} on {self.target} ({self.env}) {self.status}"
                 + (f", record {self.run_id[:8]}" if self.run_id else "")]
        done = [s for s in self.steps if s.succeeded]
        if done:
            lines.append("steps that succeeded: " + ", ".join(f"{s.layer}:{s.function}" for s in done))
        failed = self.failed_step
        if failed is not None:
            lines += _step_report(failed)
        elif self.error is not None:
            lines.append(f"error: {self.error.type}: {self.error.message}")
        return "\n".join(lines)

    def raise_for_failure(self) -> RunResult:
        """``RunFailed`` (an ``AssertionError``) with ``failure_report()`` if the run did not
        succeed; else ``self``: ``dorc_run(...).raise_for_failure().output``."""
        if not self.succeeded:
            raise RunFailed(self.failure_report(), self)
        return self

    def to_dict(self, *, logs: bool = True) -> dict[str, Any]:
        return {
            "status": self.status,
            "pipeline": self.pipeline,
            "layer": self.layer,
            "target": self.target,
            "env": self.env,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "duration_ms": round(self.duration_ms, 3),
            "execution_arn": self.execution_arn,
            "steps": [s.to_dict(logs=logs) for s in self.steps],
            "output": self.output,
            "error": self.error.to_dict() if self.error else None,
            "warnings": list(self.warnings),
            "sandbox": self.sandbox,
        }

    def to_json(self, *, logs: bool = True) -> str:
        return json_document(self.to_dict(logs=logs))


class RunFailed(AssertionError):
    """A run or step that did not succeed, raised by ``raise_for_failure()``; the message is its
    failure report (step, error, stack trace, logs) and ``.result`` the RunResult or StepResult."""

    def __init__(self, report: str, result: RunResult | StepResult):
        super().__init__(report)
        self.result = result


REPORT_LOG_LINES = 40  # the last lines of a failed step's logs in a failure report


def _one_line(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _step_report(step: StepResult) -> list[str]:
    lines = [f"failed step: {step.layer}:{step.function} ({step.deployed_name})"
             + (f", request {step.request_id}" if step.request_id else "")]
    if step.error is not None:
        lines.append(f"error: {step.error.type}: {step.error.message}")
        if step.error.stack_trace:
            lines.append("stack trace (most recent call last):")
            lines += [f"  {line}" for frame in step.error.stack_trace for line in frame.rstrip("\n").split("\n")]
    logs = step.logs.rstrip("\n").split("\n") if step.logs.strip() else []
    if logs:
        cut = len(logs) - REPORT_LOG_LINES
        lines.append(f"logs of {step.function}" + (f" (last {REPORT_LOG_LINES} of {len(logs)} lines)" if cut > 0 else "") + ":")
        lines += [f"  {line}" for line in logs[max(cut, 0):]]
    else:
        lines.append(f"logs of {step.function}: none")
    return lines


class RunCancelled(KeyboardInterrupt):
    """Ctrl-C during a run: still a ``KeyboardInterrupt``, carrying the run as far as it went
    (``result.status == "cancelled"``, already recorded when the run keeps records)."""

    def __init__(self, result: RunResult):
        super().__init__("interrupted")
        self.result = result


NON_FINITE_NOTE = ("a handler's result holds NaN or Infinity, which JSON cannot represent: written here as the "
                   "strings \"NaN\", \"Infinity\", \"-Infinity\" (Step Functions in AWS fails to parse such a "
                   "result; return None or a string instead)")


def json_document(doc: dict[str, Any], *, indent: int | None = 2) -> str:
    """``doc`` as strict JSON (what jq, JavaScript and Step Functions accept). Python reads and
    writes NaN/Infinity, and Lambda's runtime lets a handler return them, but they are not JSON:
    such floats become strings, and ``doc["warnings"]`` (when it has that list) says so."""
    try:
        return json.dumps(doc, indent=indent, allow_nan=False)
    except ValueError:
        pass
    clean = _finite(doc)
    if isinstance(clean.get("warnings"), list) and NON_FINITE_NOTE not in clean["warnings"]:
        clean["warnings"].append(NON_FINITE_NOTE)
    return json.dumps(clean, indent=indent, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _ambiguous(function: str, matches: list[StepResult]):
    layers = ", ".join(s.layer for s in matches)
    raise KeyError(f"step {function!r} ran in several layers ({layers}); pass layer=")
