"""Throw-away projects: S3 triggers, secrets, promoted packages and failures, through the
same offline runner ``dorc plan`` uses."""

from __future__ import annotations

import base64
import json

import pytest

from pulumi_helpers import CIPHERTEXT, OK_HANDLER, write_project

DEMO_MAIN = '''
from dorc import CreatePipeline, Function, PipelineDefinition, S3Trigger, load_config

config = load_config(__file__)
CreatePipeline(config, PipelineDefinition(
    file_path=__file__,
    description="demo",
    functions=[Function(name="f1", timeout=30, memory=128,
                        environment={"API_KEY": config.get("api_key", "none"), "MODE": "batch"})],
    trigger=S3Trigger(name="landing", bucket_name="{project}-landing-{env}", key_prefix="in/"),
)).apply()
'''

PROD = f'''
config:
  aws:region: eu-west-2
  t:api_key:
    secure: {CIPHERTEXT}
'''

PROMOTED = "ab" * 32


@pytest.fixture
def demo(tmp_path):
    """A one-function layer demo/main with an S3 trigger and a ``secure:`` setting in prod."""
    from dorc.project import find_project

    root = write_project(tmp_path / "demo", {"demo/main": {"main": DEMO_MAIN, "functions": {"f1": OK_HANDLER}}},
                         stack_files={"demo/main": {"prod": PROD}})
    return find_project(root)


def _one(run, type_):
    (reg,) = run.find(type_)
    return reg


def test_s3_trigger_becomes_an_event_pattern_rule(demo):
    from dorc.api import plan_layer
    from dorc.targets.pulumi.preview import run_stack, unwrap_secrets

    plan = plan_layer(demo, "demo", "main", "prod")
    (trigger,) = plan.triggers
    run = run_stack(demo, "demo", "main", "prod")
    rule = _one(run, "aws:cloudwatch/eventRule:EventRule").inputs
    assert rule["name"] == trigger.rule_name == "demo-main-landing-prod"
    assert "scheduleExpression" not in rule
    assert json.loads(rule["eventPattern"]) == trigger.event_pattern == {
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": ["t-landing-prod"]}, "object": {"key": [{"prefix": "in/"}]}},
    }
    target = unwrap_secrets(_one(run, "aws:cloudwatch/eventTarget:EventTarget").inputs)
    assert target["arn"] == plan.state_machine_arn
    assert target["roleArn"] == "arn:aws:iam::000000000000:role/t-events-prod"
    assert sorted(run.stack_references()) == ["organization/t-infra/infra-prod", "organization/t-universal/universal"]


