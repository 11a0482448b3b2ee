"""``dorc init``, ``dorc new`` and ``dorc invoke``: a new user's first pipeline, from an empty
folder to a green local run and a green ``pytest``, with nothing copied by hand; and every
refusal writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
from helpers import OUTSIDE_VARS

from dorc import api
from dorc.project import find_project


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (but dorc's own state) with its bytes: "nothing written" checks."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".dorc" not in p.relative_to(root).parts and "__pycache__" not in p.parts}


@pytest.fixture
def shop(tmp_path) -> Path:
    """A config repo made by ``init``, with sales/processed and sales/raw (raw hands over to it)."""
    made = api.init_project(tmp_path / "shop", name="shop")
    project = find_project(made.root)
    api.new_layer("sales", "processed", "clean,features", project=project)
    api.new_layer("sales", "raw", ["fetch", "store"], hands_over_to="sales/processed",
                  trigger="cron:0 6 * * ? *", project=find_project(made.root))
    return made.root


def test_first_pipeline_init_new_validate_run_pytest(cli, tmp_path, monkeypatch):
    """The README's walk-through, as a new user types it: every step green, no file copied by hand."""
    (tmp_path / "shop").mkdir()
    monkeypatch.chdir(tmp_path / "shop")
    res = cli("init")
    assert res.exit_code == 0, res.output
    repo = tmp_path / "shop" / "pipeline-config"  # the default folder; named after the folder holding it
    assert 'name = "shop"' in (repo / "dorc.toml").read_text()
    assert "name: shop-universal\n" in (repo / "universal" / "Pulumi.yaml").read_text()
    assert "name: shop-infra\n" in (repo / "infra" / "Pulumi.yaml").read_text()
    assert (repo / "infra" / "Pulumi.preprod.yaml").is_file() and (repo / "infra" / "Pulumi.prod.yaml").is_file()
    assert ".dorc/" in (repo / ".gitignore").read_text().splitlines()
    assert find_project(repo).settings.project == "shop"

    res = cli("new", "sales", "processed", "--functions", "clean,features")  # found as ./pipeline-config
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(repo)  # and from inside it
    res = cli("new", "sales", "raw", "--functions", "fetch,store", "--hands-over-to", "sales/processed",
              "--trigger", "cron:0 6 * * ? *")
    assert res.exit_code == 0, res.output
    raw = repo / "src" / "sales" / "raw"
    assert "name: shop-sales-raw\n" in (raw / "Pulumi.yaml").read_text()
    assert sorted(p.name for p in raw.glob("Pulumi.*.yaml")) == ["Pulumi.preprod.yaml", "Pulumi.prod.yaml"]
    assert (raw / "src" / "fetch" / "lambda.py").is_file() and (raw / "requirements.txt").is_file()

    res = cli("validate")
    assert res.exit_code == 0, res.output
    assert "sales/raw is valid" in res.stdout and "sales/processed is valid" in res.stdout
    listed = cli("list").stdout
    assert "hands over to sales/processed" in listed and "cron: 06:00 UTC daily" in listed

    res = cli("run", "sales", "raw", "--local", "--json", "--event", '{"day": "2026-12-02"}')
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [(s["layer"], s["function"]) for s in doc["steps"]] == [
        ("sales/raw", "fetch"), ("sales/raw", "store"), ("sales/processed", "clean"), ("sales/processed", "features")]
    assert doc["output"] == {"statusCode": 200, "body": {"day": "2026-12-02"}}  # each handler passed its event on
    assert doc["warnings"] == []

    # the repo's own tests (one from init, two per layer from new), run by `pytest` inside it
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS and not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


def test_invoke_prints_logs_and_summary(shop, cli):
    res = cli("invoke", "sales", "raw", "fetch", "--event", '{"n": 1}', "--config-repo", shop)
    assert res.exit_code == 0, res.output
    assert 'fetch received {"n": 1}' in res.stdout  # the handler's own print, as CloudWatch shows it
    assert "REPORT RequestId" in res.stdout
    assert "sales/raw fetch returned (statusCode 200)" in res.stdout


def test_invoke_json_gives_the_step(shop, cli, tmp_path):
    event = tmp_path / "event.json"
    event.write_text('{"n": 2}')
    res = cli("invoke", "sales", "processed", "features", "--event", f"@{event}", "--json", "--config-repo", shop)
    assert res.exit_code == 0, res.output
    step = json.loads(res.stdout)
    assert (step["layer"], step["function"], step["status"]) == ("sales/processed", "features", "succeeded")
    assert step["output"] == {"statusCode": 200, "body": {"n": 2}}
    assert step["deployed_name"] == "sales-processed-features-local"
    assert "features received" in res.stderr  # logs on stderr: stdout is the one document


