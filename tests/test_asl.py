"""The Step Functions interpreter (``dorc.targets.asl``), table by table.

The unit under test is the interpreter; the Lambda and Step Functions side is a tiny fake
backend with canned answers per ARN. The last group runs the ASL of real plans (built through
``dorc.api.plan_layer``) and checks the contract failures come out with the plan's own words.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dorc.api import plan_layer
from dorc.plan import (
    CONTRACT,
    ERROR_CONTRACT,
    ERROR_DATA_LIMIT,
    ERROR_STATUS,
    STATE_PAYLOAD_MAX_BYTES,
    TRANSIENT_LAMBDA_ERRORS,
    contract_failures,
    contract_guard,
)
from dorc.project import find_project
from dorc.targets import asl
from helpers import OK_HANDLER, OUTSIDE_VARS, chain_main, make_project

LIMIT = STATE_PAYLOAD_MAX_BYTES
FN1 = "arn:aws:lambda:eu-west-2:000000000000:function:demo-main-f1-local"
FN2 = "arn:aws:lambda:eu-west-2:000000000000:function:demo-main-f2-local"
SM = "arn:aws:states:eu-west-2:000000000000:stateMachine:b-two-local"


# -- the fake Lambda / Step Functions side ---------------------------------------------------

def ok(obj: Any) -> asl.TaskOutcome:
    return asl.TaskOutcome(output_json=json.dumps(obj).encode())


class FakeBackend:
    """Canned answers per ARN (a TaskOutcome, or a function of the input bytes returning one);
    records every call and every ``fail``."""

    def __init__(self, answers: dict[str, Any] | None = None):
        self.answers = dict(answers or {})
        self.calls: list[dict[str, Any]] = []
        self.failures: list[tuple[str, str, str]] = []

    def _answer(self, arn: str, input_json: bytes) -> asl.TaskOutcome:
        answer = self.answers[arn]
        return answer(input_json) if callable(answer) else answer

    def invoke_lambda(self, function_arn, state_name, input_json, parsed=asl.UNPARSED):
        self.calls.append({"kind": "lambda", "arn": function_arn, "state": state_name,
                           "input": input_json, "parsed": parsed})
        return self._answer(function_arn, input_json)

    def start_execution(self, state_machine_arn, input_json):
        self.calls.append({"kind": "execution", "arn": state_machine_arn, "input": input_json})
        return self._answer(state_machine_arn, input_json)

    def fail(self, state_name, error, cause):
        self.failures.append((state_name, error, cause))

    @property
    def arns(self) -> list[str]:
        return [c["arn"] for c in self.calls]


def lambda_task(arn: str = FN1, **fields: Any) -> dict[str, Any]:
    """A Task exactly as ``dorc.plan.build_asl`` writes one (minus Next/End)."""
    return {"Type": "Task", "Resource": asl.LAMBDA_INVOKE,
            "Parameters": {"FunctionName": arn, "Payload.$": "$"}, "OutputPath": "$.Payload", **fields}


def handover_task(arn: str = SM, **fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": asl.START_EXECUTION_SYNC,
            "Parameters": {"StateMachineArn": arn, "Input.$": "$"}, "OutputPath": "$.Output", **fields}


def machine(states: dict[str, Any], start: str | None = None) -> dict[str, Any]:
    return {"Comment": "test", "StartAt": start or next(iter(states)), "States": states}


def run(definition: dict[str, Any], data: Any = None, answers: dict[str, Any] | None = None, *,
        raw: bytes | None = None) -> tuple[asl.ExecutionOutcome, FakeBackend]:
    backend = FakeBackend(answers)
    input_json = raw if raw is not None else json.dumps(data).encode()
    return asl.execute(definition, input_json, backend), backend


# -- every state type the plan emits (and Pass, which the interpreter also models) ------------

RAW = b'{"a": 1,   "s": "\\u00e9"}'  # odd spacing: outputs are passed on byte for byte
ANSWER = b'{"statusCode": 200, "body": "x"}'

STATE_CASES = [
    pytest.param({"s": {"Type": "Succeed"}}, {},
                 asl.ExecutionOutcome(True, RAW), id="Succeed-returns-its-input-bytes"),
    pytest.param({"p": {"Type": "Pass", "End": True}}, {},
                 asl.ExecutionOutcome(True, RAW), id="Pass-End"),
    pytest.param({"p": {"Type": "Pass", "Comment": "c", "Next": "s"}, "s": {"Type": "Succeed"}}, {},
                 asl.ExecutionOutcome(True, RAW), id="Pass-Next-Succeed"),
    pytest.param({"t": lambda_task(End=True)}, {FN1: asl.TaskOutcome(ANSWER)},
                 asl.ExecutionOutcome(True, ANSWER), id="Task-lambda-End"),
    pytest.param({"t": lambda_task(Next="s", Comment="Lambda x"), "s": {"Type": "Succeed"}},
                 {FN1: asl.TaskOutcome(ANSWER)},
                 asl.ExecutionOutcome(True, ANSWER), id="Task-lambda-Next-Succeed"),
    pytest.param({"t": lambda_task(End=True)}, {FN1: asl.TaskOutcome()},
                 asl.ExecutionOutcome(True, b"null"), id="Task-without-output-is-null"),
    pytest.param({"h": handover_task(End=True)}, {SM: asl.TaskOutcome(b'{"done": true}')},
                 asl.ExecutionOutcome(True, b'{"done": true}'), id="Task-startExecution.sync:2-End"),
    pytest.param({"c": {"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": 1, "Next": "s"}],
                        "Default": "f"},
                  "s": {"Type": "Succeed"}, "f": {"Type": "Fail", "Error": "E"}}, {},
                 asl.ExecutionOutcome(True, RAW), id="Choice-rule-Next"),
    pytest.param({"c": {"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": 2, "Next": "f"}],
                        "Default": "s"},
                  "s": {"Type": "Succeed"}, "f": {"Type": "Fail", "Error": "E"}}, {},
                 asl.ExecutionOutcome(True, RAW), id="Choice-Default"),
    pytest.param({"f": {"Type": "Fail", "Error": "my.Error", "Cause": "because"}}, {},
                 asl.ExecutionOutcome(False, None, "my.Error", "because"), id="Fail-Error-Cause"),
    pytest.param({"f": {"Type": "Fail", "Error": "my.Error"}}, {},
                 asl.ExecutionOutcome(False, None, "my.Error", ""), id="Fail-without-Cause"),
    pytest.param({"f": {"Type": "Fail", "Error": "my.Error", "CausePath": "States.Format('a is {}', $.a)"}}, {},
                 asl.ExecutionOutcome(False, None, "my.Error", "a is 1"), id="Fail-CausePath"),
]


@pytest.mark.parametrize("states, answers, expected", STATE_CASES)
def test_state_types(states, answers, expected):
    outcome, _ = run(machine(states), answers=answers, raw=RAW)
    assert outcome == expected


def test_lambda_task_is_handed_the_arn_state_name_and_input_bytes():
    outcome, backend = run(machine({"first": lambda_task(Next="s"), "s": {"Type": "Succeed"}}),
                           answers={FN1: asl.TaskOutcome(ANSWER)}, raw=RAW)
    assert outcome.succeeded
    (call,) = backend.calls
    assert (call["kind"], call["arn"], call["state"], call["input"]) == ("lambda", FN1, "first", RAW)
    # nothing parsed the execution input yet: the backend is told so
    assert call["parsed"] is asl.UNPARSED
    assert backend.failures == []


def test_output_of_one_task_is_the_next_ones_input_and_a_choice_hands_over_its_parse():
    definition = machine({
        "f1": lambda_task(FN1, Next="f1 returned"),
        "f1 returned": contract_guard("f1", "f2"),
        **contract_failures("f1"),
        "f2": lambda_task(FN2, Next="f3"),
        "f3": lambda_task(FN1, End=True),
    })
    first = b'{"statusCode": 200,  "body": {"k": [1, 2]}}'
    outcome, backend = run(definition, {"in": 1}, {FN1: asl.TaskOutcome(first), FN2: asl.TaskOutcome(b'"two"')})
    assert outcome == asl.ExecutionOutcome(True, first)
    assert [c["input"] for c in backend.calls] == [b'{"in": 1}', first, b'"two"']
    # after a Choice the parsed data is passed along (the runtime may use it as the event)
    assert backend.calls[1]["parsed"] == {"statusCode": 200, "body": {"k": [1, 2]}}
    # a Task straight after a Task: nothing parsed in between
    assert backend.calls[2]["parsed"] is asl.UNPARSED


def test_handover_task_starts_the_child_with_the_current_data():
    outcome, backend = run(machine({"start b/two": handover_task(End=True)}),
                           answers={SM: asl.TaskOutcome(b'{"child": "output"}')}, raw=RAW)
    assert outcome == asl.ExecutionOutcome(True, b'{"child": "output"}')
    assert backend.calls == [{"kind": "execution", "arn": SM, "input": RAW}]


@pytest.mark.parametrize("state, error, cause", [
    ({"Type": "Fail", "Error": "E1", "Cause": "c1"}, "E1", "c1"),
    ({"Type": "Fail", "Error": "E2"}, "E2", ""),
    ({"Type": "Fail", "Cause": "c3"}, "States.Failed", "c3"),
    ({"Type": "Fail", "Error": "E4", "CausePath": "States.Format('{}', $.a)"}, "E4", "1"),
])
def test_fail_state_reports_to_the_backend(state, error, cause):
    outcome, backend = run(machine({"the end": state}), {"a": 1})
    assert not outcome.succeeded and outcome.output_json is None
    assert outcome.cause == cause
    assert backend.failures == [("the end", error, cause)]


# -- Choice rules: every operator, matching, not matching, wrong type, missing -----------------

MISSING = object()  # the variable is absent from the input
# A comparison on a missing variable fails the execution in AWS (only IsPresent may look at a
# field that is not there): the row's expectation is that error, not a match or a non-match.
RUNTIME = "States.Runtime"

CHOICE_CASES = [
    # operator, operand, value, matches
    ("NumericEquals", 200, 200, True),
    ("NumericEquals", 200, 200.0, True),
    ("NumericEquals", 200, 201, False),
    ("NumericEquals", 200, "200", False),
    ("NumericEquals", 1, True, False),  # a boolean is not the number 1
    ("NumericEquals", 0, False, False),
    ("NumericEquals", 200, None, False),
    ("NumericEquals", 200, [200], False),
    ("NumericEquals", 200, MISSING, RUNTIME),
    ("NumericLessThan", 300, 299, True),
    ("NumericLessThan", 300, 299.999, True),
    ("NumericLessThan", 300, 300, False),
    ("NumericLessThan", 300, "1", False),
    ("NumericLessThan", 300, MISSING, RUNTIME),
    ("NumericLessThanEquals", 300, 300, True),
    ("NumericLessThanEquals", 300, 300.001, False),
    ("NumericLessThanEquals", 300, None, False),
    ("NumericGreaterThan", 199, 200, True),
    ("NumericGreaterThan", 199, 199, False),
    ("NumericGreaterThan", 199, {"n": 500}, False),
    ("NumericGreaterThanEquals", 200, 200, True),
    ("NumericGreaterThanEquals", 200, -1e9, False),
    ("NumericGreaterThanEquals", 200, 199.999, False),
    ("NumericGreaterThanEquals", 200, "500", False),
    ("NumericGreaterThanEquals", 200, True, False),
    ("NumericGreaterThanEquals", 200, MISSING, RUNTIME),
    ("StringEquals", "ok", "ok", True),
    ("StringEquals", "ok", "OK", False),
    ("StringEquals", "1", 1, False),
    ("StringEquals", "ü", "ü", True),
    ("StringEquals", "ok", MISSING, RUNTIME),
    ("BooleanEquals", True, True, True),
    ("BooleanEquals", True, False, False),
    ("BooleanEquals", False, False, True),
    ("BooleanEquals", True, 1, False),
    ("BooleanEquals", True, "true", False),
    ("IsPresent", True, 0, True),
    ("IsPresent", True, None, True),  # a null value is present
    ("IsPresent", True, MISSING, False),
    ("IsPresent", False, MISSING, True),
    ("IsPresent", False, "", False),
    ("IsNull", True, None, True),
    ("IsNull", True, 0, False),
    ("IsNull", False, 0, True),
    ("IsNull", True, MISSING, RUNTIME),
    ("IsNumeric", True, 1, True),
    ("IsNumeric", True, 1.5, True),
    ("IsNumeric", True, -3, True),
    ("IsNumeric", True, "1", False),
    ("IsNumeric", True, True, False),
    ("IsNumeric", True, None, False),
    ("IsNumeric", True, [1], False),
    ("IsNumeric", False, "1", True),
    ("IsNumeric", False, 1, False),
    ("IsNumeric", True, MISSING, RUNTIME),
    ("IsString", True, "", True),
    ("IsString", True, 1, False),
    ("IsString", False, MISSING, RUNTIME),
    ("IsString", False, None, True),
    ("IsBoolean", True, False, True),
    ("IsBoolean", True, 0, False),
    ("IsBoolean", False, "true", True),
    ("IsBoolean", True, MISSING, RUNTIME),
    ("NumericLessThanEquals", 300, MISSING, RUNTIME),
    ("NumericGreaterThan", 199, MISSING, RUNTIME),
    ("BooleanEquals", True, MISSING, RUNTIME),
]


def _choice(rule: dict[str, Any]) -> dict[str, Any]:
    return machine({
        "c": {"Type": "Choice", "Choices": [{**rule, "Next": "yes"}], "Default": "no"},
        "yes": {"Type": "Succeed"},
        "no": {"Type": "Fail", "Error": "NoMatch"},
    })


def matches(rule: dict[str, Any], data: Any) -> bool | str:
    """True (the rule's Next), False (the Default), or the error the execution failed with."""
    outcome, _ = run(_choice(rule), data)
    return True if outcome.succeeded else False if outcome.error == "NoMatch" else outcome.error


CHOICE_OPERATORS = sorted({c[0] for c in CHOICE_CASES}, key=[c[0] for c in CHOICE_CASES].index)


@pytest.mark.parametrize("op", CHOICE_OPERATORS)
def test_choice_operator(op):
    """One item per operator; every row of its table: (operand, value) -> matches?"""
    rows = [(operand, value, expected) for o, operand, value, expected in CHOICE_CASES if o == op]
    assert len(rows) >= 3  # at least a match, a non-match and a wrong type or missing value
    assert {expected for *_, expected in rows} >= {True, False}
    got = []
    for operand, value, _ in rows:
        data = {"other": 1} if value is MISSING else {"v": value, "other": 1}
        got.append(matches({"Variable": "$.v", op: operand}, data))
    shown = ["missing" if v is MISSING else v for _, v, _ in rows]
    assert list(zip(shown, got)) == list(zip(shown, [e for *_, e in rows]))


@pytest.mark.parametrize("variable, data, expected", [
    ("$.a.b", {"a": {"b": 7}}, True),
    ("$.a.b", {"a": {"b": 8}}, False),
    ("$.a.b", {"a": 7}, RUNTIME),  # the path runs through a number: missing
    ("$.a.b", {"a": [{"b": 7}]}, RUNTIME),
    ("$.a.b", {"a.b": 7}, RUNTIME),
    ("$", 7, True),  # the whole input
    ("$", "7", False),
    ("$.a", [7], RUNTIME),  # the input is not an object
    ("$.a", None, RUNTIME),
])
def test_choice_variable_paths(variable, data, expected):
    assert matches({"Variable": variable, "NumericEquals": 7}, data) == expected


def _between(lo: int, hi: int) -> dict[str, Any]:
    return {"And": [{"Variable": "$.n", "NumericGreaterThanEquals": lo}, {"Variable": "$.n", "NumericLessThan": hi}]}


@pytest.mark.parametrize("rule, data, expected", [
    ({"Not": {"Variable": "$.n", "IsPresent": True}}, {}, True),
    ({"Not": {"Variable": "$.n", "IsPresent": True}}, {"n": None}, False),
    ({"Not": {"Variable": "$.n", "IsNumeric": True}}, {"n": "200"}, True),
    ({"Not": {"Variable": "$.n", "IsNumeric": True}}, {"n": 200}, False),
    (_between(200, 300), {"n": 200}, True),
    (_between(200, 300), {"n": 299}, True),
    (_between(200, 300), {"n": 199}, False),
    (_between(200, 300), {"n": 300}, False),
    (_between(200, 300), {"n": "250"}, False),
    ({"Or": [{"Variable": "$.n", "NumericEquals": 1}, {"Variable": "$.n", "StringEquals": "one"}]}, {"n": "one"}, True),
    ({"Or": [{"Variable": "$.n", "NumericEquals": 1}, {"Variable": "$.n", "StringEquals": "one"}]}, {"n": 2}, False),
    ({"Not": _between(200, 300)}, {"n": 503}, True),
    ({"Not": _between(200, 300)}, {"n": 204}, False),
    ({"And": [{"Variable": "$.n", "IsPresent": True}, {"Not": {"Variable": "$.n", "IsNull": True}}]}, {"n": 0}, True),
    ({"And": [{"Variable": "$.n", "IsPresent": True}, {"Not": {"Variable": "$.n", "IsNull": True}}]}, {"n": None}, False),
])
def test_choice_combinations(rule, data, expected):
    assert matches(rule, data) is expected


@pytest.mark.parametrize("rule, data", [
    pytest.param({"Variable": "$.n", "NumericEquals": 1}, {}, id="comparison"),
    pytest.param({"Variable": "$.n", "IsNull": False}, {"m": None}, id="type-test"),
    pytest.param({"Not": {"Variable": "$.n", "IsNumeric": True}}, {}, id="under-Not"),
    pytest.param({"Or": [{"Variable": "$.m", "IsPresent": True}, {"Variable": "$.n", "StringEquals": "x"}]}, {},
                 id="Or-reaches-it"),
    pytest.param({"And": [{"Variable": "$.m", "IsPresent": True}, {"Variable": "$.n", "StringEquals": "x"}]},
                 {"m": 1}, id="And-reaches-it"),
])
def test_a_comparison_on_a_missing_variable_fails_the_execution(rule, data):
    """AWS: "Invalid path ...", States.Runtime, through the backend's fail path like any failure."""
    variable = "$.n"
    cause = f"Invalid path '{variable}': The choice state's condition path references an invalid value."
    outcome, backend = run(_choice(rule), data)
    assert outcome == asl.ExecutionOutcome(False, None, "States.Runtime", cause)
    assert backend.failures == [("c", "States.Runtime", cause)]


@pytest.mark.parametrize("rule, data, expected", [
    # an earlier operand decides: the missing variable is never looked at
    ({"And": [{"Variable": "$.n", "IsPresent": True}, {"Variable": "$.n", "NumericEquals": 1}]}, {}, False),
    ({"Or": [{"Variable": "$.n", "IsPresent": False}, {"Variable": "$.n", "NumericEquals": 1}]}, {}, True),
    ({"Not": {"Variable": "$.n", "IsPresent": True}}, {}, True),
])
def test_is_present_guards_a_comparison(rule, data, expected):
    assert matches(rule, data) is expected


def test_choices_are_tried_in_order_and_the_first_match_wins():
    definition = machine({
        "c": {"Type": "Choice", "Default": "d", "Choices": [
            {"Variable": "$.n", "NumericGreaterThan": 0, "Next": "first"},
            {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "second"},
        ]},
        "first": {"Type": "Fail", "Error": "first"},
        "second": {"Type": "Fail", "Error": "second"},
        "d": {"Type": "Fail", "Error": "default"},
    })
    assert [run(definition, {"n": n})[0].error for n in (50, 5, 0)] == ["first", "first", "default"]


# The plan's own guard (dorc.plan.contract_guard): each input lands on the right branch.
GUARD_NAMES = ["f returned no statusCode", "f returned a non-numeric statusCode", "f returned no body", "f failed"]


@pytest.mark.parametrize("raw, branch", [
    (b'{"statusCode": 200, "body": ""}', "ok"),
    (b'{"statusCode": 299, "body": null}', "ok"),  # a null body is a body
    (b'{"statusCode": 250.5, "body": 1}', "ok"),
    (b'{"statusCode": 2e2, "body": 1}', "ok"),
    (b'{"statusCode": 199, "body": 1}', "f failed"),
    (b'{"statusCode": 300, "body": 1}', "f failed"),
    (b'{"statusCode": -200, "body": 1}', "f failed"),
    (b'{"body": 1}', "f returned no statusCode"),
    (b'{"StatusCode": 200, "body": 1}', "f returned no statusCode"),
    (b"{}", "f returned no statusCode"),
    (b"[]", "f returned no statusCode"),
    (b'"text"', "f returned no statusCode"),
    (b"200", "f returned no statusCode"),
    (b"null", "f returned no statusCode"),
    (b'{"statusCode": null, "body": 1}', "f returned a non-numeric statusCode"),
    (b'{"statusCode": "200", "body": 1}', "f returned a non-numeric statusCode"),
    (b'{"statusCode": true, "body": 1}', "f returned a non-numeric statusCode"),
    (b'{"statusCode": [200], "body": 1}', "f returned a non-numeric statusCode"),
    (b'{"statusCode": "abc"}', "f returned a non-numeric statusCode"),  # checked before the body
    (b'{"statusCode": 200}', "f returned no body"),
    (b'{"statusCode": 500}', "f returned no body"),  # checked before the code
])
def test_plan_contract_guard_branches(raw, branch):
    states = {"guard": contract_guard("f", "ok"), "ok": {"Type": "Succeed"}}
    states.update({name: {"Type": "Fail", "Error": name} for name in GUARD_NAMES})
    outcome, _ = run(machine(states), raw=raw)
    assert ("ok" if outcome.succeeded else outcome.error) == branch


# -- the intrinsic: Fail's CausePath = States.Format('…{}…', $.path, …) -------------------------

@pytest.mark.parametrize("cause_path, data, expected", [
    ("States.Format('f2 returned statusCode {}, outside 200-299', $.statusCode)", {"statusCode": 503},
     "f2 returned statusCode 503, outside 200-299"),
    ("States.Format('code {}', $.statusCode)", {"statusCode": -1}, "code -1"),
    ("States.Format('code {}', $.statusCode)", {"statusCode": 404.5}, "code 404.5"),
    ("States.Format('code {}', $.statusCode)", {"statusCode": "teapot"}, "code teapot"),  # strings unquoted
    ("States.Format('code {}', $.statusCode)", {"statusCode": True}, "code true"),
    ("States.Format('code {}', $.statusCode)", {"statusCode": None}, "code null"),
    ("States.Format('{} and {}', $.a, $.b.c)", {"a": 1, "b": {"c": "x"}}, "1 and x"),
    ("States.Format('{}-{}', $.a, $.b)", {"a": "{}", "b": 2}, "{}-2"),  # a value's braces are not placeholders
    ("States.Format('{}-{}', $.a, $.a)", {"a": 3}, "3-3"),
    ("States.Format('input: {}', $)", "hi", "input: hi"),
    ("States.Format('constant')", {}, "constant"),
    ("States.Format('$.a is not a path here: {}', $.a)", {"a": 1}, "$.a is not a path here: 1"),
    ("States.Format('{}',$.a)", {"a": 1}, "1"),
    ("States.Format('{}' ,   $.a)", {"a": 1}, "1"),
    ("States.Format('é {} ✓', $.a)", {"a": "ü"}, "é ü ✓"),
    # escapes: \' \{ \} \\ stand for themselves
    (r"States.Format('it\'s {}', $.a)", {"a": 7}, "it's 7"),
    (r"States.Format('\{\} is {}', $.a)", {"a": 7}, "{} is 7"),
    (r"States.Format('back\\slash {}', $.a)", {"a": 7}, "back\\slash 7"),
    (r"States.Format('\\{}', $.a)", {"a": 7}, "\\7"),  # an escaped backslash, then a placeholder
])
def test_states_format_cause_path(cause_path, data, expected):
    outcome, backend = run(machine({"f": {"Type": "Fail", "Error": "E", "CausePath": cause_path}}), data)
    assert outcome == asl.ExecutionOutcome(False, None, "E", expected)
    assert backend.failures == [("f", "E", expected)]


def test_cause_without_cause_path_is_taken_as_written():
    cause = "States.Format('{}', $.a) is not evaluated in Cause"
    outcome, _ = run(machine({"f": {"Type": "Fail", "Error": "E", "Cause": cause}}), {"a": 1})
    assert outcome.cause == cause


@pytest.mark.parametrize("cause_path, data, path, shown", [
    ("States.Format('code {}', $.statusCode)", {"body": 1}, "$.statusCode", '{"body":1}'),
    ("States.Format('{} and {}', $.a, $.b.c)", {"a": 1, "b": {}}, "$.b.c", '{"a":1,"b":{}}'),
    ("States.Format('{}', $.a)", "é", "$.a", '"é"'),  # the input is not an object
    ("States.Format('{}', $.a)", None, "$.a", "null"),
])
def test_states_format_on_a_missing_path_fails_the_execution(cause_path, data, path, shown):
    """AWS: States.Runtime instead of the Fail state's own error, naming the function and the path."""
    cause = (f"The function '{cause_path}' had the following error: The JsonPath argument for the field "
             f"'{path}' could not be found in the input '{shown}'")
    outcome, backend = run(machine({"f": {"Type": "Fail", "Error": "E", "CausePath": cause_path}}), data)
    assert outcome == asl.ExecutionOutcome(False, None, "States.Runtime", cause)
    assert backend.failures == [("f", "States.Runtime", cause)]


@pytest.mark.parametrize("cause_path", [
    "$.statusCode",  # a plain path: not what the plan writes
    "States.StringToJson($.a)",
    "States.Format('{} {}', $.a)",  # more placeholders than arguments
    "States.Format('{}', $.a, $.a)",  # more arguments than placeholders
    "States.Format('{} {}', $.missing)",  # refused before its missing path could fail the execution
    "States.Format('no placeholder', $.a)",
    "States.Format('{}', $.a[0])",  # array index
    "States.Format('{}', $$.Execution.Id)",  # context object
    "States.Format('{}', 'literal')",  # literal arguments
    "States.Format('it's {}', $.a)",  # an unescaped quote
    'States.Format("{}", $.a)',
    "States.Format('{}', a)",  # a path without $
    "States.Format('{}', $.a) ",
])
def test_unsupported_cause_paths_are_refused(cause_path):
    with pytest.raises(asl.UnsupportedASL, match="CausePath|path"):
        run(machine({"f": {"Type": "Fail", "Error": "E", "CausePath": cause_path}}), {"a": 1})


# -- the 256 KiB limit, in UTF-8 bytes --------------------------------------------------------

def json_string_of_bytes(size: int, char: str = "a") -> bytes:
    """A JSON string document of exactly ``size`` UTF-8 bytes."""
    width = len(char.encode())
    assert (size - 2) % width == 0
    return ('"' + char * ((size - 2) // width) + '"').encode()


EURO_UNDER = 2 + ((LIMIT - 2) // 3) * 3  # the largest document of 3-byte characters within the limit


@pytest.mark.parametrize("size, char, over", [
    (LIMIT, "a", False),
    (LIMIT + 1, "a", True),
    (LIMIT, "é", False),  # 2 bytes a character
    (LIMIT + 2, "é", True),  # 131,072 characters: half the limit, but too many bytes
    (EURO_UNDER, "€", False),
    (EURO_UNDER + 3, "€", True),  # 87,381 characters
])
def test_task_input_limit_in_utf8_bytes(size, char, over):
    payload = json_string_of_bytes(size, char)
    assert len(payload) == size
    if char != "a":
        assert len(payload.decode()) <= LIMIT // 2 + 2  # what is measured is bytes, not characters
    outcome, backend = run(machine({"t": lambda_task(End=True)}), raw=payload, answers={FN1: ok("done")})
    if over:
        assert outcome.error == ERROR_DATA_LIMIT == "States.DataLimitExceeded"
        assert not outcome.succeeded
        assert backend.calls == []  # refused before the function runs
        assert f"input is {size:,} bytes" in outcome.cause and f"{LIMIT:,} (256 KiB)" in outcome.cause
        assert "'t'" in outcome.cause
        assert backend.failures == [("t", ERROR_DATA_LIMIT, outcome.cause)]
    else:
        assert outcome == asl.ExecutionOutcome(True, b'"done"')
        assert backend.calls[0]["input"] == payload


@pytest.mark.parametrize("size, char, over", [
    (LIMIT, "a", False),
    (LIMIT + 1, "a", True),
    (LIMIT, "é", False),
    (LIMIT + 2, "é", True),
])
@pytest.mark.parametrize("task, arn", [(lambda_task, FN1), (handover_task, SM)], ids=["lambda", "handover"])
def test_task_output_limit_in_utf8_bytes(size, char, over, task, arn):
    big = json_string_of_bytes(size, char)
    outcome, backend = run(machine({"t": task(Next="s"), "s": {"Type": "Succeed"}}), {},
                           answers={arn: asl.TaskOutcome(big)})
    assert len(backend.calls) == 1
    if over:
        assert (outcome.succeeded, outcome.output_json, outcome.error) == (False, None, ERROR_DATA_LIMIT)
        assert f"output is {size:,} bytes" in outcome.cause
        assert backend.failures == [("t", ERROR_DATA_LIMIT, outcome.cause)]
    else:
        assert outcome == asl.ExecutionOutcome(True, big)


def test_handover_input_over_the_limit_is_not_started():
    payload = json_string_of_bytes(LIMIT + 1)
    outcome, backend = run(machine({"h": handover_task(End=True)}), raw=payload, answers={SM: ok(1)})
    assert outcome.error == ERROR_DATA_LIMIT and backend.calls == []


def test_limit_is_checked_on_each_task_input():
    """An output of exactly the limit is accepted, and handed on byte for byte as the next
    Task's input (which is measured again, and passes)."""
    first = json_string_of_bytes(LIMIT)
    definition = machine({"a": lambda_task(FN1, Next="b"), "b": lambda_task(FN2, End=True)})
    outcome, backend = run(definition, {}, {FN1: asl.TaskOutcome(first), FN2: ok("fine")})
    assert outcome == asl.ExecutionOutcome(True, b'"fine"')
    assert backend.calls[1]["input"] == first


# -- what the interpreter refuses -------------------------------------------------------------

REFUSED = [
    pytest.param({"w": {"Type": "Wait", "Seconds": 1, "End": True}}, "Wait", id="Wait"),
    pytest.param({"m": {"Type": "Map", "End": True}}, "Map", id="Map"),
    pytest.param({"p": {"Type": "Parallel", "Branches": [], "End": True}}, "Parallel", id="Parallel"),
    pytest.param({"x": {"Type": "Bogus", "End": True}}, "Bogus", id="unknown-type"),
    pytest.param({"p": {"Type": "Pass", "Result": {"a": 1}, "End": True}}, "Pass", id="Pass-Result"),
    pytest.param({"p": {"Type": "Pass", "Parameters": {"a": 1}, "End": True}}, "Pass", id="Pass-Parameters"),
    pytest.param({"p": {"Type": "Pass", "InputPath": "$.a", "End": True}}, "Pass", id="Pass-InputPath"),
    pytest.param({"p": {"Type": "Pass", "ResultPath": "$.r", "End": True}}, "Pass", id="Pass-ResultPath"),
    pytest.param({"p": {"Type": "Pass", "OutputPath": "$.a", "End": True}}, "Pass", id="Pass-OutputPath"),
    pytest.param({"p": {"Type": "Pass"}}, "neither Next nor End", id="Pass-without-Next-or-End"),
    pytest.param({"t": lambda_task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "t"}], End=True)}, "Catch",
                 id="Task-Catch"),
    pytest.param({"t": lambda_task(Retry=[{"ErrorEquals": ["States.ALL"]}], End=True)}, "retries", id="Retry-ALL"),
    pytest.param({"t": lambda_task(Retry=[{"ErrorEquals": ["States.TaskFailed"]}], End=True)}, "retries",
                 id="Retry-TaskFailed"),
    pytest.param({"t": lambda_task(Retry=[{"ErrorEquals": TRANSIENT_LAMBDA_ERRORS},
                                          {"ErrorEquals": ["ValueError"]}], End=True)}, "retries",
                 id="Retry-user-error-after-transient-ones"),
    pytest.param({"t": lambda_task(Retry=[{"ErrorEquals": [*TRANSIENT_LAMBDA_ERRORS, "Lambda.Unknown"]}], End=True)},
                 "retries", id="Retry-non-transient-Lambda-error"),
    pytest.param({"t": {**lambda_task(End=True), "Resource": "arn:aws:states:::sqs:sendMessage"}}, "resource",
                 id="Task-other-service"),
    pytest.param({"t": {**lambda_task(End=True), "Resource": FN1}}, "resource", id="Task-bare-Lambda-ARN"),
    pytest.param({"t": {**lambda_task(End=True), "Resource": "arn:aws:states:::states:startExecution.sync"}},
                 "resource", id="Task-startExecution.sync-v1"),
    pytest.param({"t": lambda_task(Parameters={"FunctionName": FN1, "Payload.$": "$", "InvocationType": "Event"},
                                   End=True)}, "Parameters", id="lambda-extra-parameter"),
    pytest.param({"t": lambda_task(Parameters={"FunctionName": FN1}, End=True)}, "Parameters",
                 id="lambda-without-Payload"),
    pytest.param({"t": lambda_task(Parameters={"FunctionName": FN1, "Payload": {"a": 1}}, End=True)}, "Parameters",
                 id="lambda-static-Payload"),
    pytest.param({"t": lambda_task(Parameters={"FunctionName": FN1, "Payload.$": "$.a"}, End=True)}, "Payload",
                 id="lambda-Payload-path"),
    pytest.param({"t": lambda_task(OutputPath="$", End=True)}, "OutputPath", id="lambda-OutputPath-$"),
    pytest.param({"t": {k: v for k, v in lambda_task(End=True).items() if k != "OutputPath"}}, "OutputPath",
                 id="lambda-without-OutputPath"),
    pytest.param({"t": handover_task(Parameters={"StateMachineArn": SM, "Input.$": "$", "Name": "x"}, End=True)},
                 "Parameters", id="execution-extra-parameter"),
    pytest.param({"t": handover_task(Parameters={"StateMachineArn": SM, "Input.$": "$.a"}, End=True)}, "Input",
                 id="execution-Input-path"),
    pytest.param({"t": handover_task(OutputPath="$.Output.x", End=True)}, "OutputPath",
                 id="execution-OutputPath"),
    pytest.param({"c": {"Type": "Choice", "Choices": [{"Variable": "$.a", "StringMatches": "x*", "Next": "s"}],
                        "Default": "s"}, "s": {"Type": "Succeed"}}, "choice rule", id="Choice-StringMatches"),
    pytest.param({"c": {"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEqualsPath": "$.b", "Next": "s"}],
                        "Default": "s"}, "s": {"Type": "Succeed"}}, "choice rule", id="Choice-NumericEqualsPath"),
    pytest.param({"c": {"Type": "Choice", "Choices": [{"Variable": "$.a", "TimestampEquals": "2020", "Next": "s"}],
                        "Default": "s"}, "s": {"Type": "Succeed"}}, "choice rule", id="Choice-TimestampEquals"),
    pytest.param({"c": {"Type": "Choice", "Choices": [{"Variable": "$.a", "StringLessThan": "x", "Next": "s"}],
                        "Default": "s"}, "s": {"Type": "Succeed"}}, "choice rule", id="Choice-StringLessThan"),
    pytest.param({"c": {"Type": "Choice", "Choices": [{"Variable": "a", "IsPresent": True, "Next": "s"}],
                        "Default": "s"}, "s": {"Type": "Succeed"}}, "path", id="Choice-path-without-$"),
    pytest.param({"c": {"Type": "Choice", "Choices": [{"Variable": "$[0]", "IsPresent": True, "Next": "s"}],
                        "Default": "s"}, "s": {"Type": "Succeed"}}, "path", id="Choice-path-index"),
]


