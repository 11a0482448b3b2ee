"""Deploying to LocalStack as plan then execute: the planner against recorded endpoint states,
the executor and the read side against stand-in clients, and ``--dry-run``'s refusals. No
LocalStack: the end-to-end proof is in tests/localstack/test_localstack_target.py."""

from __future__ import annotations

import json
import socket

import pytest

from dorc.api import plan_layer
from dorc.errors import DorcError, LocalStackRunError
from dorc.package import code_sha256, package_plan
from dorc.project import find_project
from dorc.targets.localstack.deploy import shared_plans
from dorc.targets.localstack.executor import describe, execute
from dorc.plan import function_policy
from dorc.targets.localstack.planner import LAMBDA_TRUST, LocalFile, plan_deployment
from dorc.targets.localstack.remote import RemoteState, read_remote_state
from helpers import OK_HANDLER, chain_main, make_project

ENV = "preprod"
SECRET = "s3cr3t-value-never-printed"
SHAS = {"f1": "a1" * 32, "g1": "b2" * 32, "g2": "c3" * 32}
# g2 declares /tmp and logging settings; the other functions keep Lambda's defaults
G2_SETTINGS = "ephemeral_storage=2048, log_format='JSON', log_level='DEBUG'"


def _raw_main() -> str:
    main = chain_main("f1", handover="processed", f1=f"environment={{'API_TOKEN': {SECRET!r}}}")
    main = main.replace("from dorc import ", "from dorc import CronTrigger, ")
    return main.replace("    functions=", "    trigger=CronTrigger(name='daily', cron='0 6 * * ? *'),\n    functions=")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("planner"), {
        "shop/raw": {"main": _raw_main(), "functions": {"f1": OK_HANDLER}},
        "shop/processed": {"main": chain_main("g1", "g2", g2=G2_SETTINGS),
                           "functions": {"g1": OK_HANDLER, "g2": OK_HANDLER}},
    }, name="shop")
    for layer in ("raw", "processed"):
        (root / "src/shop" / layer / f"Pulumi.{ENV}.yaml").write_text("config:\n  aws:region: eu-west-2\n")
    return find_project(root)


def _built(plan, shas=SHAS):
    """The plan as ``package_plan`` leaves it: a zip per function (the planner never opens it)."""
    return plan.model_copy(update={"functions": [
        f.model_copy(update={"package_sha256": shas[f.key], "package_path": f"/build/{f.name}.zip"})
        for f in plan.functions]})


@pytest.fixture(scope="module")
def setup(project):
    """Plans (the hand-over source listed first, on purpose), shared plans, deployed variables."""
    plans = {key: _built(plan_layer(project, "shop", key.split("/")[1], ENV)) for key in ("shop/raw", "shop/processed")}
    universal, infra = shared_plans(project, plans["shop/raw"])
    envs = {key: {fn.key: dict(fn.environment) for fn in p.functions} for key, p in plans.items()}
    return plans, universal, infra, envs


def deployed_state(plans, universal, infra, envs) -> dict:
    """What LocalStack reports once ``plans`` are deployed, as ``RemoteState.to_dict`` records it."""
    doc: dict = {
        "buckets": {universal.artifact_bucket: {"eventbridge": False}, infra.holding_bucket: {"eventbridge": True}},
        "roles": {r.name: {"trust_policy": r.trust_policy, "policy": r.policy} for r in infra.roles.values()},
        "artifacts": [], "functions": {}, "log_groups": {}, "state_machines": {}, "rules": {},
    }
    for key, plan in plans.items():
        for fn in plan.functions:
            doc["artifacts"].append(f"packages/{fn.package_sha256}.zip")
            doc["roles"][fn.role_name] = {"trust_policy": LAMBDA_TRUST, "policy": function_policy(fn),
                                          "managed_policies": list(fn.managed_policies)}
            doc["functions"][fn.name] = {
                "Role": fn.role_arn, "Handler": fn.handler, "Runtime": fn.runtime,
                "Timeout": fn.timeout, "MemorySize": fn.memory, "Description": fn.description,
                "Environment": {"Variables": envs[key][fn.key]}, "CodeSha256": code_sha256(fn.package_sha256),
                "EphemeralStorage": {"Size": fn.ephemeral_storage}, "LoggingConfig": _reported_logging(fn),
                "State": "Active", "LastUpdateStatus": "Successful"}
            doc["log_groups"][fn.log_group] = plan.log_retention_days
        doc["state_machines"][plan.state_machine_arn] = {"definition": plan.asl, "roleArn": infra.roles["states"].arn}
        for t in plan.triggers:
            doc["rules"][t.rule_name] = {
                "ScheduleExpression": t.schedule_expression, "State": "ENABLED",
                "Description": f"starts {plan.state_machine_name}",
                "Targets": [{"Id": "state-machine", "Arn": plan.state_machine_arn, "RoleArn": infra.roles["events"].arn}]}
    return json.loads(json.dumps(doc))  # plain data, as a recording on disk would be


