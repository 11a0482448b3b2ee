"""``dorc plan``: offline, readable, one JSON document with ``--json``, and light to import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from pulumi_helpers import REPO, copy_pipeline_config


def test_plan_census_raw_prints_resources_and_packages(census, census_root, dorc_cli):
    from dorc.api import plan_layer
    from dorc.package import package_plan

    code, out, err = dorc_cli("plan", "census", "raw", "--env", "prod", "--config-repo", census_root)
    assert code == 0, err
    plan = package_plan(plan_layer(census, "census", "raw", "prod"), census.state_dir / "build", census.state_dir / "cache")
    (fn,) = plan.functions
    for text in (
        "census/raw (prod): stack census-raw-prod in Pulumi project dorc-census-census-raw",
        "reads stack organization/dorc-census-infra/infra-prod",
        "aws:lambda/function:Function  census-raw-function1-prod",
        "runtime python3.12 · handler lambda.handler · memory 256 MB · timeout 60 s",
        "role         arn:aws:iam::000000000000:role/dorc-census-census-raw-function1-prod",
        "function1  role dorc-census-census-raw-function1-prod",
        "Allow s3:GetObject, s3:PutObject, s3:DeleteObject on arn:aws:s3:::dorc-census-holding-prod/* (default)",
        "environment  CENSUS_API_URL, DORC_ENV, DORC_PIPELINE, DORC_PROJECT, HOLDING_BUCKET  (values not shown)",
        "aws:cloudwatch/logGroup:LogGroup  /aws/lambda/census-raw-function1-prod",
        "aws:sfn/stateMachine:StateMachine  census-raw-prod",
        "definition   7 states: function1, contract checks, hands over to census/processed  (--asl shows it in full)",
        "aws:cloudwatch/eventRule:EventRule  census-raw-daily-prod",
        "schedule     cron(0 6 * * ? *)",
        f"function1    sha256 {fn.package_sha256}  (built here; a deploy uploads it)",
        f"plan_digest: {plan.digest()}",
    ):
        assert text in out, text
    # names of variables, never their values
    assert "https://api.census.gov" not in out


def test_plan_json_is_one_document(census_root, dorc_cli):
    code, out, err = dorc_cli("plan", "census", "--env", "preprod", "--json", "--config-repo", census_root)
    assert code == 0, err
    doc = json.loads(out)
    stacks = {s["stack"]: s for s in doc["stacks"]}
    assert set(stacks) == {"census-raw-preprod", "census-processed-preprod"}
    processed = stacks["census-processed-preprod"]
    lambdas = {r["physical_name"]: r["inputs"] for r in processed["resources"] if r["type"] == "aws:lambda/function:Function"}
    assert set(lambdas) == {"census-processed-function1-preprod", "census-processed-function2-preprod"}
    for inputs in lambdas.values():
        assert inputs["environment"] == {"variables": ["DORC_ENV", "DORC_PIPELINE", "DORC_PROJECT", "HOLDING_BUCKET"],
                                         "secret": False}
    assert set(processed["packages"]) == {"function1", "function2"}
    assert all(len(p["sha256"]) == 64 and p["uploaded"] for p in processed["packages"].values())
    assert processed["outputs"]["state_machine_name"] == "census-processed-preprod"


def test_plan_shared_stacks(census_root, dorc_cli):
    code, out, err = dorc_cli("plan", "infra", "--env", "prod", "--config-repo", census_root)
    assert code == 0, err
    assert "aws:iam/role:Role  dorc-census-lambda-prod" in out
    assert '"Principal": {"Service": "lambda.amazonaws.com"}' in out
    assert "aws:s3/bucket:Bucket  dorc-census-holding-prod" in out
    code, out, err = dorc_cli("plan", "universal", "--json", "--config-repo", census_root)
    assert code == 0, err
    (stack,) = json.loads(out)["stacks"]
    assert stack["stack"] == "universal" and stack["outputs"] == {"artifact_bucket": "dorc-census-artifacts"}


def test_plan_refuses_machine_local_environments(census_root, dorc_cli):
    code, out, err = dorc_cli("plan", "census", "raw", "--env", "local", "--config-repo", census_root)
    assert code == 2 and "machine-local environment" in err


def test_plan_without_pulumi_says_how_to_install_it(census_root, dorc_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "pulumi", None)  # `import pulumi` now fails
    code, out, err = dorc_cli("plan", "census", "raw", "--env", "prod", "--config-repo", census_root)
    assert code == 2
    assert "pip install 'dorc[pulumi]'" in err and "Traceback" not in err


def test_run_local_does_not_import_pulumi(tmp_path):
    """Heavy imports stay inside the Pulumi commands: ``dorc run --local`` never loads them."""
    repo = copy_pipeline_config(tmp_path)
    script = textwrap.dedent(f"""
        import sys
        import dorc.cli
        loaded_by_import = sorted(m for m in sys.modules if m.split(".")[0] in ("pulumi", "pulumi_aws"))
        sys.argv = ["dorc", "run", "census", "raw", "--local", "--quiet", "--config-repo", {str(repo)!r}]
        try:
            dorc.cli.main()
        except SystemExit as exc:
            code = exc.code
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pulumi", "pulumi_aws"))
        print("RESULT", code, loaded_by_import, loaded, file=sys.stderr)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG_REPO_PATH", "DORC_ENV")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    result = [line for line in proc.stderr.splitlines() if line.startswith("RESULT")]
    assert result == ["RESULT 0 [] []"], proc.stderr[-3000:]