def test_invoke_follows_lambdas_rules_not_the_state_machines(shop, cli):
    """Invoked alone there is no contract: a 503 is a successful invocation; a raise is not."""
    handler = shop / "src" / "sales" / "processed" / "src" / "clean" / "lambda.py"
    handler.write_text("def handler(event, context):\n    return {\"statusCode\": 503, \"body\": \"busy\"}\n")
    res = cli("invoke", "sales", "processed", "clean", "--config-repo", shop)
    assert res.exit_code == 0, res.output
    assert "returned (statusCode 503)" in res.stdout

    handler.write_text("def handler(event, context):\n    raise ValueError('boom')\n")
    res = cli("invoke", "sales", "processed", "clean", "--config-repo", shop)
    assert res.exit_code == 1, res.output
    assert "ValueError: boom" in res.stdout
    res = cli("invoke", "sales", "processed", "clean", "--json", "--config-repo", shop)
    assert res.exit_code == 1
    assert json.loads(res.stdout)["error"]["type"] == "ValueError"


def test_invoke_unknown_function_exits_2(shop, cli):
    res = cli("invoke", "sales", "raw", "nope", "--config-repo", shop)
    assert res.exit_code == 2
    assert "has no function 'nope'" in res.stderr and "fetch, store" in res.stderr


def test_s3_trigger_layer_validates(shop, cli):
    res = cli("new", "sales", "drops", "-f", "ingest", "--trigger", "s3:shop-drop/incoming/", "--config-repo", shop)
    assert res.exit_code == 0, res.output
    main = (shop / "src" / "sales" / "drops" / "__main__.py").read_text()
    assert 'S3Trigger(name="upload", bucket_name="shop-drop", key_prefix="incoming/")' in main
    assert cli("validate", "sales", "drops", "--config-repo", shop).exit_code == 0


def test_an_s3_trigger_on_the_holding_store_fires_from_store_put(shop, cli, tmp_path):
    """``s3:holding/PREFIX`` is the holding store of whichever environment runs the layer."""
    res = cli("new", "sales", "inbox", "-f", "ingest", "--trigger", "s3:holding/incoming/", "--config-repo", shop)
    assert res.exit_code == 0, res.output
    main = (shop / "src" / "sales" / "inbox" / "__main__.py").read_text()
    assert 'bucket_name="{project}-holding-{env}", key_prefix="incoming/"' in main
    assert cli("validate", "sales", "inbox", "--config-repo", shop).exit_code == 0
    bucket = api.plan_layer(find_project(shop), "sales", "inbox", "local").holding_bucket
    day = tmp_path / "day.csv"
    day.write_text("a,b\n1,2\n")
    res = cli("store", "put", f"s3://{bucket}/incoming/day.csv", str(day), "--config-repo", shop)
    assert res.exit_code == 0, res.output
    assert "sales/inbox" in res.output


# -- refusals: exit 2, a message naming the problem, and nothing written -------------------------

def test_init_refuses_an_existing_repo(shop, cli, monkeypatch):
    before = snapshot(shop)
    res = cli("init", shop)
    assert res.exit_code == 2
    assert "dorc.toml already exists" in res.stderr
    monkeypatch.chdir(shop / "src")  # the default folder from inside a repo: refused too, not nested
    res = cli("init")
    assert res.exit_code == 2
    assert "already holds a dorc.toml: you are inside a dorc config repo" in res.stderr
    assert snapshot(shop) == before and not (shop / "src" / "pipeline-config").exists()


def test_init_refuses_a_folder_holding_a_file_it_would_write(cli, tmp_path):
    folder = tmp_path / "data-team"
    folder.mkdir()
    (folder / ".gitignore").write_text("mine\n")
    res = cli("init", folder)
    assert res.exit_code == 2
    assert ".gitignore already exists" in res.stderr and "nothing written" in res.stderr
    assert snapshot(folder) == {".gitignore": b"mine\n"}


def test_init_refuses_a_project_name_s3_would_refuse(cli, tmp_path):
    res = cli("init", tmp_path / "x", "--name", "Data_Team")
    assert res.exit_code == 2
    assert "cannot name the project's S3 buckets" in res.stderr
    assert not (tmp_path / "x").exists()