def _reported_logging(fn) -> dict:
    """``LoggingConfig`` as GetFunction reports it: with the log group, levels for JSON only."""
    doc = {"LogFormat": fn.log_format, "LogGroup": fn.log_group}
    if fn.log_format == "JSON":
        doc.update(ApplicationLogLevel=fn.log_level or "INFO", SystemLogLevel="INFO")
    return doc


def _plan(setup, remote: dict | RemoteState, **kw):
    plans, universal, infra, envs = setup
    state = remote if isinstance(remote, RemoteState) else RemoteState.from_dict(remote)
    return plan_deployment(plans, universal, infra, state, envs, **kw)


def _ops(calls):
    return [f"{c.service}.{c.operation}" for c in calls]


def test_an_empty_endpoint_gets_every_create_in_order(setup):
    calls = _plan(setup, RemoteState())
    assert _ops(calls) == [
        "s3.CreateBucket", "s3.CreateBucket", "s3.PutBucketNotificationConfiguration",
        "iam.CreateRole", "iam.PutRolePolicy", "iam.CreateRole", "iam.PutRolePolicy",
        "iam.CreateRole", "iam.PutRolePolicy",
        # shop/processed first: shop/raw hands over to it
        "s3.PutObject", "s3.PutObject", "logs.CreateLogGroup", "logs.PutRetentionPolicy",
        "logs.CreateLogGroup", "logs.PutRetentionPolicy",
        "iam.CreateRole", "iam.PutRolePolicy", "iam.CreateRole", "iam.PutRolePolicy",  # each function's own role
        "lambda.CreateFunction", "lambda.CreateFunction",
        "states.CreateStateMachine",
        "s3.PutObject", "logs.CreateLogGroup", "logs.PutRetentionPolicy", "iam.CreateRole", "iam.PutRolePolicy",
        "lambda.CreateFunction",
        "states.CreateStateMachine", "events.PutRule", "events.PutTargets",
    ]
    creates = [c.params.get("FunctionName") or c.params.get("name") for c in calls
               if c.operation in ("CreateFunction", "CreateStateMachine")]
    assert creates == ["shop-processed-g1-preprod", "shop-processed-g2-preprod", "shop-processed-preprod",
                       "shop-raw-f1-preprod", "shop-raw-preprod"]
    assert calls[0].params == {"Bucket": "shop-artifacts",
                               "CreateBucketConfiguration": {"LocationConstraint": "eu-west-2"}}
    upload = calls[9]
    assert upload.params["Key"] == f"packages/{SHAS['g1']}.zip"
    assert upload.params["Body"] == LocalFile("/build/shop-processed-g1-preprod.zip")
    f1 = next(c for c in calls if c.params.get("FunctionName") == "shop-raw-f1-preprod")
    assert f1.params["Code"] == {"S3Bucket": "shop-artifacts", "S3Key": f"packages/{SHAS['f1']}.zip"}
    assert f1.params["Environment"]["Variables"]["API_TOKEN"] == SECRET  # made with the value...
    assert f1.line() == (  # ...shown by name only
        f"lambda.CreateFunction shop-raw-f1-preprod (python3.12, 512 MB, 600 s, code s3://shop-artifacts/packages/"
        f"{SHAS['f1']}.zip, environment: DORC_PROJECT, DORC_ENV, DORC_PIPELINE, HOLDING_BUCKET, API_TOKEN)")