@pytest.mark.parametrize("states, words", REFUSED)
def test_unmodelled_asl_is_refused(states, words):
    backend = FakeBackend({FN1: ok("x"), SM: ok("x")})
    with pytest.raises(asl.UnsupportedASL, match=words):
        asl.execute(machine(states), b'{"a": "1"}', backend)
    assert backend.calls == []  # refused before anything ran
    assert backend.failures == []


def test_task_without_next_or_end_is_refused_after_it_ran():
    task = lambda_task()  # neither Next nor End
    backend = FakeBackend({FN1: ok("x")})
    with pytest.raises(asl.UnsupportedASL, match="neither Next nor End"):
        asl.execute(machine({"t": task}), b"{}", backend)
    assert backend.arns == [FN1]


@pytest.mark.parametrize("retry", [
    [{"ErrorEquals": TRANSIENT_LAMBDA_ERRORS, "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}],
    [{"ErrorEquals": ["Lambda.TooManyRequestsException"]}],
    [{"ErrorEquals": ["Lambda.ServiceException"]}, {"ErrorEquals": ["Lambda.SdkClientException"]}],
    [],
])
def test_retries_of_transient_lambda_errors_are_accepted(retry):
    outcome, backend = run(machine({"t": lambda_task(Retry=retry, End=True)}), {}, {FN1: ok("x")})
    assert outcome == asl.ExecutionOutcome(True, b'"x"')
    assert backend.arns == [FN1]


# -- Task errors ------------------------------------------------------------------------------

LAMBDA_CAUSE = json.dumps({"errorMessage": "division by zero", "errorType": "ZeroDivisionError",
                           "stackTrace": ["  File \"lambda.py\", line 2"]})


@pytest.mark.parametrize("task, arn, error, cause", [
    (lambda_task, FN1, "ZeroDivisionError", LAMBDA_CAUSE),
    (lambda_task, FN1, "Sandbox.Timedout", "Task timed out after 3.00 seconds"),
    (lambda_task, FN1, "Runtime.ImportModuleError", "Unable to import module 'lambda'"),
    # transient Lambda errors are retried in AWS; they cannot happen in-process, so no retry here
    (lambda_task, FN1, "Lambda.TooManyRequestsException", "rate exceeded"),
    (handover_task, SM, "States.TaskFailed", "b/two: dorc.NonSuccessStatusCode: g1 returned statusCode 500"),
    (handover_task, SM, "StateMachineDoesNotExist", "no plan for arn"),
])
def test_task_error_fails_the_execution_with_its_error_and_cause(task, arn, error, cause):
    definition = machine({"t": task(Retry=[{"ErrorEquals": TRANSIENT_LAMBDA_ERRORS}], Next="after"),
                          "after": lambda_task(FN2, End=True)})
    outcome, backend = run(definition, {"in": 1}, {arn: asl.TaskOutcome(error=error, cause=cause), FN2: ok("no")})
    assert outcome == asl.ExecutionOutcome(False, None, error, cause)
    assert backend.failures == [("t", error, cause)]
    assert backend.arns == [arn]  # once, and nothing after it


def test_task_error_without_cause_reports_an_empty_cause_to_the_backend():
    outcome, backend = run(machine({"t": lambda_task(End=True)}), {}, {FN1: asl.TaskOutcome(error="Boom")})
    assert (outcome.succeeded, outcome.error) == (False, "Boom")
    assert backend.failures == [("t", "Boom", "")]


def test_an_error_wins_over_an_output():
    outcome, backend = run(machine({"t": lambda_task(End=True)}), {},
                           {FN1: asl.TaskOutcome(output_json=b'{"statusCode": 200}', error="E", cause="c")})
    assert outcome == asl.ExecutionOutcome(False, None, "E", "c")


# -- latent bugs (outside what the plan emits) -----------------------------------------------

@pytest.mark.parametrize("states", [
    pytest.param({"t": lambda_task(ResultPath="$.result", End=True)}, id="Task-ResultPath"),
    pytest.param({"t": lambda_task(ResultSelector={"code.$": "$.Payload.statusCode"}, End=True)},
                 id="Task-ResultSelector"),
    pytest.param({"t": lambda_task(InputPath="$.a", End=True)}, id="Task-InputPath"),
    pytest.param({"c": {"Type": "Choice", "InputPath": "$.a", "Default": "s",
                        "Choices": [{"Variable": "$.b", "IsPresent": True, "Next": "s"}]},
                  "s": {"Type": "Succeed"}}, id="Choice-InputPath"),
    pytest.param({"s": {"Type": "Succeed", "OutputPath": "$.a"}}, id="Succeed-OutputPath"),
    pytest.param({"t": lambda_task(ResultPath=None, End=True)}, id="Task-ResultPath-null"),
    pytest.param({"t": handover_task(ResultPath="$.r", End=True)}, id="handover-ResultPath"),
    pytest.param({"t": lambda_task(TimeoutSeconds=3, End=True)}, id="Task-TimeoutSeconds"),
    pytest.param({"t": lambda_task(Assign={"x.$": "$"}, End=True)}, id="Task-Assign"),
    pytest.param({"c": {"Type": "Choice", "OutputPath": "$.a", "Default": "s",
                        "Choices": [{"Variable": "$.a", "IsPresent": True, "Next": "s"}]},
                  "s": {"Type": "Succeed"}}, id="Choice-OutputPath"),
    pytest.param({"s": {"Type": "Succeed", "InputPath": "$.a"}}, id="Succeed-InputPath"),
    pytest.param({"f": {"Type": "Fail", "Error": "E", "InputPath": "$.a"}}, id="Fail-InputPath"),
    pytest.param({"f": {"Type": "Fail", "ErrorPath": "$.a"}}, id="Fail-ErrorPath"),
    pytest.param({"f": {"Type": "Fail", "Error": "E", "Cause": "c", "CausePath": "States.Format('{}', $.b)"}},
                 id="Fail-Cause-and-CausePath"),
])
def test_unmodelled_input_output_processing_is_refused(states):
    backend = FakeBackend({FN1: ok({"statusCode": 200, "body": 1}), SM: ok(1)})
    with pytest.raises(asl.UnsupportedASL, match="not modelled|both Cause and CausePath"):
        asl.execute(machine(states), b'{"a": {"b": 1}}', backend)
    assert backend.calls == [] and backend.failures == []


@pytest.mark.parametrize("fields", [{"TimeoutSeconds": 60}, {"QueryLanguage": "JSONata"}, {"Version": "1.0"}])
def test_unmodelled_state_machine_fields_are_refused(fields):
    with pytest.raises(asl.UnsupportedASL, match="state machine fields"):
        run({**machine({"s": {"Type": "Succeed"}}), **fields}, {})


def test_an_unmodelled_state_is_refused_before_anything_runs():
    """The whole definition is checked first: a Lambda must not run before a later state is refused."""
    definition = machine({"t": lambda_task(Next="w"), "w": {"Type": "Wait", "Seconds": 1, "Next": "s"},
                          "s": {"Type": "Succeed", "OutputPath": "$.Payload"}})
    for refused in (definition, {**definition, "States": {**definition["States"], "w": {"Type": "Pass", "Next": "s"}}}):
        backend = FakeBackend({FN1: ok({"statusCode": 200, "body": 1})})
        with pytest.raises(asl.UnsupportedASL):
            asl.execute(refused, b"{}", backend)
        assert backend.calls == []


@pytest.mark.parametrize("rule", [
    {"Variable": "$.a", "NumericEquals": 1, "StringEquals": "1"},  # two operators
    {"Variable": "$.a"},  # none
    {"NumericEquals": 1},  # no Variable
    {"And": [{"Variable": "$.a", "IsPresent": True}], "Variable": "$.a"},
    {"And": [{"Variable": "$.a", "IsPresent": True}], "Not": {"Variable": "$.a", "IsPresent": True}},
    {"Variable": "$.a", "IsPresent": True, "Assign": {"x": 1}},
])
def test_malformed_choice_rules_are_refused(rule):
    with pytest.raises(asl.UnsupportedASL, match="choice rule"):
        run(_choice(rule), {"a": 1})


def test_choice_without_match_or_default_fails_like_aws():
    """The ASL specification names this States.NoChoiceMatched; AWS fails the execution with
    States.Runtime, "Failed to transition out of the state. ..." (what the interpreter follows)."""
    definition = machine({"c": {"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": 1, "Next": "s"}]},
                          "s": {"Type": "Succeed"}})
    outcome, backend = run(definition, {"a": 2})
    assert (outcome.succeeded, outcome.error) == (False, "States.Runtime")
    assert outcome.cause == asl.NO_CHOICE_CAUSE == (
        "Failed to transition out of the state. The state does not point to a next state.")
    assert backend.failures == [("c", "States.Runtime", asl.NO_CHOICE_CAUSE)]
    assert run(definition, {"a": 1})[0] == asl.ExecutionOutcome(True, b'{"a": 1}')


