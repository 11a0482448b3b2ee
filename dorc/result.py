"""RunResult: one shape for a run on any target, for the terminal, ``--json``, records and tests.

Step inputs and outputs are kept as the JSON bytes that crossed the hop and parsed on demand:
the runner never holds a second copy of a large event, and what a test reads is exactly what
the next function received. A run adds its steps with ``RunResult.add_step``, which moves large
payloads and logs to a spool file (``PayloadSpool``): a 1000-function chain of 200 KB events
does not hold 400 MB in memory, and ``step.input`` still reads back every byte.

``to_dict`` (records, ``--json``) keeps a payload up to ``payload_limit`` bytes and, beyond it,
``{"kept": false, "size": N, "sha256": HEX}`` with the step's ``"not_kept"`` naming it; the
run's output and the failed step's input are always kept whole (the summary, ``--from`` and
a fix need them).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INLINE_BYTES = 16 * 1024  # payloads and logs up to this size stay in memory; larger ones are spooled


@dataclass(frozen=True)
class Spooled:
    """A payload in a run's spool file: read back on demand."""

    spool: PayloadSpool = field(repr=False, compare=False)
    offset: int
    size: int
    sha256: str
    text: bool = False  # logs: read back as str

    def read(self) -> bytes | str:
        data = self.spool.read(self.offset, self.size)
        return data.decode("utf-8", "surrogatepass") if self.text else data


class PayloadSpool:
    """An anonymous temporary file holding a run's large payloads, each distinct one once (a
    chain hands the same bytes on as the next input). Removed when the last step using it goes.
    ``folder``: where to make it (a run's ``.dorc/``: on disk, where ``/tmp`` may be memory)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._file = None
        self._end = 0
        self._lock = threading.Lock()
        self._by_digest: dict[tuple[str, bool], int] = {}  # -> offset (no Spooled here: no cycle)

    def keep(self, value: bytes | str | Spooled | None) -> bytes | str | Spooled | None:
        """``value`` itself when small (or already spooled), else its ``Spooled`` reference."""
        if value is None or isinstance(value, Spooled) or len(value) <= INLINE_BYTES:
            return value
        text = isinstance(value, str)
        data = value.encode("utf-8", "surrogatepass") if text else value
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            offset = self._by_digest.get((digest, text))
            if offset is None:
                if self._file is None:
                    self._file = self._open()
                    weakref.finalize(self, self._file.close)
                self._file.seek(offset := self._end)
                view = memoryview(data)
                while view:  # a raw file may take part of it
                    view = view[self._file.write(view):]
                self._by_digest[(digest, text)] = offset
                self._end += len(data)
        return Spooled(self, offset, len(data), digest, text)

    def _open(self):
        if self.folder is not None:
            try:
                return tempfile.TemporaryFile(prefix=".payloads-", dir=self.folder, buffering=0)  # noqa: SIM115
            except OSError:  # a read-only or missing folder: the system's temporary folder will do
                pass
        return tempfile.TemporaryFile(prefix="dorc-payloads-", buffering=0)  # noqa: SIM115 - open for the run

    def read(self, offset: int, size: int) -> bytes:
        parts, left = [], size
        with self._lock:
            self._file.seek(offset)
            while left:  # a raw file may give part of it
                part = self._file.read(left)
                if not part:
                    raise OSError(f"the run's payload spool ended {left} bytes early")
                parts.append(part)
                left -= len(part)
        return b"".join(parts)


class _Kept:
    """A StepResult attribute that reads as the bytes (or text) it holds, wherever they are kept:
    in memory, or in the run's spool (``StepResult.spool``)."""

    def __init__(self, default=None) -> None:
        self._default = default

    def __set_name__(self, owner, name: str) -> None:
        self._slot = "_kept_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self._default
        value = obj.__dict__.get(self._slot, self._default)
        return value.read() if isinstance(value, Spooled) else value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self._slot] = value
        obj.__dict__.pop("_status_code", None)  # worked out from the output again when asked

    def move(self, obj, spool: PayloadSpool) -> None:
        obj.__dict__[self._slot] = spool.keep(self.raw(obj))  # the same bytes: nothing to work out again

    def raw(self, obj):
        return obj.__dict__.get(self._slot, self._default)