def test_an_endpoint_that_already_matches_gets_no_call(setup):
    assert _plan(setup, deployed_state(*setup)) == []


def test_the_recorded_state_survives_json(setup):
    doc = deployed_state(*setup)
    assert RemoteState.from_dict(json.loads(RemoteState.from_dict(doc).to_json())).to_dict() == doc
    with pytest.raises(ValueError, match="unknown remote state field"):
        RemoteState.from_dict({"bukkets": {}})


def test_existing_shared_resources_are_not_created_again(setup):
    plans, universal, infra, envs = setup
    doc = deployed_state(*setup)
    doc.update(artifacts=[], functions={}, log_groups={}, state_machines={}, rules={})
    ops = _ops(_plan(setup, doc))
    assert not [op for op in ops if op.startswith(("iam.", "s3.Create", "s3.PutBucket"))]
    # a role whose policy drifted gets the policy again, and only that
    doc["roles"][infra.roles["states"].name]["policy"] = {"Version": "2012-10-17", "Statement": []}
    calls = [c for c in _plan(setup, doc) if c.service == "iam"]
    assert [(c.operation, c.params["RoleName"]) for c in calls] == [("PutRolePolicy", infra.roles["states"].name)]


def test_changed_code_only_updates_that_functions_code(project, setup, tmp_path):
    """Real zips: the same sources give the same digest, an edited one a new digest."""
    _, universal, infra, envs = setup
    processed = plan_layer(project, "shop", "processed", ENV)
    built = package_plan(processed, tmp_path / "build", tmp_path / "cache")
    recorded = deployed_state({"shop/processed": built}, universal, infra, envs)
    again = package_plan(processed, tmp_path / "build2", tmp_path / "cache")
    assert plan_deployment({"shop/processed": again}, universal, infra, RemoteState.from_dict(recorded), envs) == []

    g2 = processed.function("g2")
    source = tmp_path / "g2-src"
    source.mkdir()
    (source / "lambda.py").write_text(OK_HANDLER + "\n# edited\n")
    edited = processed.model_copy(update={"functions": [
        processed.function("g1"), g2.model_copy(update={"source_dir": str(source)})]})
    rebuilt = package_plan(edited, tmp_path / "build3", tmp_path / "cache")
    calls = plan_deployment({"shop/processed": rebuilt}, universal, infra, RemoteState.from_dict(recorded), envs)
    new_key = f"packages/{rebuilt.function('g2').package_sha256}.zip"
    assert [(c.service, c.operation) for c in calls] == [("s3", "PutObject"), ("lambda", "UpdateFunctionCode")]
    assert calls[0].params["Key"] == new_key
    assert calls[1].params == {"FunctionName": "shop-processed-g2-preprod", "S3Bucket": "shop-artifacts",
                               "S3Key": new_key}
    assert f"was {built.function('g2').package_sha256[:12]}…" in calls[1].description


def test_changed_memory_and_environment_update_the_configuration_only(setup):
    doc = deployed_state(*setup)
    current = doc["functions"]["shop-raw-f1-preprod"]
    current["MemorySize"] = 256
    current["Environment"]["Variables"]["API_TOKEN"] = "an-older-secret"
    current["Environment"]["Variables"]["GONE"] = "x"
    calls = _plan(setup, doc)
    assert _ops(calls) == ["lambda.UpdateFunctionConfiguration"]
    (call,) = calls
    assert call.params["FunctionName"] == "shop-raw-f1-preprod" and call.params["MemorySize"] == 512
    assert call.params["Environment"]["Variables"]["API_TOKEN"] == SECRET
    assert call.description == ("shop-raw-f1-preprod (memory 256 MB → 512 MB; "
                                "environment: API_TOKEN changed, GONE removed)")