# -- end to end: the ASL of real plans ---------------------------------------------------------

@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for var in OUTSIDE_VARS:
            mp.delenv(var, raising=False)
        root = make_project(tmp_path_factory.mktemp("asl"), {
            "demo/main": {"main": chain_main("f1", "f2"), "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}},
            "a/one": {"main": chain_main("h1", handover="b/two"), "functions": {"h1": OK_HANDLER}},
            "b/two": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}},
        })
        project = find_project(root)
        return {key: plan_layer(project, *key.split("/")) for key in ("demo/main", "a/one", "b/two")}


def _rules(rule: dict[str, Any]):
    yield rule
    for sub in rule.get("And", []) + rule.get("Or", []) + ([rule["Not"]] if "Not" in rule else []):
        yield from _rules(sub)


def test_plans_use_only_what_these_tests_cover(plans):
    """Guards the tables above: a new state type, operator or intrinsic in the plan shows up here."""
    types, operators, cause_paths = set(), set(), set()
    for plan in plans.values():
        for state in plan.asl["States"].values():
            types.add(state["Type"])
            for choice in state.get("Choices", []):
                for rule in _rules(choice):
                    operators.update(k for k in rule if k not in ("Variable", "Next"))
            if "CausePath" in state:
                cause_paths.add(state["CausePath"].split("(")[0])
            if state["Type"] == "Task":
                assert state["Resource"] in (asl.LAMBDA_INVOKE, asl.START_EXECUTION_SYNC)
    assert types == {"Task", "Choice", "Fail", "Succeed"}
    assert operators <= set(CHOICE_OPERATORS) | {"And", "Or", "Not"}
    assert operators == {"IsPresent", "IsNumeric", "NumericGreaterThanEquals", "NumericLessThan", "And", "Not"}
    assert cause_paths == {"States.Format"}