@pytest.mark.parametrize("settings, logging_config", [
    ('ephemeral_storage=10240, log_format="JSON", log_level="WARN"',
     {"logFormat": "JSON", "applicationLogLevel": "WARN", "systemLogLevel": "INFO"}),
    ('ephemeral_storage=1024, log_format="JSON"',  # Lambda's default level, said
     {"logFormat": "JSON", "applicationLogLevel": "INFO", "systemLogLevel": "INFO"}),
])
def test_tmp_size_and_logging_are_function_inputs(tmp_path, settings, logging_config):
    from dorc.api import plan_layer
    from dorc.project import find_project
    from dorc.targets.pulumi.preview import run_stack

    main = DEMO_MAIN.replace('Function(name="f1", ', f'Function(name="f1", {settings}, ')
    root = write_project(tmp_path / "demo", {"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}},
                         stack_files={"demo/main": {"prod": PROD}})
    project = find_project(root)
    (fn,) = plan_layer(project, "demo", "main", "prod").functions
    inputs = _one(run_stack(project, "demo", "main", "prod"), "aws:lambda/function:Function").inputs
    assert inputs["ephemeralStorage"] == {"size": fn.ephemeral_storage}
    assert inputs["loggingConfig"] == logging_config


def test_secure_setting_is_a_pulumi_secret_in_the_function(demo):
    from dorc.targets.pulumi.preview import is_secret, run_stack, unwrap_secrets

    run = run_stack(demo, "demo", "main", "prod")
    env = _one(run, "aws:lambda/function:Function").inputs["environment"]
    assert is_secret(env)  # Pulumi encrypts it in state and hides it in previews
    # offline the ciphertext stands in for the decrypted value Pulumi would pass
    assert unwrap_secrets(env)["variables"] == {
        "API_KEY": CIPHERTEXT, "MODE": "batch", "DORC_PROJECT": "t", "DORC_ENV": "prod",
        "DORC_PIPELINE": "demo/main", "HOLDING_BUCKET": "t-holding-prod"}
    shown = json.dumps({"resources": run.resources(), "outputs": run.exports})
    assert CIPHERTEXT not in shown and "[secret]" in shown


def test_secrets_never_appear_in_dorc_plan(demo, dorc_cli):
    code, text, err = dorc_cli("plan", "demo", "main", "--env", "prod", "--config-repo", demo.root)
    assert code == 0, err
    code, doc, err2 = dorc_cli("plan", "demo", "main", "--env", "prod", "--json", "--config-repo", demo.root)
    assert code == 0, err2
    for output in (text, err, doc, err2):
        assert CIPHERTEXT not in output
        for part in CIPHERTEXT.split(":")[1:]:
            assert part not in output
    assert "API_KEY" in text and "values include secrets" in text
    (stack,) = json.loads(doc)["stacks"]
    (fn,) = [r for r in stack["resources"] if r["type"] == "aws:lambda/function:Function"]
    assert fn["inputs"]["environment"] == {
        "variables": ["API_KEY", "DORC_ENV", "DORC_PIPELINE", "DORC_PROJECT", "HOLDING_BUCKET", "MODE"], "secret": True}


def test_promoted_packages_are_deployed_without_a_build_or_upload(tmp_path, dorc_cli):
    from dorc.project import find_project
    from dorc.targets.pulumi.preview import run_stack

    prod = f"config:\n  aws:region: eu-west-2\n  dorc:promoted_packages: '{json.dumps({'f1': PROMOTED})}'\n"
    root = write_project(tmp_path / "p", {"demo/main": {"main": DEMO_MAIN, "functions": {"f1": OK_HANDLER}}},
                         stack_files={"demo/main": {"prod": prod}})
    run = run_stack(find_project(root), "demo", "main", "prod")
    assert run.find("aws:s3/bucketObjectv2:BucketObjectv2") == []
    fn = _one(run, "aws:lambda/function:Function").inputs
    assert fn["s3Key"] == f"packages/{PROMOTED}.zip"
    assert base64.b64decode(fn["sourceCodeHash"]).hex() == PROMOTED
    assert run.exports["packages"] == {"f1": PROMOTED}
    assert not (root / ".dorc" / "build").exists()  # nothing was built
    code, out, err = dorc_cli("plan", "demo", "main", "--env", "prod", "--config-repo", root)
    assert code == 0, err
    assert f"sha256 {PROMOTED}  (promoted build: a deploy reuses the one in the artifact bucket)" in out


def test_promoted_packages_must_name_every_function(tmp_path, dorc_cli):
    prod = "config:\n  aws:region: eu-west-2\n  dorc:promoted_packages: '{\"other\": \"" + PROMOTED + "\"}'\n"
    root = write_project(tmp_path / "p", {"demo/main": {"main": DEMO_MAIN, "functions": {"f1": OK_HANDLER}}},
                         stack_files={"demo/main": {"prod": prod}})
    code, out, err = dorc_cli("plan", "demo", "main", "--env", "prod", "--config-repo", root)
    assert code == 2
    assert "promoted_packages names other; the layer has f1" in err and "Traceback" not in err


def test_invalid_definition_is_reported_as_problems(tmp_path, dorc_cli):
    root = write_project(tmp_path / "p", {"demo/main": {"main": DEMO_MAIN, "functions": {}}},
                         stack_files={"demo/main": {"prod": "config:\n  aws:region: eu-west-2\n"}})
    code, out, err = dorc_cli("plan", "demo", "main", "--env", "prod", "--config-repo", root)
    assert code == 2
    assert "problem(s) in the pipeline definition" in err and "lambda.py does not exist" in err
    assert "Traceback" not in err


def test_a_failing_program_is_a_dorc_error(tmp_path, dorc_cli):
    main = "raise RuntimeError('boom in the definition')\n"
    root = write_project(tmp_path / "p", {"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}},
                         stack_files={"demo/main": {"prod": "config: {}\n"}})
    code, out, err = dorc_cli("plan", "demo", "main", "--env", "prod", "--config-repo", root)
    assert code == 2
    assert "RuntimeError: boom in the definition" in err and "Traceback" not in err


def test_region_mismatch_is_refused(tmp_path):
    from dorc.project import find_project
    from dorc.targets.pulumi.preview import run_program
    from dorc.targets.pulumi.program import PulumiTargetError

    root = write_project(tmp_path / "p", {"demo/main": {"main": DEMO_MAIN, "functions": {"f1": OK_HANDLER}}},
                         stack_files={"demo/main": {"prod": "config:\n  aws:region: eu-west-2\n"}})
    project = find_project(root)
    # the layer's file says eu-west-2; a stack configured for another region must not deploy it
    with pytest.raises(PulumiTargetError, match="aws:region is us-east-1"):
        run_program(project.main_file("demo", "main"), project="t-demo-main", stack="demo-main-prod",
                    config={"aws:region": "us-east-1"})


def test_apply_outside_a_pulumi_program_explains_itself(demo):
    """Importing pulumi is not running a program: a definition run as a script says what to do."""
    import pulumi  # noqa: F401  (imported, but no program running: apply() must not take the Pulumi path)

    from dorc.errors import DorcError
    from dorc.loader import load_pipeline
    from dorc.pipeline import CreatePipeline

    loaded = load_pipeline(demo, "demo", "main", "prod")
    with pytest.raises(DorcError, match="not a script"):
        CreatePipeline(loaded.config, loaded.definition).apply()