def test_functions_are_created_with_their_tmp_size_and_logging(setup):
    """Lambda's defaults said explicitly (512 MB, Text) and g2's own settings, as Lambda takes them."""
    creates = {c.params["FunctionName"]: c.params for c in _plan(setup, RemoteState())
               if c.operation == "CreateFunction"}
    f1, g2 = creates["shop-raw-f1-preprod"], creates["shop-processed-g2-preprod"]
    assert f1["EphemeralStorage"] == {"Size": 512} and f1["LoggingConfig"] == {"LogFormat": "Text"}
    assert g2["EphemeralStorage"] == {"Size": 2048}
    assert g2["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO"}


@pytest.mark.parametrize("name, setting, value, said", [
    ("shop-processed-g2-preprod", "EphemeralStorage", {"Size": 512}, "ephemeral storage 512 MB → 2048 MB"),
    ("shop-processed-g2-preprod", "LoggingConfig", {"LogFormat": "Text", "LogGroup": "/aws/lambda/x"},
     "logging Text → JSON DEBUG"),
    ("shop-processed-g2-preprod", "LoggingConfig",
     {"LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "INFO", "LogGroup": "/aws/lambda/x"},
     "logging JSON WARN → JSON DEBUG"),
    ("shop-raw-f1-preprod", "LoggingConfig",
     {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO", "LogGroup": "/aws/lambda/x"},
     "logging JSON INFO → Text"),
])
def test_a_changed_tmp_size_or_logging_updates_the_configuration(setup, name, setting, value, said):
    doc = deployed_state(*setup)
    doc["functions"][name][setting] = value
    (call,) = _plan(setup, doc)
    assert call.operation == "UpdateFunctionConfiguration" and call.params["FunctionName"] == name
    plan_fn = next(f for p in setup[0].values() for f in p.functions if f.name == name)
    assert call.params["EphemeralStorage"] == {"Size": plan_fn.ephemeral_storage}
    assert call.params["LoggingConfig"]["LogFormat"] == plan_fn.log_format
    assert call.description == f"{name} ({said})"


def test_an_endpoint_without_tmp_size_or_logging_holds_lambdas_defaults(setup):
    """A function as an older endpoint reports it (no EphemeralStorage, no LoggingConfig): Lambda's
    defaults, so only the function that declares others is updated."""
    doc = deployed_state(*setup)
    for current in doc["functions"].values():
        del current["EphemeralStorage"], current["LoggingConfig"]
    calls = _plan(setup, doc)
    assert [(c.operation, c.params["FunctionName"]) for c in calls] == [
        ("UpdateFunctionConfiguration", "shop-processed-g2-preprod")]
    assert calls[0].description == "shop-processed-g2-preprod (ephemeral storage 512 MB → 2048 MB; logging Text → JSON DEBUG)"


def test_a_changed_state_machine_is_updated(setup):
    plans, _, infra, _ = setup
    doc = deployed_state(*setup)
    arn = plans["shop/processed"].state_machine_arn
    doc["state_machines"][arn]["definition"]["Comment"] = "an older description"
    calls = _plan(setup, doc)
    assert _ops(calls) == ["states.UpdateStateMachine"]
    assert calls[0].params["stateMachineArn"] == arn
    assert json.loads(calls[0].params["definition"]) == plans["shop/processed"].asl
    assert calls[0].line() == "states.UpdateStateMachine shop-processed-preprod (definition changed)"


def test_a_package_already_in_the_artifact_bucket_is_not_uploaded(setup):
    doc = deployed_state(*setup)
    doc["functions"].pop("shop-raw-f1-preprod")
    calls = _plan(setup, doc)
    assert _ops(calls) == ["lambda.CreateFunction"]
    doc["artifacts"].remove(f"packages/{SHAS['f1']}.zip")
    assert _ops(_plan(setup, doc)) == ["s3.PutObject", "lambda.CreateFunction"]


def test_a_digest_shared_by_two_functions_is_uploaded_once(setup):
    plans, universal, infra, envs = setup
    same = {"shop/processed": _built(plans["shop/processed"], {"g1": "d4" * 32, "g2": "d4" * 32})}
    calls = plan_deployment(same, universal, infra, RemoteState(), envs)
    assert _ops(calls).count("s3.PutObject") == 1


def test_promoted_packages_must_already_be_in_the_artifact_bucket(setup):
    plans, universal, infra, envs = setup
    doc = deployed_state(*setup)
    doc["functions"].pop("shop-raw-f1-preprod")
    promoted = {"shop/raw": {"f1": "e5" * 32}}
    with pytest.raises(LocalStackRunError, match=f"package {'e5' * 6} of f1 is not in s3://shop-artifacts") as err:
        _plan(setup, doc, promoted=promoted)
    assert "promote from an environment" in err.value.hint
    doc["artifacts"].append(f"packages/{'e5' * 32}.zip")
    calls = _plan(setup, doc, promoted=promoted)
    assert _ops(calls) == ["lambda.CreateFunction"]
    assert calls[0].params["Code"]["S3Key"] == f"packages/{'e5' * 32}.zip"


def test_the_hand_over_target_is_planned_before_the_layer_that_hands_over(setup):
    doc = deployed_state(*setup)
    doc["state_machines"] = {}
    calls = _plan(setup, doc)
    assert [c.params["name"] for c in calls] == ["shop-processed-preprod", "shop-raw-preprod"]


def test_a_rule_pointing_elsewhere_gets_its_target_again(setup):
    doc = deployed_state(*setup)
    doc["rules"]["shop-raw-daily-preprod"]["Targets"] = []
    doc["rules"]["shop-raw-daily-preprod"]["ScheduleExpression"] = "cron(0 7 * * ? *)"
    calls = _plan(setup, doc)
    assert [c.line() for c in calls] == ["events.PutRule shop-raw-daily-preprod (cron(0 6 * * ? *))",
                                         "events.PutTargets shop-raw-daily-preprod → shop-raw-preprod"]


def test_the_dry_run_description_never_holds_an_environment_value(setup):
    doc = deployed_state(*setup)
    doc["functions"]["shop-raw-f1-preprod"]["Environment"]["Variables"]["API_TOKEN"] = "older-secret"
    for calls in (_plan(setup, RemoteState()), _plan(setup, doc)):
        text = "\n".join(describe(calls)) + "\n".join(map(repr, calls)) + "\n".join(c.done for c in calls)
        assert "API_TOKEN" in text
        assert SECRET not in text and "older-secret" not in text


# -- the executor and the read side, against stand-in clients ---------------------------------

class _NotFound(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class _Recorder:
    """A boto3 client stand-in: records every call; reads answer as an empty endpoint does, and
    a call named in ``fail`` raises that error code."""

    MISSING = {"head_bucket": "404", "head_object": "404", "get_role": "NoSuchEntity",
               "get_function": "ResourceNotFoundException", "describe_state_machine": "StateMachineDoesNotExist",
               "describe_rule": "ResourceNotFoundException"}

    def __init__(self, log: list, fail: dict[str, str]):
        self._log, self._fail = log, fail

    def __getattr__(self, name: str):
        def call(**params):
            self._log.append((name, params))
            if name in self._fail or name in self.MISSING:
                raise _NotFound(self._fail.get(name) or self.MISSING[name])
            if name == "describe_log_groups":
                return {"logGroups": []}
            if name == "get_function_configuration":
                return {"State": "Active", "LastUpdateStatus": "Successful"}
            return {}
        return call


class _Clients:
    def __init__(self, fail: dict[str, str] | None = None):
        self.log: list = []
        for attr in ("s3", "iam", "awslambda", "logs", "states", "events"):
            setattr(self, attr, _Recorder(self.log, fail or {}))


def test_reading_an_empty_endpoint_makes_only_read_calls(setup):
    plans, universal, infra, _ = setup
    c = _Clients()
    state = read_remote_state(c, plans, universal, infra)
    assert state == RemoteState()
    assert c.log and all(name.startswith(("head_", "get_", "describe_", "list_")) for name, _ in c.log)


def test_the_executor_makes_the_calls_in_order_and_reports_each(setup, tmp_path):
    plans, universal, infra, envs = setup
    zip_file = tmp_path / "f1.zip"
    zip_file.write_bytes(b"x" * 1234)
    raw = plans["shop/raw"]
    raw = raw.model_copy(update={"functions": [raw.functions[0].model_copy(update={"package_path": str(zip_file)})]})
    doc = deployed_state({"shop/raw": raw}, universal, infra, envs)
    doc["artifacts"], doc["state_machines"] = [], {}
    doc["functions"]["shop-raw-f1-preprod"]["MemorySize"] = 1024
    calls = plan_deployment({"shop/raw": raw}, universal, infra, RemoteState.from_dict(doc), envs)
    c, said = _Clients(), []
    execute(calls, c, said.append, ready=["shop-raw-f1-preprod"])
    made = [name for name, _ in c.log]
    assert made == ["put_object", "get_function_configuration", "update_function_configuration",
                    "get_function_configuration", "create_state_machine", "get_function_configuration"]
    assert said == [f"uploaded f1 package {SHAS['f1'][:12]} (1,234 bytes)",
                    "updated configuration of shop-raw-f1-preprod", "created state machine shop-raw-preprod"]


def test_a_failed_call_is_named_and_an_already_done_one_is_fine(setup):
    plans, universal, infra, envs = setup
    create = plan_deployment(plans, universal, infra, RemoteState(), envs)[:1]
    assert create[0].operation == "CreateBucket"
    execute(create, _Clients({"create_bucket": "BucketAlreadyOwnedByYou"}), lambda m: None)  # made meanwhile
    with pytest.raises(LocalStackRunError, match=r"s3.CreateBucket shop-artifacts \(eu-west-2\) failed"):
        execute(create, _Clients({"create_bucket": "AccessDenied"}), lambda m: None)


# -- --dry-run from the command line -----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_deploy_dry_run_needs_a_reachable_localstack(cli, project):
    url = f"http://127.0.0.1:{_free_port()}"
    r = cli("deploy", "shop", "raw", "--env", ENV, "--target", "localstack", "--dry-run", "--endpoint", url,
            "--config-repo", project.root)
    assert r.exit_code == 2, r.output
    assert f"LocalStack is not reachable at {url}" in r.stderr
    assert "dorc localstack start" in r.stderr and "Traceback" not in r.output


def test_run_dry_run_applies_to_localstack_only(cli, project):
    r = cli("run", "shop", "raw", "--dry-run", "--config-repo", project.root)
    assert r.exit_code == 2 and "--dry-run only applies to --localstack" in r.stderr
    url = f"http://127.0.0.1:{_free_port()}"
    r = cli("run", "shop", "raw", "--localstack", "--dry-run", "--endpoint", url, "--config-repo", project.root)
    assert r.exit_code == 2 and f"LocalStack is not reachable at {url}" in r.stderr
    assert not (project.state_dir / "runs").exists() or not any((project.state_dir / "runs").iterdir())


# -- ownership: names carry no project ---------------------------------------------------------

def _owned_by(doc: dict, project: str, *, tags: bool = True) -> dict:
    """``doc`` as if another project had deployed the same names (tagged, or only its variable)."""
    for cfg in doc["functions"].values():
        if tags:
            cfg["Tags"] = {"dorc:project": project, "dorc:env": ENV}
        else:
            cfg["Environment"]["Variables"]["DORC_PROJECT"] = project
    for sm in doc["state_machines"].values():
        if tags:
            sm["tags"] = {"dorc:project": project}
    return doc


def test_plans_tag_every_resource_with_their_project(setup):
    plans, *_ = setup
    assert {p.tags["dorc:project"] for p in plans.values()} == {"shop"}
    calls = _plan(setup, RemoteState())
    fn = next(c for c in calls if c.operation == "CreateFunction")
    assert fn.params["Tags"]["dorc:project"] == "shop"
    sm = next(c for c in calls if c.operation == "CreateStateMachine")
    assert {"key": "dorc:project", "value": "shop"} in sm.params["tags"]


def test_resources_of_this_project_or_untagged_ones_are_updated(setup):
    """Tags of this project, or none at all (deployed before dorc tagged), are no conflict."""
    mine = _owned_by(deployed_state(*setup), "shop")
    assert _plan(setup, mine) == []
    untagged = deployed_state(*setup)
    untagged["functions"]["shop-raw-f1-preprod"]["Timeout"] = 1
    assert _ops(_plan(setup, untagged)) == ["lambda.UpdateFunctionConfiguration"]


@pytest.mark.parametrize("tags", [True, False], ids=["tag", "DORC_PROJECT-variable"])
def test_a_resource_of_another_project_is_refused_by_name(setup, tags):
    doc = _owned_by(deployed_state(*setup), "warehouse", tags=tags)
    with pytest.raises(DorcError) as exc:
        _plan(setup, doc)
    err = exc.value
    assert err.exit_code == 2  # nothing changed, nothing ran
    head, *lines = err.message.splitlines()
    assert head.startswith("refused to deploy shop/raw (preprod): the endpoint holds resources of the same names "
                           "that another project deployed")
    assert "  - function shop-raw-f1-preprod belongs to project 'warehouse' (tag dorc:project), not 'shop'" in lines
    assert "  - function shop-processed-g2-preprod belongs to project 'warehouse' (tag dorc:project), not 'shop'" \
        in lines
    assert any(line.startswith("  - state machine shop-raw-preprod belongs") for line in lines) is tags
    assert "another endpoint or account" in err.hint and "from project 'warehouse'" in err.hint
    assert "dorc destroy shop raw --env preprod --target localstack" in err.hint


def test_a_foreign_state_machine_alone_is_refused(setup):
    doc = deployed_state(*setup)
    (arn,) = [a for a in doc["state_machines"] if a.endswith(":shop-processed-preprod")]
    doc["state_machines"][arn]["tags"] = {"dorc:project": "warehouse"}
    with pytest.raises(DorcError, match="state machine shop-processed-preprod belongs to project 'warehouse'"):
        _plan(setup, doc)


def test_reading_the_endpoint_reads_the_owners_tags(setup):
    """``ListTags`` / ``ListTagsForResource`` are what the ownership check reads."""
    plans, universal, infra, _ = setup

    class Found(_Recorder):
        MISSING = {k: v for k, v in _Recorder.MISSING.items() if k not in ("get_function", "describe_state_machine")}

        def __getattr__(self, name):
            inner = super().__getattr__(name)

            def call(**params):
                inner(**params)
                if name == "get_function":
                    return {"Configuration": {"FunctionArn": f"arn:{params['FunctionName']}", "CodeSha256": "x"}}
                if name == "list_tags":
                    return {"Tags": {"dorc:project": "warehouse", "of": params["Resource"]}}
                if name == "describe_state_machine":
                    return {"definition": "{}", "roleArn": "r"}
                if name == "list_tags_for_resource":
                    return {"tags": [{"key": "dorc:project", "value": "warehouse"}]}
                return {}
            return call

    c = _Clients()
    for attr in ("awslambda", "states"):
        setattr(c, attr, Found(c.log, {}))
    state = read_remote_state(c, plans, universal, infra)
    assert state.functions["shop-raw-f1-preprod"]["Tags"] == {"dorc:project": "warehouse",
                                                              "of": "arn:shop-raw-f1-preprod"}
    assert {sm["tags"]["dorc:project"] for sm in state.state_machines.values()} == {"warehouse"}
