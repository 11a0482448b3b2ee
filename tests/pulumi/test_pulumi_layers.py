"""The census layers' own ``__main__.py``, run as Pulumi programs under mocks, register exactly
the plan: "one definition becomes one resource plan; every target consumes that same plan"."""

from __future__ import annotations

import base64
import json

import pytest

from pulumi_helpers import ENVS

LAMBDA = "aws:lambda/function:Function"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
PACKAGE = "aws:s3/bucketObjectv2:BucketObjectv2"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
STACK_REF = "pulumi:pulumi:StackReference"
COMPONENT = "dorc:index:CreatePipeline"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"

LAYERS = [(layer, env) for layer in ("raw", "processed") for env in ENVS]


@pytest.fixture(scope="module")
def expected(census):
    """The plan dorc's library builds (``plan_layer`` + ``package_plan``), and the plans of the
    shared stacks the layer references, for comparison with what the programs register."""
    from dorc.api import plan_layer
    from dorc.package import package_plan
    from dorc.plan import LOCAL_ACCOUNT_ID, build_infra_plan, build_universal_plan

    cache = {}

    def get(layer: str, env: str):
        if (layer, env) not in cache:
            plan = plan_layer(census, "census", layer, env, account_id=LOCAL_ACCOUNT_ID)
            plan = package_plan(plan, census.state_dir / "build", census.state_dir / "cache")
            infra = build_infra_plan(census.settings, env, plan.region, account_id=LOCAL_ACCOUNT_ID)
            universal = build_universal_plan(census.settings)
            cache[(layer, env)] = (plan, infra, universal)
        return cache[(layer, env)]

    return get


def _by_name(run, type_):
    from dorc.targets.pulumi.preview import unwrap_secrets

    return {r.name: unwrap_secrets(r.inputs) for r in run.find(type_)}


@pytest.mark.parametrize("layer,env", LAYERS)
def test_registers_exactly_the_planned_resources(stack_run, expected, layer, env):
    plan, _, _ = expected(layer, env)
    run = stack_run("census", layer, env)
    got = sorted((r.type, r.name, run.parent_of(r)) for r in run.registrations)
    parent = f"{COMPONENT}::census-{layer}"
    want = [(STACK_REF, f"organization/dorc-census-infra/infra-{env}", None),
            (STACK_REF, "organization/dorc-census-universal/universal", None),
            (COMPONENT, f"census-{layer}", None),
            (STATE_MACHINE, "state-machine", parent)]
    for fn in plan.functions:
        want += [(LAMBDA, fn.key, parent), (LOG_GROUP, f"{fn.key}-logs", parent), (PACKAGE, f"{fn.key}-package", parent),
                 (ROLE, f"{fn.key}-role", parent), (ROLE_POLICY, f"{fn.key}-policy", parent)]  # census declares no managed policy
    for t in plan.triggers:
        want += [(RULE, f"{t.key}-rule", parent), (TARGET, f"{t.key}-target", parent)]
    assert got == sorted(want)
    assert run.duplicate_urns() == []


@pytest.mark.parametrize("layer,env", LAYERS)
def test_functions_equal_the_plan(stack_run, expected, layer, env):
    plan, infra, universal = expected(layer, env)
    lambdas = _by_name(stack_run("census", layer, env), LAMBDA)
    assert set(lambdas) == {fn.key for fn in plan.functions}
    for fn in plan.functions:
        got = lambdas[fn.key]
        assert got["name"] == fn.name
        assert got["runtime"] == fn.runtime
        assert got["handler"] == fn.handler
        assert got["memorySize"] == fn.memory  # arrives as a float (512.0); == holds
        assert got["timeout"] == fn.timeout
        assert got["environment"] == {"variables": fn.environment}
        assert got["role"] == fn.role_arn  # the function's own role, registered by the layer's stack
        assert got["s3Bucket"] == universal.artifact_bucket  # through the universal stack reference
        assert got["s3Key"] == f"packages/{fn.package_sha256}.zip"
        assert base64.b64decode(got["sourceCodeHash"]).hex() == fn.package_sha256
        assert got["tags"] == plan.tags
        assert got["description"] == fn.description
        # Lambda's defaults, said explicitly: a size or format changed in the console comes back
        assert got["ephemeralStorage"] == {"size": fn.ephemeral_storage} == {"size": 512}
        assert got["loggingConfig"] == {"logFormat": "Text"}