def _layer_answers(plan, answers_by_key: dict[str, Any]) -> dict[str, Any]:
    return {plan.function(key).arn: answer for key, answer in answers_by_key.items()}


def _contract_cause(plans, fail_state: str) -> str:
    return plans["demo/main"].asl["States"][fail_state]["Cause"]


E2E_FAILURES = [
    # f1's answer, f2's answer, the Fail state, error, cause (the plan's words, written out)
    pytest.param(ok({"body": 1}), None, "f1 returned no statusCode", ERROR_CONTRACT,
                 f"f1 returned no 'statusCode' (not a JSON object, or an object without it): {CONTRACT}",
                 id="no-statusCode"),
    pytest.param(ok("just text"), None, "f1 returned no statusCode", ERROR_CONTRACT,
                 f"f1 returned no 'statusCode' (not a JSON object, or an object without it): {CONTRACT}",
                 id="not-an-object"),
    pytest.param(asl.TaskOutcome(b"null"), None, "f1 returned no statusCode", ERROR_CONTRACT,
                 f"f1 returned no 'statusCode' (not a JSON object, or an object without it): {CONTRACT}",
                 id="null"),
    pytest.param(ok({"statusCode": "200", "body": 1}), None, "f1 returned a non-numeric statusCode", ERROR_CONTRACT,
                 f"f1 returned a 'statusCode' that is not a number (\"200\", a string, is not 200): {CONTRACT}",
                 id="string-statusCode"),
    pytest.param(ok({"statusCode": 200, "body": 1}), ok({"statusCode": True, "body": 1}),
                 "f2 returned a non-numeric statusCode", ERROR_CONTRACT,
                 f"f2 returned a 'statusCode' that is not a number (\"200\", a string, is not 200): {CONTRACT}",
                 id="boolean-statusCode-in-f2"),
    pytest.param(ok({"statusCode": 200, "body": 1}), ok({"statusCode": 200}), "f2 returned no body", ERROR_CONTRACT,
                 f"f2 returned no 'body': {CONTRACT}", id="no-body"),
    pytest.param(ok({"statusCode": 200, "body": 1}), ok({"statusCode": 503, "body": "down"}), "f2 failed",
                 ERROR_STATUS, "f2 returned statusCode 503, outside 200-299", id="503"),
    pytest.param(ok({"statusCode": 404, "body": None}), None, "f1 failed", ERROR_STATUS,
                 "f1 returned statusCode 404, outside 200-299", id="404-stops-the-chain"),
    pytest.param(ok({"statusCode": 199, "body": 1}), None, "f1 failed", ERROR_STATUS,
                 "f1 returned statusCode 199, outside 200-299", id="199"),
    pytest.param(ok({"statusCode": 200, "body": 1}), ok({"statusCode": 300, "body": 1}), "f2 failed", ERROR_STATUS,
                 "f2 returned statusCode 300, outside 200-299", id="300"),
    pytest.param(asl.TaskOutcome(error="KeyError", cause=LAMBDA_CAUSE), None, "f1", "KeyError", LAMBDA_CAUSE,
                 id="lambda-error"),
    pytest.param(ok({"statusCode": 200, "body": 1}), asl.TaskOutcome(error="Sandbox.Timedout", cause="timed out"),
                 "f2", "Sandbox.Timedout", "timed out", id="lambda-error-in-f2"),
]