def payload_facts(value: bytes | Spooled) -> tuple[int, str]:
    """Size in bytes and sha256 of a payload, without reading a spooled one back."""
    if isinstance(value, Spooled):
        return value.size, value.sha256
    return len(value), hashlib.sha256(value).hexdigest()


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
    input_json: bytes | None = _Kept()
    output_json: bytes | None = _Kept()
    error: StepError | None = None
    request_id: str | None = None
    logs: str = _Kept("")
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

    @property
    def status_code(self) -> Any:
        """The output's ``statusCode`` (None when it has none), worked out once: the summary
        shows it for every step without reading spooled outputs back."""
        if "_status_code" not in self.__dict__:
            data, out = self.output_json, None
            if data is not None and b'"statusCode"' in data:  # else there is none to find
                try:
                    out = json.loads(data)
                except ValueError:
                    pass
            self.__dict__["_status_code"] = out.get("statusCode") if isinstance(out, dict) else None
        return self.__dict__["_status_code"]

    def spool(self, spool: PayloadSpool) -> StepResult:
        """Move large payloads and logs to ``spool``; reading them stays the same."""
        self.status_code  # noqa: B018 - while the output is still in memory
        for name in ("input_json", "output_json", "logs"):
            StepResult.__dict__[name].move(self, spool)
        return self

    def to_dict(self, *, logs: bool = True, payload_limit: int | None = None,
                keep_input: bool = False) -> dict[str, Any]:
        """``payload_limit``: bytes up to which a payload is given; beyond it its size and sha256
        (``"not_kept"`` lists which). ``keep_input``: the input whole whatever its size."""
        not_kept: list[str] = []

        def payload(label: str, name: str) -> Any:
            raw = StepResult.__dict__[name].raw(self)
            limit = None if label == "input" and keep_input else payload_limit
            if raw is None or limit is None or (raw.size if isinstance(raw, Spooled) else len(raw)) <= limit:
                data = raw.read() if isinstance(raw, Spooled) else raw
                return None if data is None else json.loads(data)
            not_kept.append(label)
            size, digest = payload_facts(raw)
            return {"kept": False, "size": size, "sha256": digest}

        d = {
            "function": self.function,
            "layer": self.layer,
            "deployed_name": self.deployed_name,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "input": payload("input", "input_json"),
            "output": payload("output", "output_json"),
            "error": self.error.to_dict() if self.error else None,
            "request_id": self.request_id,
            "max_memory_mb": self.max_memory_mb,
        }
        if not_kept:
            d["not_kept"] = not_kept  # those payloads are {"kept": false, "size", "sha256"}
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
    iam: str | None = None  # local runs: "enforced" (each function's role), or "off (--no-iam)"
    payload_limit: int | None = None  # bytes of a step payload to_dict gives whole (None: all; records set it)
    _spool: PayloadSpool = field(default_factory=PayloadSpool, repr=False, compare=False)

    def spool_in(self, folder: Path) -> RunResult:
        """Spool large payloads to a temporary file in ``folder`` (a run's state folder)."""
        self._spool.folder = folder
        return self

    def add_step(self, step: StepResult) -> StepResult:
        """Append a finished step, its large payloads and logs moved to the run's spool file."""
        self.steps.append(step.spool(self._spool))
        return step

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
        """The run as JSON-ready data; step payloads beyond ``payload_limit`` as size and sha256."""
        return {**self.head_dict(), "steps": list(self.step_dicts(logs=logs)), **self.tail_dict()}

    def head_dict(self) -> dict[str, Any]:
        """``to_dict``'s fields before ``"steps"`` (a record is written step by step)."""
        return {
            "status": self.status,
            "pipeline": self.pipeline,
            "layer": self.layer,
            "target": self.target,
            "env": self.env,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "duration_ms": round(self.duration_ms, 3),
            "execution_arn": self.execution_arn,
        }

    def step_dicts(self, *, logs: bool = True):
        """Each step's ``to_dict``, one at a time (the failed step's input whole: ``--from`` needs it)."""
        failed = self.failed_step
        for s in self.steps:
            yield s.to_dict(logs=logs, payload_limit=self.payload_limit, keep_input=s is failed)

    def tail_dict(self) -> dict[str, Any]:
        """``to_dict``'s fields after ``"steps"``."""
        tail = {
            "output": self.output,
            "error": self.error.to_dict() if self.error else None,
            "warnings": list(self.warnings),
            "sandbox": self.sandbox,
            "iam": self.iam,
        }
        if self.payload_limit is not None:
            kb = self.payload_limit / 1024
            tail["payload_limit_kb"] = int(kb) if kb.is_integer() else kb
        return tail

    def to_json(self, *, logs: bool = True) -> str:
        return json_document(self.to_dict(logs=logs))

    def write_json(self, out, *, logs: bool = True) -> None:
        """``to_json()`` written to ``out`` one step at a time (``dorc run --json`` of a long chain)."""
        write_json_document(out, self.head_dict(), "steps", self.step_dicts(logs=logs), self.tail_dict())


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


def write_json_document(out, head: dict[str, Any], key: str, items, tail: dict[str, Any]) -> None:
    """``json_document({**head, key: list(items), **tail})`` written to ``out`` one item at a
    time: a run record of a thousand steps never exists whole in memory."""
    mark = f'\n  "{key}": []'  # JSON text holds no raw newline inside a string: the mark is unique
    before, _, _ = json_document({**head, key: [], **tail}).partition(mark)
    out.write(before + mark[:-1])
    count, non_finite = 0, False
    for item in items:
        try:
            text = json.dumps(item, indent=2, allow_nan=False)
        except ValueError:
            text, non_finite = json.dumps(_finite(item), indent=2, allow_nan=False), True
        out.write(("," if count else "") + "\n    " + text.replace("\n", "\n    "))
        count += 1
    out.write("\n  ]" if count else "]")
    if non_finite and isinstance(tail.get("warnings"), list) and NON_FINITE_NOTE not in tail["warnings"]:
        tail = {**tail, "warnings": [*tail["warnings"], NON_FINITE_NOTE]}
    out.write(json_document({**head, key: [], **tail}).partition(mark)[2])


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