@pytest.mark.parametrize("layer,env", LAYERS)
def test_log_groups_and_packages_equal_the_plan(stack_run, expected, layer, env):
    plan, _, universal = expected(layer, env)
    run = stack_run("census", layer, env)
    logs, packages = _by_name(run, LOG_GROUP), _by_name(run, PACKAGE)
    lambda_deps = {r.name: r.options["dependencies"] for r in run.find(LAMBDA)}
    for fn in plan.functions:
        assert logs[f"{fn.key}-logs"]["name"] == fn.log_group
        assert logs[f"{fn.key}-logs"]["retentionInDays"] == plan.log_retention_days
        pkg = packages[f"{fn.key}-package"]
        assert pkg["bucket"] == universal.artifact_bucket
        assert pkg["key"] == f"packages/{fn.package_sha256}.zip"
        assert pkg["source"].path == fn.package_path
        # the log group and the upload exist before the function
        assert any(u.endswith(f"::{fn.key}-logs") for u in lambda_deps[fn.key])
        assert any(u.endswith(f"::{fn.key}-package") for u in lambda_deps[fn.key])
    # removing one environment's stack must not delete a package another one runs
    assert all(r.options["retain_on_delete"] for r in run.find(PACKAGE))


@pytest.mark.parametrize("layer,env", LAYERS)
def test_state_machine_is_the_plans_asl(stack_run, expected, layer, env):
    plan, infra, _ = expected(layer, env)
    (sm,) = _by_name(stack_run("census", layer, env), STATE_MACHINE).values()
    assert sm["name"] == plan.state_machine_name
    assert sm["roleArn"] == infra.roles["states"].arn
    assert json.loads(sm["definition"]) == json.loads(json.dumps(plan.asl))
    if layer == "raw":  # raw hands over to processed, by the planned ARN
        handover = json.loads(sm["definition"])["States"]["start census/processed"]
        assert handover["Parameters"]["StateMachineArn"] == plan.handover.state_machine_arn


@pytest.mark.parametrize("env", ENVS)
def test_raw_is_started_by_its_cron_rule(stack_run, expected, env):
    plan, infra, _ = expected("raw", env)
    run = stack_run("census", "raw", env)
    (trigger,) = plan.triggers
    rule = _by_name(run, RULE)["daily-rule"]
    assert rule["name"] == trigger.rule_name == f"census-raw-daily-{env}"
    assert rule["scheduleExpression"] == "cron(0 6 * * ? *)" == trigger.schedule_expression
    assert "eventPattern" not in rule
    target = _by_name(run, TARGET)["daily-target"]
    assert target["rule"] == trigger.rule_name
    assert target["arn"] == plan.state_machine_arn
    assert target["roleArn"] == infra.roles["events"].arn


@pytest.mark.parametrize("env", ENVS)
def test_processed_has_no_trigger(stack_run, env):
    run = stack_run("census", "processed", env)
    assert run.find(RULE) == [] and run.find(TARGET) == []


@pytest.mark.parametrize("layer,env", LAYERS)
def test_stack_references_and_outputs(stack_run, expected, layer, env):
    plan, _, _ = expected(layer, env)
    run = stack_run("census", layer, env)
    assert run.project == f"dorc-census-census-{layer}"
    assert run.stack == f"census-{layer}-{env}"
    assert sorted(run.stack_references()) == [f"organization/dorc-census-infra/infra-{env}",
                                              "organization/dorc-census-universal/universal"]
    out = run.exports
    assert out["state_machine_arn"] == plan.state_machine_arn
    assert out["state_machine_name"] == plan.state_machine_name
    assert out["function_names"] == {fn.key: fn.name for fn in plan.functions}
    assert out["packages"] == {fn.key: fn.package_sha256 for fn in plan.functions}
    assert out["plan_digest"] == plan.digest()
    assert out["plan_settings"] == json.loads(json.dumps(plan.snapshot()))
    assert "deployed_at" not in out  # a preview is not a deployment


def test_environments_differ_only_where_the_plan_says(stack_run):
    """Two stacks in one process: nothing of the first run leaks into the second."""
    pre, prod = _by_name(stack_run("census", "raw", "preprod"), LAMBDA), _by_name(stack_run("census", "raw", "prod"), LAMBDA)
    assert pre["function1"]["name"] == "census-raw-function1-preprod"
    assert prod["function1"]["name"] == "census-raw-function1-prod"
    assert pre["function1"]["s3Key"] == prod["function1"]["s3Key"]  # same sources, same package


def test_preview_layer_redacts_and_is_json_friendly(census):
    from dorc.targets.pulumi.preview import preview_layer

    resources = preview_layer(census, "census", "raw", "prod")
    json.dumps(resources)
    assert {r["type"] for r in resources} >= {LAMBDA, STATE_MACHINE, RULE, TARGET, LOG_GROUP, PACKAGE, STACK_REF}