@pytest.mark.parametrize("f1, f2, fail_state, error, cause", E2E_FAILURES)
def test_real_plan_contract_failures(plans, f1, f2, fail_state, error, cause):
    plan = plans["demo/main"]
    answers = _layer_answers(plan, {"f1": f1, **({"f2": f2} if f2 is not None else {})})
    outcome, backend = run(plan.asl, {"event": 1}, answers)
    assert outcome == asl.ExecutionOutcome(False, None, error, cause)
    assert backend.failures == [(fail_state, error, cause)]
    if error == ERROR_CONTRACT:  # the words are the plan's own
        assert cause == _contract_cause(plans, fail_state)
    invoked = ["f1"] if f2 is None else ["f1", "f2"]
    assert backend.arns == [plan.function(k).arn for k in invoked]


def test_real_plan_succeeds_and_passes_each_output_on(plans):
    plan = plans["demo/main"]
    out1 = b'{"statusCode": 200, "body": {"rows": [1, 2, 3]}, "extra": "kept"}'
    out2 = b'{"statusCode": 204, "body": null}'
    outcome, backend = run(plan.asl, raw=b'{"source": "cron"}',
                           answers=_layer_answers(plan, {"f1": asl.TaskOutcome(out1), "f2": asl.TaskOutcome(out2)}))
    assert outcome == asl.ExecutionOutcome(True, out2)
    assert [(c["state"], c["input"]) for c in backend.calls] == [("f1", b'{"source": "cron"}'), ("f2", out1)]
    assert backend.calls[0]["arn"].endswith(":function:demo-main-f1-local")
    assert backend.failures == []


