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
    _check_fields(asl)
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
                return _failed(backend, name, outcome.error, outcome.cause)
            data_json, data = outcome.output_json or b"null", _UNPARSED
            name = _next(state, name)
            if name is None:
                return ExecutionOutcome(True, data_json)
        elif kind == "Choice":
            if data is _UNPARSED:
                data = json.loads(data_json)
            try:
                name = _choose(state, data)
            except _StatesRuntime as e:
                return _failed(backend, name, ERROR_RUNTIME, e.cause)
        elif kind == "Fail":
            if data is _UNPARSED:
                data = json.loads(data_json)
            try:
                cause = _fail_cause(state, name, data)
            except _StatesRuntime as e:
                return _failed(backend, name, ERROR_RUNTIME, e.cause)
            backend.fail(name, state.get("Error", "States.Failed"), cause)
            return ExecutionOutcome(False, None, state.get("Error"), cause)
        elif kind == "Succeed":
            return ExecutionOutcome(True, data_json)
        elif kind == "Pass":
            name = _next(state, name)
            if name is None:
                return ExecutionOutcome(True, data_json)
        else:  # _check_fields refused it already
            raise UnsupportedASL(f"state {name!r} of type {kind!r}")


def _failed(backend: Backend, state: str, error: str, cause: str | None) -> ExecutionOutcome:
    backend.fail(state, error, cause or "")
    return ExecutionOutcome(False, None, error, cause)


# Errors the execution itself raises, in AWS's words (the cause AWS writes after its prefix
# "An error occurred while executing the state '<name>' (entered at the event id #<n>). ").
ERROR_RUNTIME = "States.Runtime"
# A Choice without a matching rule or a Default: the ASL specification names the error
# States.NoChoiceMatched, but AWS fails the execution with States.Runtime and these words.
NO_CHOICE_CAUSE = "Failed to transition out of the state. The state does not point to a next state."


class _StatesRuntime(Exception):
    """A ``States.Runtime`` failure of the execution (not of a Task), with its cause."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


# The fields the interpreter models, per state type: exactly what ``dorc.plan`` emits (and a
# Comment, which changes nothing). Any other field (InputPath, ResultPath, ResultSelector,
# OutputPath where it is not modelled, ErrorPath, TimeoutSeconds, Assign, ...) would change
# what runs, so the whole definition is refused before anything runs.
_TOP_LEVEL_FIELDS = {"Comment", "StartAt", "States"}
_STATE_FIELDS: dict[str, set[str]] = {
    # Retry and Catch are checked further in _task; Parameters/OutputPath values there too
    "Task": {"Type", "Comment", "Resource", "Parameters", "OutputPath", "Retry", "Catch", "Next", "End"},
    "Choice": {"Type", "Comment", "Choices", "Default"},
    "Fail": {"Type", "Comment", "Error", "Cause", "CausePath"},
    "Succeed": {"Type", "Comment"},
    "Pass": {"Type", "Comment", "Next", "End"},
}


def _check_fields(asl: dict[str, Any]) -> None:
    extra = set(asl) - _TOP_LEVEL_FIELDS
    if extra:
        raise UnsupportedASL(f"state machine fields {sorted(extra)}")
    for name, state in asl["States"].items():
        kind = state.get("Type")
        allowed = _STATE_FIELDS.get(kind)
        if allowed is None:
            raise UnsupportedASL(f"state {name!r} of type {kind!r}")
        extra = set(state) - allowed
        if extra:
            raise UnsupportedASL(f"state {name!r} of type {kind!r}: fields {sorted(extra)} are not modelled")
        if kind == "Fail" and "Cause" in state and "CausePath" in state:
            raise UnsupportedASL(f"state {name!r}: both Cause and CausePath")


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
            raise UnsupportedASL(f"state {name!r} retries {retry['ErrorEquals']}, which can happen in local runs")
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
    paths = [a.strip() for a in m.group(2).split(",")[1:]]
    pieces: list[str | None] = []  # the template's text, None for each placeholder
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and i + 1 < len(template):  # \' \{ \} \\ stand for themselves
            pieces.append(template[i + 1])
            i += 2
        elif template.startswith("{}", i):
            pieces.append(None)
            i += 2
        else:
            pieces.append(ch)
            i += 1
    placeholders = pieces.count(None)
    if placeholders != len(paths):
        more = "placeholders than arguments" if placeholders > len(paths) else "arguments than placeholders"
        raise UnsupportedASL(f"state {name!r}: CausePath {expr!r} has more {more}")
    args = []
    for path in paths:
        value = _path(data, path)
        if value is _MISSING:  # AWS fails the execution (the plan's Fail states read only checked fields)
            shown = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            raise _StatesRuntime(f"The function '{expr}' had the following error: The JsonPath argument "
                                 f"for the field '{path}' could not be found in the input '{shown}'")
        args.append(value if isinstance(value, str) else json.dumps(value))
    values = iter(args)
    return "".join(next(values) if p is None else p for p in pieces)


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
        raise _StatesRuntime(NO_CHOICE_CAUSE)
    return state["Default"]


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
    ops = [k for k in rule if k not in ("Variable", "Next", "Comment")]
    if len(ops) == 1 and "Variable" not in rule:
        if ops[0] == "And":
            return all(_rule(r, data) for r in rule["And"])
        if ops[0] == "Or":
            return any(_rule(r, data) for r in rule["Or"])
        if ops[0] == "Not":
            return not _rule(rule["Not"], data)
    elif len(ops) == 1 and ops[0] in _COMPARISONS and "Variable" in rule:
        op, variable = ops[0], rule["Variable"]
        value = _path(data, variable)
        if value is _MISSING and op != "IsPresent":
            # AWS fails the execution: only IsPresent may look at a field that is not there
            # (the plan's guard asks IsPresent before it compares)
            raise _StatesRuntime(
                f"Invalid path '{variable}': The choice state's condition path references an invalid value.")
        return _COMPARISONS[op](value, rule[op])
    raise UnsupportedASL(f"choice rule {sorted(rule)}")
