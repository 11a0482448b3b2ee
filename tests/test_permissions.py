"""Permissions declared once in the definition: checked where they are written, planned per
function with their source, deployed as exactly that policy on the function's own role
(LocalStack's calls, without LocalStack), and shown by ``dorc list``."""

from __future__ import annotations

import json

import pytest

from dorc.api import plan_layer
from dorc.errors import DefinitionError
from dorc.permissions import DEFAULT
from dorc.plan import ROLE_NAME_MAX, function_policy
from dorc.project import find_project
from dorc.targets.localstack.deploy import shared_plans
from dorc.targets.localstack.planner import LAMBDA_TRUST, plan_deployment
from dorc.targets.localstack.remote import RemoteState
from helpers import OK_HANDLER, copy_pipeline_config, make_project, only, problems_of

ENV = "prod"
TABLE = "arn:aws:dynamodb:{region}:{account_id}:table/{project}-jobs-{env}"
READ_ONLY = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
SEED_POLICY = "arn:aws:iam::{account_id}:policy/{project}-legacy-{env}"
LOADER_POLICY = "arn:aws:iam::aws:policy/AWSGlueConsoleFullAccess"

GRANTED = f'''
from dorc import CreatePipeline, PipelineDefinition, Function, Permission, S3Trigger, load_config

config = load_config(__file__)
CreatePipeline(config, PipelineDefinition(
    file_path=__file__,
    description="reads a landing bucket and a table",
    trigger=S3Trigger(name="landed", bucket_name="{{project}}-landing-{{env}}", key_prefix="incoming/"),
    permissions=[Permission(actions=["dynamodb:GetItem", "dynamodb:Query"], resources=[{TABLE!r}])],
    additional_lambda_role_policy_arn={SEED_POLICY!r},
    functions=[
        Function(name="reader", next_function="loader"),
        Function(name="loader",
                 permissions=[dict(actions="secretsmanager:GetSecretValue",
                                   resources="arn:aws:secretsmanager:{{region}}:{{account_id}}:secret:db-*")],
                 managed_policies=[{LOADER_POLICY!r}, {READ_ONLY!r}]),
    ],
)).apply()
'''


def _root(tmp_path, main=GRANTED, *, key="shop/raw", functions=("reader", "loader"), name="shop", toml_extra=""):
    root = make_project(tmp_path, {key: {"main": main, "functions": {f: OK_HANDLER for f in functions}}}, name=name,
                        toml_extra=toml_extra)
    for env in ("prod", "preprod"):
        (root / "src" / key / f"Pulumi.{env}.yaml").write_text("config:\n  aws:region: eu-west-2\n")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return find_project(_root(tmp_path_factory.mktemp("perm")))


@pytest.fixture(scope="module")
def plan(project):
    return plan_layer(project, "shop", "raw", ENV, account_id="123456789012")


def _by_source(fn):
    out: dict[str, list] = {}
    for g in fn.grants:
        out.setdefault(g.source, []).append(g)
    return out


# -- the plan: defaults, pipeline, function, trigger -------------------------------------------

def test_each_function_gets_the_defaults_plus_what_is_declared_with_templates_filled(plan):
    reader, loader = plan.function("reader"), plan.function("loader")
    table = "arn:aws:dynamodb:eu-west-2:123456789012:table/shop-jobs-prod"
    for fn in (reader, loader):
        grants = _by_source(fn)
        assert [g.resources for g in grants[DEFAULT]] == [
            [f"arn:aws:logs:eu-west-2:123456789012:log-group:/aws/lambda/{fn.name}:*"],
            ["arn:aws:s3:::shop-holding-prod/*"], ["arn:aws:s3:::shop-holding-prod"]]
        (pipeline,) = grants["pipeline"]
        assert (pipeline.actions, pipeline.resources) == (["dynamodb:GetItem", "dynamodb:Query"], [table])
        assert fn.role_name == f"shop-shop-raw-{fn.key}-prod"
        assert fn.role_arn == f"arn:aws:iam::123456789012:role/{fn.role_name}"
    (secret,) = _by_source(loader)["function"]
    assert secret.resources == ["arn:aws:secretsmanager:eu-west-2:123456789012:secret:db-*"]
    assert "function" not in _by_source(reader)
    # the seed's additional_lambda_role_policy_arn goes to every function, before the function's own
    seed = "arn:aws:iam::123456789012:policy/shop-legacy-prod"
    assert reader.managed_policies == [seed]
    assert loader.managed_policies == [seed, LOADER_POLICY, READ_ONLY]


