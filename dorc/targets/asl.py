"""A Step Functions interpreter for the subset of ASL that ``dorc.plan`` generates.

The local target does not re-implement the pipeline's rules: it executes the very state machine
definition that is deployed, so a rule added to the ASL (a new check, a new state) cannot be
forgotten locally. Anything outside the subset is refused loudly rather than guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..plan import ERROR_DATA_LIMIT, STATE_PAYLOAD_MAX_BYTES, TRANSIENT_LAMBDA_ERRORS

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
START_EXECUTION_SYNC = "arn:aws:states:::states:startExecution.sync:2"


class UnsupportedASL(Exception):
    """The definition uses ASL this interpreter does not model: a bug in dorc, not the user's."""


@dataclass
class TaskOutcome:
    """What a Task produced: JSON bytes on success, or an error name and cause."""

    output_json: bytes | None = None
    error: str | None = None
    cause: str | None = None


class Backend(Protocol):
    def invoke_lambda(self, function_arn: str, state_name: str, input_json: bytes, parsed: Any = None) -> TaskOutcome:
        """``parsed``: ``input_json`` already parsed (or ``UNPARSED``); the interpreter keeps no
        reference to it afterwards, so the backend may hand it to the function as its event."""
    def start_execution(self, state_machine_arn: str, input_json: bytes) -> TaskOutcome: ...
    def fail(self, state_name: str, error: str, cause: str) -> None: ...


@dataclass
class ExecutionOutcome:
    succeeded: bool
    output_json: bytes | None
    error: str | None = None
    cause: str | None = None


def execute(asl: dict[str, Any], input_json: bytes, backend: Backend) -> ExecutionOutcome:
    states = asl["States"]
    name = asl["StartAt"]
    data_json = input_json
    data: Any = _UNPARSED
    while True:
        state = states[name]
        kind = state["Type"]
        if kind == "Task":
            outcome = _task(state, name, data_json, backend, data)
            if outcome.error is not None:
                backend.fail(name, outcome.error, outcome.cause or "")
                return ExecutionOutcome(False, None, outcome.error, outcome.cause)
            data_json, data = outcome.output_json or b"null", _UNPARSED
            name = _next(state, name)
            if name is None:
                return ExecutionOutcome(True, data_json)
        elif kind == "Choice":
            if data is _UNPARSED:
                data = json.loads(data_json)
            name = _choose(state, data)
        elif kind == "Fail":
            if data is _UNPARSED:
                data = json.loads(data_json)
            cause = _fail_cause(state, name, data)
            backend.fail(name, state.get("Error", "States.Failed"), cause)
            return ExecutionOutcome(False, None, state.get("Error"), cause)
        elif kind == "Succeed":
            return ExecutionOutcome(True, data_json)
        elif kind == "Pass" and set(state) <= {"Type", "Next", "End", "Comment"}:
            name = _next(state, name)
            if name is None:
                return ExecutionOutcome(True, data_json)
        else:
            raise UnsupportedASL(f"state {name!r} of type {kind!r}")


_UNPARSED = object()
UNPARSED = _UNPARSED


def _next(state: dict[str, Any], name: str) -> str | None:
    if state.get("End"):
        return None
    if "Next" not in state:
        raise UnsupportedASL(f"state {name!r} has neither Next nor End")
    return state["Next"]


def _task(state: dict[str, Any], name: str, data_json: bytes, backend: Backend, data: Any = _UNPARSED) -> TaskOutcome:
    for retry in state.get("Retry", []):
        if not set(retry.get("ErrorEquals", [])) <= set(TRANSIENT_LAMBDA_ERRORS):
            raise UnsupportedASL(f"state {name!r} retries {retry['ErrorEquals']}, which can happen in-process")
    if state.get("Catch"):
        raise UnsupportedASL(f"state {name!r} has Catch")
    params = state.get("Parameters", {})
    resource = state["Resource"]
    if len(data_json) > STATE_PAYLOAD_MAX_BYTES:
        return TaskOutcome(error=ERROR_DATA_LIMIT, cause=_limit_cause(name, "input", len(data_json)))
    if resource == LAMBDA_INVOKE:
        _expect(params, {"FunctionName", "Payload.$"}, name)
        if params["Payload.$"] != "$" or state.get("OutputPath") != "$.Payload":
            raise UnsupportedASL(f"state {name!r}: only Payload.$ = '$' and OutputPath = '$.Payload'")
        outcome = backend.invoke_lambda(params["FunctionName"], name, data_json, data)
    elif resource == START_EXECUTION_SYNC:
        _expect(params, {"StateMachineArn", "Input.$"}, name)
        if params["Input.$"] != "$" or state.get("OutputPath") != "$.Output":
            raise UnsupportedASL(f"state {name!r}: only Input.$ = '$' and OutputPath = '$.Output'")
        outcome = backend.start_execution(params["StateMachineArn"], data_json)
    else:
        raise UnsupportedASL(f"state {name!r}: resource {resource}")
    if outcome.error is None and outcome.output_json is not None and len(outcome.output_json) > STATE_PAYLOAD_MAX_BYTES:
        return TaskOutcome(outcome.output_json, ERROR_DATA_LIMIT, _limit_cause(name, "output", len(outcome.output_json)))
    return outcome


