"""Declared permissions deployed to LocalStack: each function's own role holds exactly the plan's
policy and managed policies, the function runs with it, a policy no longer declared is detached,
and destroy removes the role."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from dorc.api import plan_layer, run_pipeline
from dorc.observer import NullObserver
from dorc.plan import function_policy
from dorc.project import find_project
from helpers import OK_HANDLER, make_project

pytestmark = pytest.mark.localstack

READ_ONLY = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
OWN = "arn:aws:iam::{account_id}:policy/{project}-legacy-{env}"

MAIN = '''
from dorc import CreatePipeline, Function, Permission, PipelineDefinition, load_config

config = load_config(__file__)
CreatePipeline(config, PipelineDefinition(
    file_path=__file__,
    description="granted",
    permissions=[Permission(actions=["dynamodb:Query"],
                            resources=["arn:aws:dynamodb:{region}:{account_id}:table/{project}-jobs-{env}"])],
    additional_lambda_role_policy_arn=%r,
    functions=[Function(name="f1", managed_policies=[%s])],
)).apply()
'''


def _policy(doc):
    return json.loads(unquote(doc)) if isinstance(doc, str) else doc


def test_the_functions_role_is_deployed_as_planned_and_removed_with_the_layer(dorc_localstack, tmp_path):
    root = make_project(tmp_path, {"perm/main": {"main": MAIN % (OWN, repr(READ_ONLY)),
                                                 "functions": {"f1": OK_HANDLER}}}, name="permls")
    project = find_project(root)
    iam = dorc_localstack.client("iam", region_name=project.settings.region)
    own = iam.create_policy(PolicyName="permls-legacy-localstack", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}))
    result = run_pipeline("perm", "main", target="localstack", project=project, endpoint=dorc_localstack.endpoint,
                          record=False)
    assert result.succeeded, result.error

    fn = plan_layer(project, "perm", "main", "localstack").function("f1")
    got = iam.get_role_policy(RoleName=fn.role_name, PolicyName="dorc")["PolicyDocument"]
    assert _policy(got) == function_policy(fn)
    attached = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=fn.role_name)["AttachedPolicies"]}
    assert attached == {own["Policy"]["Arn"], READ_ONLY} == set(fn.managed_policies)
    lam = dorc_localstack.client("lambda", region_name=project.settings.region)
    assert lam.get_function_configuration(FunctionName=fn.name)["Role"] == fn.role_arn

    # no longer declared: detached on the next deploy
    (root / "src/perm/main/__main__.py").write_text(MAIN % (OWN, ""))
    result = run_pipeline("perm", "main", target="localstack", project=project, endpoint=dorc_localstack.endpoint,
                          record=False)
    assert result.succeeded, result.error
    attached = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=fn.role_name)["AttachedPolicies"]}
    assert attached == {own["Policy"]["Arn"]}

    from dorc.targets.localstack import destroy

    destroy(plan_layer(project, "perm", "main", "localstack"), project=project, endpoint=dorc_localstack.endpoint,
            progress=NullObserver().progress)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=fn.role_name)