def test_real_plan_stops_an_oversized_output(plans):
    plan = plans["demo/main"]
    big = json.dumps({"statusCode": 200, "body": "x" * LIMIT}).encode()
    outcome, backend = run(plan.asl, {}, _layer_answers(plan, {"f1": asl.TaskOutcome(big), "f2": ok("never")}))
    assert (outcome.succeeded, outcome.error) == (False, ERROR_DATA_LIMIT)
    assert f"output is {len(big):,} bytes" in outcome.cause
    assert backend.failures == [("f1", ERROR_DATA_LIMIT, outcome.cause)]
    assert len(backend.calls) == 1


def _with_child(backend: FakeBackend, child_plan) -> None:
    """The child state machine, run by the same interpreter as ``local._Backend`` does it."""
    def start(input_json: bytes) -> asl.TaskOutcome:
        child = asl.execute(child_plan.asl, input_json, backend)
        if not child.succeeded:
            return asl.TaskOutcome(error="States.TaskFailed", cause=f"{child_plan.key}: {child.error}: {child.cause}")
        return asl.TaskOutcome(output_json=child.output_json)
    backend.answers[child_plan.state_machine_arn] = start


@pytest.mark.parametrize("g1, succeeded, error, cause", [
    (asl.TaskOutcome(b'{"statusCode": 201, "body": "stored"}'), True, None, None),
    (ok({"statusCode": 500, "body": "err"}), False, "States.TaskFailed",
     "b/two: dorc.NonSuccessStatusCode: g1 returned statusCode 500, outside 200-299"),
    (ok({"statusCode": 200}), False, "States.TaskFailed",
     f"b/two: dorc.ContractViolation: g1 returned no 'body': {CONTRACT}"),
])
def test_real_plan_hands_over_to_the_next_layer(plans, g1, succeeded, error, cause):
    parent, child = plans["a/one"], plans["b/two"]
    h1_out = b'{"statusCode": 200, "body": "to b"}'
    backend = FakeBackend({parent.function("h1").arn: asl.TaskOutcome(h1_out), child.function("g1").arn: g1})
    _with_child(backend, child)
    outcome = asl.execute(parent.asl, b'{"go": 1}', backend)
    assert (outcome.succeeded, outcome.error, outcome.cause) == (succeeded, error, cause)
    assert [(c["kind"], c["arn"], c["input"]) for c in backend.calls] == [
        ("lambda", parent.function("h1").arn, b'{"go": 1}'),
        ("execution", child.state_machine_arn, h1_out),
        ("lambda", child.function("g1").arn, h1_out),
    ]
    if succeeded:
        assert outcome.output_json == g1.output_json and backend.failures == []
    else:
        child_state = "g1 failed" if "NonSuccess" in cause else "g1 returned no body"
        assert [f[:2] for f in backend.failures] == [(child_state, cause.split(": ")[1]),
                                                     ("start b/two", "States.TaskFailed")]


def test_real_plan_handover_to_a_missing_machine(plans):
    parent = plans["a/one"]
    backend = FakeBackend({parent.function("h1").arn: ok({"statusCode": 200, "body": 1}),
                           parent.handover.state_machine_arn: asl.TaskOutcome(error="StateMachineDoesNotExist",
                                                                              cause="no plan")})
    outcome = asl.execute(parent.asl, b"{}", backend)
    assert outcome == asl.ExecutionOutcome(False, None, "StateMachineDoesNotExist", "no plan")
    assert backend.failures == [("start b/two", "StateMachineDoesNotExist", "no plan")]