_FORMAT = re.compile(r"^States\.Format\('((?:[^'\\]|\\.)*)'((?:\s*,\s*\$[.\w]*)*)\)$")


def _fail_cause(state: dict[str, Any], name: str, data: Any) -> str:
    """``Cause``, or ``CausePath`` as dorc's plans write it: ``States.Format('…{}…', $.path, …)``."""
    if "CausePath" not in state:
        return state.get("Cause", "")
    expr = state["CausePath"]
    m = _FORMAT.match(expr)
    if m is None:
        raise UnsupportedASL(f"state {name!r}: CausePath {expr!r}")
    template = m.group(1)
    args = [_path(data, a.strip()) for a in m.group(2).split(",")[1:]]
    out, i = [], 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and i + 1 < len(template):  # \' \{ \} \\ stand for themselves
            out.append(template[i + 1])
            i += 2
        elif template.startswith("{}", i):
            if not args:
                raise UnsupportedASL(f"state {name!r}: CausePath {expr!r} has more placeholders than arguments")
            arg = args.pop(0)
            out.append(arg if isinstance(arg, str) else "null" if arg is _MISSING else json.dumps(arg))
            i += 2
        else:
            out.append(ch)
            i += 1
    if args:
        raise UnsupportedASL(f"state {name!r}: CausePath {expr!r} has more arguments than placeholders")
    return "".join(out)


def _limit_cause(state: str, what: str, size: int) -> str:
    return (f"The state/task '{state}' returned a result with a size exceeding the maximum number of bytes "
            f"service limit: {what} is {size:,} bytes, Step Functions allows {STATE_PAYLOAD_MAX_BYTES:,} (256 KiB)")


def _expect(params: dict[str, Any], keys: set[str], name: str) -> None:
    if set(params) != keys:
        raise UnsupportedASL(f"state {name!r}: Parameters {sorted(params)}")


# -- Choice rules ----------------------------------------------------------------------------

def _choose(state: dict[str, Any], data: Any) -> str:
    for rule in state["Choices"]:
        if _rule(rule, data):
            return rule["Next"]
    if "Default" not in state:
        raise _NoChoice()
    return state["Default"]


class _NoChoice(Exception):
    pass


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_MISSING = object()


def _path(data: Any, path: str) -> Any:
    if path == "$":
        return data
    if not path.startswith("$."):
        raise UnsupportedASL(f"path {path!r}")
    cur = data
    for part in path[2:].split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "NumericEquals": lambda a, b: _is_number(a) and a == b,
    "NumericLessThan": lambda a, b: _is_number(a) and a < b,
    "NumericLessThanEquals": lambda a, b: _is_number(a) and a <= b,
    "NumericGreaterThan": lambda a, b: _is_number(a) and a > b,
    "NumericGreaterThanEquals": lambda a, b: _is_number(a) and a >= b,
    "StringEquals": lambda a, b: isinstance(a, str) and a == b,
    "BooleanEquals": lambda a, b: isinstance(a, bool) and a == b,
    "IsPresent": lambda a, b: (a is not _MISSING) == b,
    "IsNull": lambda a, b: (a is None) == b,
    "IsNumeric": lambda a, b: _is_number(a) == b,
    "IsString": lambda a, b: isinstance(a, str) == b,
    "IsBoolean": lambda a, b: isinstance(a, bool) == b,
}


def _rule(rule: dict[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(_rule(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(_rule(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _rule(rule["Not"], data)
    value = _path(data, rule["Variable"])
    for op, fn in _COMPARISONS.items():
        if op in rule:
            if value is _MISSING and op != "IsPresent":
                return False  # AWS: a comparison on a missing field is false (IsPresent guards it)
            return fn(value, rule[op])
    raise UnsupportedASL(f"choice rule {sorted(rule)}")