def test_new_refuses_an_existing_layer_naming_the_file(shop, cli):
    before = snapshot(shop)
    res = cli("new", "sales", "raw", "--functions", "other", "--config-repo", shop)
    assert res.exit_code == 2
    assert "src/sales/raw/__main__.py" in res.stderr and "nothing written" in res.stderr
    assert snapshot(shop) == before


def test_new_refuses_when_only_its_test_file_exists(shop, cli):
    (shop / "tests" / "test_sales_fresh.py").write_text("# mine\n")
    before = snapshot(shop)
    res = cli("new", "sales", "fresh", "--functions", "a", "--config-repo", shop)
    assert res.exit_code == 2
    assert "tests/test_sales_fresh.py already exists" in res.stderr
    assert snapshot(shop) == before and not (shop / "src" / "sales" / "fresh").exists()


@pytest.mark.parametrize("args, message", [
    (["sales", "bad layer", "-f", "a"], "layer name 'bad layer'"),
    (["_hidden", "raw", "-f", "a"], "instance name '_hidden'"),
    (["sales", "daily", "-f", "1st"], "function name '1st' is not a plain name"),
    (["sales", "daily", "-f", "a,b,a"], "names 'a' twice"),
    (["sales", "daily", "-f", " , "], "names no function"),
    (["sales", "daily", "-f", "a", "--trigger", "cron:0 6 * * * *"], "exactly one of them must be '?'"),
    (["sales", "daily", "-f", "a", "--trigger", "every day"], "neither cron:EXPR nor s3:BUCKET/PREFIX"),
    (["sales", "daily", "-f", "a", "--trigger", "s3:Bad_Bucket/in"], "not a valid S3 bucket name"),
    (["sales", "daily", "-f", "a", "--hands-over-to", "sales/missing"], "no layer sales/missing"),
    (["sales", "daily", "-f", "f" * 50], "characters"),  # sales-daily-fff...-preprod: over Lambda's 64
], ids=["layer", "instance", "function", "duplicate", "empty", "cron", "trigger", "s3-bucket", "handover", "aws-limit"])
def test_new_refuses_bad_names_writing_nothing(shop, cli, args, message):
    before = snapshot(shop)
    res = cli("new", *args, "--config-repo", shop)
    assert res.exit_code == 2, res.output
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.output
    assert snapshot(shop) == before


def test_census_tests_ignore_a_users_own_pipelines_in_pipeline_config(tmp_path, monkeypatch):
    """A user following the README adds pipelines to pipeline-config/: dorc's census tests copy
    census only, so an extra (even broken) instance there changes nothing for them."""
    users = helpers.copy_pipeline_config(tmp_path / "users")
    (users / "src" / "mine" / "raw").mkdir(parents=True)
    (users / "src" / "mine" / "raw" / "__main__.py").write_text("raise RuntimeError('half written')\n")
    monkeypatch.setattr(helpers, "PIPELINE_CONFIG", users)
    copy = helpers.copy_pipeline_config(tmp_path / "copy")
    project = find_project(copy)
    assert project.instances() == ["census"]
    assert api.validate(project) == {"census/processed": [], "census/raw": []}


def test_the_daily_loop_on_a_fresh_repo_fail_then_resume_then_pass(shop, cli):
    """Scaffold → validate → run → a function fails → fix it → resume from it → pass, with the
    function before it not run again and its recorded output handed to the fixed one."""
    clean = shop / "src" / "sales" / "processed" / "src" / "clean" / "lambda.py"
    good = clean.read_text()
    repo = ("--config-repo", str(shop))
    assert cli("validate", *repo).exit_code == 0
    clean.write_text(good + "\n\ndef handler(event, context):\n    raise ValueError('bad row 7')\n")
    res = cli("run", "sales", "raw", "--local", "--event", '{"day": "2026-12-01"}', *repo)
    assert res.exit_code == 1, res.output
    assert "ValueError" in res.output and "bad row 7" in res.output
    clean.write_text(good)
    res = cli("run", "sales", "processed", "--local", "--from", "clean", "--json", *repo)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [s["function"] for s in doc["steps"]] == ["clean", "features"]  # fetch and store did not run again
    assert "2026-12-01" in json.dumps(doc["steps"][0]["input"])  # what clean got in the failed run
    shown = cli("runs", "show", "last", "--json", *repo)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["resumed_from"]["function"] == "clean"
