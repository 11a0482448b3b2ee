"""The resource plan (``dorc.api.plan_layer``): deployed names, settings and the state machine as data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dorc.api import plan_layer
from dorc.errors import DorcError
from dorc.project import find_project
from helpers import OK_HANDLER, chain_main, main_py

REGION, ACCOUNT = "eu-west-2", "000000000000"


@pytest.fixture(scope="module")
def census_project(tmp_path_factory):
    from helpers import copy_pipeline_config

    return find_project(copy_pipeline_config(tmp_path_factory.mktemp("plan")))


@pytest.fixture(scope="module")
def raw(census_project):
    return plan_layer(census_project, "census", "raw")


@pytest.fixture(scope="module")
def processed(census_project):
    return plan_layer(census_project, "census", "processed")


def test_names(raw, processed):
    assert raw.key == "census/raw"
    assert [f.key for f in raw.functions] == ["function1"]
    fn = raw.functions[0]
    assert fn.name == "census-raw-function1-local"
    assert fn.arn == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:census-raw-function1-local"
    assert fn.log_group == "/aws/lambda/census-raw-function1-local"
    assert fn.handler == "lambda.handler"
    assert (fn.memory, fn.timeout, fn.runtime) == (256, 60, "python3.12")
    assert raw.state_machine_name == "census-raw-local"
    assert raw.state_machine_arn == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:census-raw-local"
    assert raw.holding_bucket == "dorc-census-holding-local"
    assert raw.artifact_bucket == "dorc-census-artifacts"
    assert (raw.lambda_role, raw.states_role, raw.events_role) == (
        "dorc-census-lambda-local", "dorc-census-states-local", "dorc-census-events-local")
    assert [f.name for f in processed.functions] == ["census-processed-function1-local", "census-processed-function2-local"]
    assert processed.handover is None


def test_environment_and_tags(raw):
    env = raw.functions[0].environment
    assert env["HOLDING_BUCKET"] == "dorc-census-holding-local"
    assert env["DORC_PIPELINE"] == "census/raw"
    assert env["DORC_ENV"] == "local"
    assert env["CENSUS_API_URL"] == "https://api.census.gov/data/2020/dec/pl"  # the definition's default
    assert raw.local_environment == {"CENSUS_API_URL": "{sim.census_api}/data/2020/dec/pl"}
    fixture = raw.local_fixtures["census_api"]  # declared by pipeline-config/dorc.toml, machine-local
    assert (Path(fixture.module).name, fixture.factory, fixture.port) == ("census_api.py", "CensusAPIServer", 4580)
    assert "local_fixtures" not in raw.snapshot()
    assert raw.tags["team"] == "data-engineering"
    assert raw.tags["dorc:pipeline"] == "census/raw"
    assert raw.tags["dorc:env"] == "local"


def test_trigger(raw):
    (trigger,) = raw.triggers
    assert (trigger.key, trigger.kind, trigger.rule_name) == ("daily", "cron", "census-raw-daily-local")
    assert trigger.schedule_expression == "cron(0 6 * * ? *)"


def test_other_environments_use_their_stack_settings(census_project):
    prod = plan_layer(census_project, "census", "raw", "prod", account_id="123456789012")
    fn = prod.functions[0]
    assert fn.name == "census-raw-function1-prod"
    assert fn.arn == "arn:aws:lambda:eu-west-2:123456789012:function:census-raw-function1-prod"
    assert prod.holding_bucket == "dorc-census-holding-prod"
    assert prod.handover.state_machine_arn == "arn:aws:states:eu-west-2:123456789012:stateMachine:census-processed-prod"
    with pytest.raises(DorcError, match="no settings for environment 'qa'"):
        plan_layer(census_project, "census", "raw", "qa")


# -- the state machine (ASL) as data ---------------------------------------------------------

def test_asl_task_and_choice_guard(processed):
    asl = processed.asl
    assert asl["StartAt"] == "function1"
    assert asl["Comment"] == "Cleans raw census records and derives per-state features"
    states = asl["States"]
    task = states["function1"]
    assert task["Type"] == "Task"
    assert task["Resource"] == "arn:aws:states:::lambda:invoke"
    assert task["Parameters"] == {"FunctionName": processed.functions[0].arn, "Payload.$": "$"}
    assert task["OutputPath"] == "$.Payload"
    assert task["Next"] == "function1 returned"
    assert task["Comment"] == "Validate and clean the raw records"
    # retries only for Lambda's own transient failures, never for the user's errors
    assert all(err.startswith("Lambda.") for r in task["Retry"] for err in r["ErrorEquals"])

    guard = states["function1 returned"]
    assert guard["Type"] == "Choice"
    no_status, not_numeric, no_body, success = guard["Choices"]
    assert no_status == {"Not": {"Variable": "$.statusCode", "IsPresent": True}, "Next": "function1 returned no statusCode"}
    assert not_numeric == {"Not": {"Variable": "$.statusCode", "IsNumeric": True},
                           "Next": "function1 returned a non-numeric statusCode"}
    assert no_body == {"Not": {"Variable": "$.body", "IsPresent": True}, "Next": "function1 returned no body"}
    assert success == {"And": [{"Variable": "$.statusCode", "NumericGreaterThanEquals": 200},
                               {"Variable": "$.statusCode", "NumericLessThan": 300}], "Next": "function2"}
    assert guard["Default"] == "function1 failed"

    for state, reason in (("no statusCode", "no 'statusCode'"),
                          ("a non-numeric statusCode", "a 'statusCode' that is not a number"),
                          ("no body", "no 'body'")):
        fail = states[f"function1 returned {state}"]
        assert fail["Type"] == "Fail" and fail["Error"] == "dorc.ContractViolation"
        assert fail["Cause"].startswith(f"function1 returned {reason}")
    # the code itself is in the cause, through an intrinsic function (Fail's CausePath)
    assert states["function1 failed"] == {
        "Type": "Fail", "Error": "dorc.NonSuccessStatusCode",
        "CausePath": "States.Format('function1 returned statusCode {}, outside 200-299', $.statusCode)"}
    # the last function ends in Succeed
    assert states["function2 returned"]["Choices"][-1]["Next"] == "succeeded"
    assert states["succeeded"] == {"Type": "Succeed"}
    assert set(states) == {f"{fn}{suffix}" for fn in ("function1", "function2")
                           for suffix in ("", " returned", " returned no statusCode", " returned a non-numeric statusCode",
                                          " returned no body", " failed")} | {"succeeded"}


def test_asl_handover_state(raw, processed):
    states = raw.asl["States"]
    assert raw.handover.instance == "census" and raw.handover.layer == "processed"
    assert states["function1 returned"]["Choices"][-1]["Next"] == "start census/processed"
    handover = states["start census/processed"]
    assert handover["Type"] == "Task"
    assert handover["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert handover["Parameters"] == {"StateMachineArn": processed.state_machine_arn, "Input.$": "$"}
    assert handover["OutputPath"] == "$.Output"
    assert handover["End"] is True
    assert "succeeded" not in states


def test_asl_is_plain_json_data(raw, processed):
    for plan in (raw, processed):
        assert json.loads(json.dumps(plan.asl)) == plan.asl
        assert json.loads(plan.asl_json()) == plan.asl


def test_descriptions_with_quotes_and_newlines_round_trip(project_factory):
    description = 'Say "hello"\nthen \'goodbye\' \\ back\tslash {braces} $.path ünïcode'
    fn_description = 'the "first" one\non two lines'
    main = main_py(f"Function(name='f1', description={fn_description!r})", description=description)
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    plan = plan_layer(find_project(root), "demo", "main")
    assert plan.description == description
    text = json.dumps(plan.asl)
    back = json.loads(text)
    assert back == plan.asl
    assert back["Comment"] == description
    assert back["States"]["f1"]["Comment"] == fn_description
    assert json.loads(plan.asl_json())["Comment"] == description


def test_cross_instance_handover(project_factory):
    root = project_factory({
        "a/one": {"main": chain_main("f1", handover="b/two"), "functions": {"f1": OK_HANDLER}},
        "b/two": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}},
    })
    plan = plan_layer(find_project(root), "a", "one")
    assert (plan.handover.instance, plan.handover.layer) == ("b", "two")
    assert plan.asl["States"]["start b/two"]["Parameters"]["StateMachineArn"].endswith(":stateMachine:b-two-local")


def test_s3_trigger_and_settings(project_factory):
    main = main_py("Function(name='f1')", extra="from dorc import S3Trigger").replace(
        "    functions=", "    trigger=S3Trigger(name='drop', bucket_name='{project}-landing-{env}', key_prefix='in/'),\n    functions=")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}}, name="acme",
                           toml_extra='region = "us-east-1"\n[buckets]\nholding = "hold-{env}-{region}"\n')
    plan = plan_layer(find_project(root), "demo", "main")
    (trigger,) = plan.triggers
    assert trigger.kind == "s3" and trigger.rule_name == "demo-main-drop-local"
    assert trigger.event_pattern == {"source": ["aws.s3"], "detail-type": ["Object Created"],
                                     "detail": {"bucket": {"name": ["acme-landing-local"]},
                                                "object": {"key": [{"prefix": "in/"}]}}}
    assert plan.holding_bucket == "hold-local-us-east-1"
    assert plan.region == "us-east-1"
    assert plan.functions[0].arn.startswith("arn:aws:lambda:us-east-1:")


def test_function_order_follows_the_chain(project_factory):
    main = main_py("Function(name='c'), Function(name='a', next_function='b'), Function(name='b', next_function='c')")
    root = project_factory({"demo/main": {"main": main, "functions": {n: OK_HANDLER for n in "abc"}}})
    plan = plan_layer(find_project(root), "demo", "main")
    assert [f.key for f in plan.functions] == ["a", "b", "c"]
    assert plan.asl["StartAt"] == "a"
    assert plan.function("b").name == "demo-main-b-local"
    assert plan.function("demo-main-c-local").key == "c"


def test_digest_ignores_where_the_project_lives(tmp_path):
    from helpers import copy_pipeline_config

    one = plan_layer(find_project(copy_pipeline_config(tmp_path / "one")), "census", "processed")
    two = plan_layer(find_project(copy_pipeline_config(tmp_path / "two")), "census", "processed")
    assert one.functions[0].source_dir != two.functions[0].source_dir
    assert one.digest() == two.digest()
    prod = plan_layer(find_project(tmp_path / "one" / "pipeline-config"), "census", "processed", "prod")
    assert prod.digest() != one.digest()


LOGGING_HANDLER = (
    "import os\n\n"
    "def handler(event, context):\n"
    "    return {k: os.environ.get(k) for k in ('AWS_LAMBDA_LOG_FORMAT', 'AWS_LAMBDA_LOG_LEVEL')}\n"
)


def test_tmp_size_and_logging_are_deployed_settings(project_factory):
    """Declared or Lambda's defaults, they are in the plan, its snapshot and its digest: promotion
    compares them like memory or timeout."""
    def planned(**kwargs):
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        root = project_factory({"demo/main": {"main": chain_main("f1", f1=args), "functions": {"f1": OK_HANDLER}}})
        return plan_layer(find_project(root), "demo", "main")

    default = planned()
    fn = default.functions[0]
    assert (fn.ephemeral_storage, fn.log_format, fn.log_level) == (512, "Text", None)
    declared = planned(ephemeral_storage=4096, log_format="JSON", log_level="ERROR")
    snap = declared.snapshot()["functions"][0]
    assert (snap["ephemeral_storage"], snap["log_format"], snap["log_level"]) == (4096, "JSON", "ERROR")
    digests = {default.digest(), declared.digest(), planned(ephemeral_storage=4096).digest(),
               planned(log_format="JSON").digest(), planned(log_format="JSON", log_level="ERROR").digest()}
    assert len(digests) == 5


@pytest.mark.parametrize("settings, seen", [
    ("", {"AWS_LAMBDA_LOG_FORMAT": None, "AWS_LAMBDA_LOG_LEVEL": None}),  # Text: Lambda sets neither
    ("log_format='JSON'", {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"}),
    ("log_format='JSON', log_level='TRACE'", {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "TRACE"}),
])
def test_a_local_run_gives_the_handler_lambdas_logging_variables(project_factory, settings, seen):
    from dorc.api import invoke_function

    main = chain_main("f1", **({"f1": settings} if settings else {}))
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": LOGGING_HANDLER}}})
    step = invoke_function("demo", "main", "f1", project=find_project(root))
    assert step.succeeded, step.error
    assert json.loads(step.output_json) == seen
