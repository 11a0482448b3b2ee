"""dorc's pytest plugin (entry point ``pytest11``): ``dorc_project``, ``dorc_run``, ``dorc_invoke``, ``dorc_aws``."""

from __future__ import annotations

import json

import pytest

from helpers import chain_main, make_project

BUCKET = "dorc-census-holding-local"


@pytest.fixture
def census_env(monkeypatch, census_repo):
    """Points the plugin at the private copy of pipeline-config (request it before the dorc_ fixtures)."""
    monkeypatch.setenv("CONFIG_REPO_PATH", str(census_repo))
    return census_repo


def test_plugin_is_registered_by_its_entry_point(request):
    import dorc.pytest_plugin

    assert request.config.pluginmanager.get_plugin("dorc") is dorc.pytest_plugin


def test_dorc_project_keeps_state_in_the_tests_tmp_path(census_env, dorc_project, tmp_path):
    assert dorc_project.root == census_env
    assert dorc_project.state_dir == tmp_path / ".dorc"
    assert dorc_project.settings.project == "dorc-census"


def test_dorc_run_census(census_env, dorc_run, dorc_project, tmp_path):
    result = dorc_run("census", "raw", event={"year": 2020})
    assert result.succeeded, result.error
    assert result.step("function1", layer="raw").output["body"]["records"] == 52
    assert result.step("function2").output["body"]["total_population"] == 331449281
    assert result.step("function1", layer="raw").input == {"year": 2020}
    # state went to this test's folder, not to the project
    assert [p.parent for p in (tmp_path / ".dorc" / "runs").glob("*.json")] == [tmp_path / ".dorc" / "runs"]
    assert (tmp_path / ".dorc" / "local-aws" / "s3" / BUCKET / "index.json").is_file()
    assert not (census_env / ".dorc").exists()


def test_dorc_invoke_one_function(census_env, dorc_invoke, tmp_path):
    step = dorc_invoke("census", "raw", "function1", event={"raw_key": "census/raw/test/states.json"})
    assert step.succeeded, step.error
    assert step.function == "function1" and step.layer == "census/raw"
    assert step.output["body"]["records"] == 52
    assert step.output["body"]["key"] == "census/raw/test/states.json"
    index = json.loads((tmp_path / ".dorc" / "local-aws" / "s3" / BUCKET / "index.json").read_text())
    assert list(index) == ["census/raw/test/states.json"]  # only raw ran: no hand-over for one function


def test_dorc_aws_seeds_what_a_run_reads(census_env, dorc_aws, dorc_run):
    assert dorc_aws.holding_bucket == BUCKET
    s3 = dorc_aws.client("s3")
    rows = [["NAME", "P1_001N", "state"], ["Wyoming", "576851", "56"], ["Texas", "29,145,505", "48"],
            ["Nowhere", "n/a", "99"]]
    s3.put_object(Bucket=BUCKET, Key="census/raw/2020/states.json", Body=json.dumps(rows).encode())

    result = dorc_run("census", "processed")
    assert result.succeeded, result.error
    clean = result.step("function1").output["body"]
    assert clean["records"] == 2
    assert clean["rejected"] == [{"state_fips": "99", "reason": "population 'n/a' is not a number"}]
    body = result.output["body"]
    assert body["states"] == 2
    assert body["total_population"] == 576851 + 29145505
    assert body["largest"]["name"] == "Texas"
    assert body["regions"] == {"West": {"population": 576851, "states": 1, "share": round(576851 / 29722356, 6)},
                               "South": {"population": 29145505, "states": 1, "share": round(29145505 / 29722356, 6)}}
    # and the test sees what the run wrote, in the same local AWS
    features = json.loads(s3.get_object(Bucket=BUCKET, Key="census/processed/2020/features.json")["Body"].read())
    assert [r["name"] for r in features["rows"]] == ["Texas", "Wyoming"]


def test_dorc_aws_missing_raw_data(census_env, dorc_aws, dorc_run):
    result = dorc_run("census", "processed")
    assert not result.succeeded
    assert result.error.type == "RawDataMissing"
    assert "run the raw layer first" in result.error.message


def test_plugin_in_a_users_project(pytester):
    """A user's own test suite: the ini option names the pipeline-config folder, relative to the rootdir."""
    make_project(pytester.path, {"shop/orders": {"main": chain_main("fetch", "total"), "functions": {
        "fetch": ("import boto3, json, os\n\ndef handler(event, context):\n"
                  "    obj = boto3.client('s3').get_object(Bucket=os.environ['HOLDING_BUCKET'], Key='orders.json')\n"
                  "    return {'statusCode': 200, 'body': json.loads(obj['Body'].read())}\n"),
        "total": "def handler(event, context):\n    return {'statusCode': 200, 'body': sum(event['body'])}\n",
    }}}, name="shop", dirname="config")
    pytester.makeini("[pytest]\ndorc_config_repo = config\n")
    pytester.makepyfile(test_orders="""
        import json

        def test_total(dorc_aws, dorc_run, dorc_project, tmp_path):
            assert dorc_project.root.name == "config"
            assert dorc_project.state_dir == tmp_path / ".dorc"
            dorc_aws.client("s3").put_object(Bucket=dorc_aws.holding_bucket, Key="orders.json", Body=b"[1, 2, 39]")
            result = dorc_run("shop", "orders")
            assert result.succeeded, result.error
            assert result.output == {"statusCode": 200, "body": 42}

        def test_invoke(dorc_invoke):
            step = dorc_invoke("shop", "orders", "total", event={"body": [5, 5]})
            assert step.output["body"] == 10
    """)
    outcome = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    outcome.assert_outcomes(passed=2)
    assert not (pytester.path / "config" / ".dorc").exists()