def test_an_s3_trigger_on_another_bucket_grants_read_on_its_prefix_to_the_first_function(plan):
    reader, loader = plan.function("reader"), plan.function("loader")
    get, listing = _by_source(reader)["trigger landed"]
    assert (get.actions, get.resources) == (["s3:GetObject"], ["arn:aws:s3:::shop-landing-prod/incoming/*"])
    assert (listing.actions, listing.resources) == (["s3:ListBucket"], ["arn:aws:s3:::shop-landing-prod"])
    assert listing.conditions == {"StringLike": {"s3:prefix": ["incoming/*"]}}
    assert "trigger landed" not in _by_source(loader)  # the event reaches the first function only
    assert get.line() == "Allow s3:GetObject on arn:aws:s3:::shop-landing-prod/incoming/* (trigger landed)"


def test_function_policy_is_the_iam_document_of_the_grants(plan):
    loader = plan.function("loader")
    doc = function_policy(loader)
    assert doc["Version"] == "2012-10-17"
    assert [s["Resource"] for s in doc["Statement"]] == [g.resources for g in loader.grants]
    assert all(s["Effect"] == "Allow" and s["Sid"].isalnum() for s in doc["Statement"])
    assert [s["Sid"] for s in doc["Statement"]][-2:] == ["Pipeline4", "Function5"]
    json.dumps(doc)  # plain JSON, as IAM and moto take it


