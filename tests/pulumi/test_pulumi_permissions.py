"""The layer's Pulumi program registers each function's own role with exactly the plan's
statements (defaults, pipeline, function, trigger) and managed policies, under mocks."""

from __future__ import annotations

import json

import pytest

from pulumi_helpers import OK_HANDLER, write_project

TABLE = "arn:aws:dynamodb:{region}:{account_id}:table/{project}-jobs-{env}"
READ_ONLY = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
SEED = "arn:aws:iam::{account_id}:policy/{project}-legacy-{env}"

MAIN = f'''
from dorc import CreatePipeline, Function, Permission, PipelineDefinition, S3Trigger, load_config

config = load_config(__file__)
CreatePipeline(config, PipelineDefinition(
    file_path=__file__,
    description="granted",
    trigger=S3Trigger(name="landed", bucket_name="{{project}}-landing-{{env}}", key_prefix="in/"),
    permissions=[Permission(actions=["dynamodb:Query"], resources=[{TABLE!r}])],
    additional_lambda_role_policy_arn={SEED!r},
    functions=[
        Function(name="f1", next_function="f2"),
        Function(name="f2", managed_policies=[{READ_ONLY!r}],
                 permissions=[Permission(actions=["sqs:SendMessage"],
                                         resources=["arn:aws:sqs:{{region}}:{{account_id}}:{{project}}-out"])]),
    ],
)).apply()
'''
ROLE, POLICY = "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"
ATTACH = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


@pytest.fixture(scope="module")
def granted(tmp_path_factory):
    from dorc.api import plan_layer
    from dorc.project import find_project
    from dorc.targets.pulumi.preview import run_stack

    root = write_project(tmp_path_factory.mktemp("granted") / "p", {
        "demo/main": {"main": MAIN, "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}}},
        stack_files={"demo/main": {"prod": "config:\n  aws:region: eu-west-2\n"}})
    project = find_project(root)
    return plan_layer(project, "demo", "main", "prod"), run_stack(project, "demo", "main", "prod")


def test_each_function_has_its_own_role_with_the_planned_policy(granted):
    from dorc.plan import function_policy

    plan, run = granted
    roles = {r.name: r.inputs for r in run.find(ROLE)}
    policies = {r.name: r.inputs for r in run.find(POLICY)}
    lambdas = {r.name: r.inputs for r in run.find("aws:lambda/function:Function")}
    for fn in plan.functions:
        role = roles[f"{fn.key}-role"]
        assert role["name"] == fn.role_name
        assert json.loads(role["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
        policy = policies[f"{fn.key}-policy"]
        assert json.loads(policy["policy"]) == function_policy(fn)
        assert lambdas[fn.key]["role"] == fn.role_arn
    # the declared statements, templates filled in, are registered
    f2 = json.loads(policies["f2-policy"]["policy"])["Statement"]
    assert {"Sid": "Pipeline4", "Effect": "Allow", "Action": ["dynamodb:Query"],
            "Resource": ["arn:aws:dynamodb:eu-west-2:000000000000:table/t-jobs-prod"]} in f2
    assert {"Sid": "Function5", "Effect": "Allow", "Action": ["sqs:SendMessage"],
            "Resource": ["arn:aws:sqs:eu-west-2:000000000000:t-out"]} in f2
    f1 = json.loads(policies["f1-policy"]["policy"])["Statement"]
    assert {"Sid": "TriggerLanded4", "Effect": "Allow", "Action": ["s3:GetObject"],
            "Resource": ["arn:aws:s3:::t-landing-prod/in/*"]} in f1


def test_managed_policies_are_attached_to_the_functions_role(granted):
    plan, run = granted
    attached = sorted((r.inputs["role"], r.inputs["policyArn"]) for r in run.find(ATTACH))
    seed = "arn:aws:iam::000000000000:policy/t-legacy-prod"
    f1, f2 = plan.function("f1"), plan.function("f2")
    assert attached == sorted([(f1.role_name, seed), (f2.role_name, seed), (f2.role_name, READ_ONLY)])
    assert run.duplicate_urns() == []
    # the function is created once its permissions are in place
    deps = {r.name: r.options["dependencies"] for r in run.find("aws:lambda/function:Function")}
    assert any(u.endswith("::f2-policy") for u in deps["f2"])
    assert sum("-managed-" in u for u in deps["f2"]) == 2
