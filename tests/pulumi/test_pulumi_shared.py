"""The shared stacks' programs (pipeline-config/universal, pipeline-config/infra) register their
plans, and export exactly what the layers' stack references are served offline."""

from __future__ import annotations

import json

import pytest

from pulumi_helpers import ENVS

ROLE = "aws:iam/role:Role"
POLICY = "aws:iam/rolePolicy:RolePolicy"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BLOCK_ALL = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}


def _inputs(run, type_):
    return {r.name: r.inputs for r in run.find(type_)}


@pytest.mark.parametrize("env", ENVS)
def test_infra_roles_trust_and_policies_equal_the_plan(census, stack_run, env):
    from dorc.plan import LOCAL_ACCOUNT_ID, build_infra_plan

    plan = build_infra_plan(census.settings, env, "eu-west-2", account_id=LOCAL_ACCOUNT_ID)
    run = stack_run("infra", None, env)
    assert (run.project, run.stack) == ("dorc-census-infra", f"infra-{env}")
    roles, policies = _inputs(run, ROLE), _inputs(run, POLICY)
    assert set(roles) == {f"{k}-role" for k in ("lambda", "states", "events")}
    for kind, role in plan.roles.items():
        got = roles[f"{kind}-role"]
        assert got["name"] == role.name == f"dorc-census-{kind}-{env}"
        trust = json.loads(got["assumeRolePolicy"])
        assert trust == role.trust_policy
        assert trust["Statement"][0]["Principal"] == {"Service": f"{kind}.amazonaws.com"}
        pol = policies[f"{kind}-policy"]
        assert pol["role"] == role.name
        assert json.loads(pol["policy"]) == role.policy
    (holding,) = _inputs(run, BUCKET).values()
    assert holding["bucket"] == plan.holding_bucket == f"dorc-census-holding-{env}"
    assert holding["forceDestroy"] is False
    (block,) = _inputs(run, PUBLIC).values()
    assert {k: block[k] for k in BLOCK_ALL} == BLOCK_ALL


def test_universal_artifact_bucket(census, stack_run):
    from dorc.plan import build_universal_plan

    plan = build_universal_plan(census.settings)
    run = stack_run("universal")
    assert (run.project, run.stack) == ("dorc-census-universal", "universal")
    (bucket,) = _inputs(run, BUCKET).values()
    assert bucket["bucket"] == plan.artifact_bucket == "dorc-census-artifacts"
    assert bucket["forceDestroy"] is False
    assert "versioning" not in bucket
    (versioning,) = _inputs(run, VERSIONING).values()
    assert versioning["versioningConfiguration"] == {"status": "Disabled"}
    (block,) = _inputs(run, PUBLIC).values()
    assert {k: block[k] for k in BLOCK_ALL} == BLOCK_ALL
    assert run.exports == {"artifact_bucket": plan.artifact_bucket}


@pytest.mark.parametrize("env", ENVS)
def test_layers_are_served_what_the_shared_stacks_export(census, stack_run, env):
    """Offline, a layer's stack references are answered from the plans; the shared programs,
    run for real under mocks, must export exactly that, or offline plans would lie."""
    from dorc.targets.pulumi.preview import planned_stack_outputs

    served = planned_stack_outputs(census, env)
    assert served[f"dorc-census-infra/infra-{env}"] == stack_run("infra", None, env).exports
    assert served["dorc-census-universal/universal"] == stack_run("universal").exports


def test_pulumi_yaml_names_the_projects_dorc_references():
    import yaml

    from pulumi_helpers import PIPELINE_CONFIG

    expected = {
        "universal": "dorc-census-universal",
        "infra": "dorc-census-infra",
        "src/census/raw": "dorc-census-census-raw",
        "src/census/processed": "dorc-census-census-processed",
    }
    for folder, name in expected.items():
        doc = yaml.safe_load((PIPELINE_CONFIG / folder / "Pulumi.yaml").read_text())
        assert doc["name"] == name and doc["runtime"] == "python", folder
    for env in ENVS:
        assert (PIPELINE_CONFIG / "infra" / f"Pulumi.{env}.yaml").is_file()


def test_components_are_importable_from_dorc():
    import dorc
    from dorc.targets.pulumi import program as pulumi_program

    assert dorc.CreateUniversal is pulumi_program.CreateUniversal
    assert dorc.CreateInfra is pulumi_program.CreateInfra