def test_the_census_functions_declare_nothing_and_keep_the_holding_store_default(tmp_path):
    census = find_project(copy_pipeline_config(tmp_path))
    for layer in ("raw", "processed"):
        for fn in plan_layer(census, "census", layer, "prod").functions:
            assert {g.source for g in fn.grants} == {DEFAULT} and fn.managed_policies == []
            assert {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": ["arn:aws:s3:::dorc-census-holding-prod/*"]} in [
                {k: v for k, v in s.items() if k != "Sid"} for s in function_policy(fn)["Statement"]]


def test_a_trigger_on_the_holding_store_grants_nothing_more(tmp_path):
    main = GRANTED.replace('bucket_name="{project}-landing-{env}"', 'bucket_name="{project}-holding-{env}"')
    root = _root(tmp_path, main)
    reader = plan_layer(find_project(root), "shop", "raw", ENV).function("reader")
    assert not [g for g in reader.grants if g.source.startswith("trigger")]


def test_long_names_give_a_role_name_within_iams_limit(tmp_path):
    project = "a-project-name-that-is-forty-chars-long"
    root = _root(tmp_path, key="instance-name/layer", name=project)
    plan = plan_layer(find_project(root), "instance-name", "layer", "preprod")  # raises on any plan problem
    fn = plan.function("reader")
    assert len(f"{project}-instance-name-layer-reader-preprod") > ROLE_NAME_MAX
    assert len(fn.role_name) == ROLE_NAME_MAX and fn.role_name.startswith(f"{project}-instance-")
    assert fn.role_name != plan.function("loader").role_name


def test_a_policy_over_iams_size_is_a_plan_problem(tmp_path):
    many = ", ".join(f"'arn:aws:s3:::bucket-number-{i:04d}/*'" for i in range(400))
    main = GRANTED.replace("resources=[" + repr(TABLE) + "]", f"resources=[{many}]")
    with pytest.raises(DefinitionError) as info:
        plan_layer(find_project(_root(tmp_path, main)), "shop", "raw", ENV)
    problem = only(info.value.problems, "the role policy of reader")
    assert "IAM allows 10,240" in problem.message and problem.function == "reader"


# -- checked where written ---------------------------------------------------------------------

@pytest.mark.parametrize("permission,fragment", [
    ("Permission(actions=['s3GetObject'], resources=['*'])", "'s3GetObject' is not an IAM action: write 'service:Action'"),
    ("Permission(actions=['s3:GetObject'], resources=[])", "resources is empty"),
    ("Permission(actions=['s3:GetObject'], resources=['my-bucket/*'])", "'my-bucket/*' is not an ARN"),
    ("Permission(actions=['s3:GetObject'], resources=['arn:aws:s3:::{stage}/*'])", "unknown key {stage}"),
    ("Permission(actions=['s3:GetObject'], resources=['*'], effect='Deny')", "dorc grants only (effect='Allow')"),
])
def test_a_bad_permission_names_the_function_and_the_fix(tmp_path, permission, fragment):
    main = GRANTED.replace("Function(name=\"reader\", ", f"Function(name=\"reader\", permissions=[{permission}], ")
    root = _root(tmp_path, main)
    problem = only(problems_of(root, "shop/raw"), fragment)
    assert problem.function == "reader" and problem.file.endswith("__main__.py")


@pytest.mark.parametrize("where", ["pipeline", "function"])
def test_a_bad_managed_policy_arn_is_refused_with_the_shape_to_write(tmp_path, where):
    bad = "arn:aws:iam::aws:role/Admin"
    if where == "pipeline":
        main = GRANTED.replace(f"additional_lambda_role_policy_arn={SEED_POLICY!r}",
                               f"additional_lambda_role_policy_arn={bad!r}")
    else:
        main = GRANTED.replace(repr(READ_ONLY), repr(bad))
    root = _root(tmp_path, main)
    problem = only(problems_of(root, "shop/raw"), "is not a managed policy ARN")
    assert "arn:aws:iam::aws:policy/<name>" in problem.message
    assert problem.function == ("loader" if where == "function" else None)


# -- LocalStack: the function's role, as API calls ---------------------------------------------

@pytest.fixture(scope="module")
def deployment(project, plan):
    built = plan.model_copy(update={"functions": [
        f.model_copy(update={"package_sha256": f"{i}" * 64, "package_path": f"/build/{f.name}.zip"})
        for i, f in enumerate(plan.functions, 1)]})
    universal, infra = shared_plans(project, built)
    envs = {built.key: {fn.key: dict(fn.environment) for fn in built.functions}}
    return {built.key: built}, universal, infra, envs


def _iam(calls, role):
    return [(c.operation, c.params) for c in calls if c.service == "iam" and c.params.get("RoleName") == role]


def test_localstack_creates_each_functions_role_with_exactly_the_planned_policy(deployment):
    plans, universal, infra, envs = deployment
    calls = plan_deployment(plans, universal, infra, RemoteState(), envs)
    loader = plans["shop/raw"].function("loader")
    ops = _iam(calls, loader.role_name)
    assert [op for op, _ in ops] == ["CreateRole", "PutRolePolicy", "AttachRolePolicy", "AttachRolePolicy",
                                     "AttachRolePolicy"]
    assert json.loads(ops[0][1]["AssumeRolePolicyDocument"]) == LAMBDA_TRUST
    assert json.loads(ops[1][1]["PolicyDocument"]) == function_policy(loader)
    assert [p["PolicyArn"] for _, p in ops[2:]] == loader.managed_policies
    create = next(c for c in calls if c.operation == "CreateFunction" and c.params["FunctionName"] == loader.name)
    assert create.params["Role"] == loader.role_arn
    # the role and its policies come before the function that needs them
    assert calls.index(create) > max(i for i, c in enumerate(calls) if c.params.get("RoleName") == loader.role_name)


def _deployed(plans):
    (plan,) = plans.values()
    return RemoteState(roles={fn.role_name: {"trust_policy": LAMBDA_TRUST, "policy": function_policy(fn),
                                             "managed_policies": list(fn.managed_policies)}
                              for fn in plan.functions})


def test_localstack_roles_that_match_get_no_call_and_drift_is_repaired(deployment):
    plans, universal, infra, envs = deployment
    loader = plans["shop/raw"].function("loader")
    remote = _deployed(plans)
    calls = plan_deployment(plans, universal, infra, remote, envs)
    assert not [c for c in calls if c.params.get("RoleName", "").startswith("shop-shop-raw-")]
    # a policy attached by hand (or no longer declared) is detached; a changed policy is put again
    remote.roles[loader.role_name]["managed_policies"].append("arn:aws:iam::aws:policy/AdministratorAccess")
    remote.roles[loader.role_name]["policy"] = {"Version": "2012-10-17", "Statement": []}
    ops = _iam(plan_deployment(plans, universal, infra, remote, envs), loader.role_name)
    assert [(op, p.get("PolicyArn")) for op, p in ops] == [
        ("PutRolePolicy", None), ("DetachRolePolicy", "arn:aws:iam::aws:policy/AdministratorAccess")]


# -- dorc list ----------------------------------------------------------------------------------

def test_dorc_list_shows_each_functions_permissions_with_their_source(cli, project):
    r = cli("list", "--env", ENV, "--config-repo", project.root)
    assert r.exit_code == 0, r.output
    out = r.output
    assert "role shop-shop-raw-reader-prod: default logs + read/write s3://shop-holding-prod" in out
    assert ("Allow s3:GetObject on arn:aws:s3:::shop-landing-prod/incoming/* (trigger landed)") in out
    assert ("Allow dynamodb:GetItem, dynamodb:Query on arn:aws:dynamodb:eu-west-2:000000000000:table/"
            "shop-jobs-prod (pipeline)") in out
    assert "Allow secretsmanager:GetSecretValue on arn:aws:secretsmanager:eu-west-2:000000000000:secret:db-* (function)" in out
    assert f"managed policy {READ_ONLY}" in out
