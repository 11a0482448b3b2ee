"""The ``dorc`` command: in-process through ``dorc.cli.main()`` and, end to end, as ``python -m dorc``.

Every census run uses a private copy of pipeline-config (``census_repo``), so the repository's own
``pipeline-config/.dorc`` is never read or written.
"""

from __future__ import annotations

import io
import json
import sys

import pytest

from helpers import OK_HANDLER, run_dorc_subprocess, PIPELINE_CONFIG, chain_main, handler_returning

RUN_KEYS = {"status", "pipeline", "layer", "target", "steps", "output"}
STEP_KEYS = {"function", "status", "duration_ms", "output", "error"}

ECHO = "def handler(event, context):\n    print('echo handler ran')\n    return {'statusCode': 200, 'body': event}\n"


@pytest.fixture
def echo_repo(project_factory):
    return project_factory({"demo/main": {"main": chain_main("f1"), "functions": {"f1": ECHO}}})


@pytest.fixture
def failing_repo(project_factory):
    return project_factory({"demo/main": {"main": chain_main("f1", "f2", "f3"), "functions": {
        "f1": OK_HANDLER, "f2": handler_returning("{'statusCode': 500, 'body': 'no'}"), "f3": OK_HANDLER}}})


def _repo_state_untouched():
    """The real pipeline-config must not gain state from the tests."""
    return sorted(p.name for p in (PIPELINE_CONFIG / ".dorc" / "runs").glob("*.json")) if (PIPELINE_CONFIG / ".dorc" / "runs").is_dir() else []


@pytest.fixture(autouse=True, scope="module")
def _real_pipeline_config_is_not_touched():
    before = _repo_state_untouched()
    yield
    assert _repo_state_untouched() == before


# -- dorc run --------------------------------------------------------------------------------

def test_run_census_raw(census_repo, cli):
    res = cli("run", "census", "raw", "--local", "--config-repo", census_repo)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "pipeline succeeded" in out
    # the raw layer hands over to processed: three steps, with their logs
    assert out.index("census/raw function1") < out.index("census/processed function1") < out.index("census/processed function2")
    assert "stored 52 state records" in out
    assert "START RequestId:" in out and "REPORT RequestId:" in out
    assert f"run record: {census_repo / '.dorc' / 'runs'}" in out
    assert len(list((census_repo / ".dorc" / "runs").glob("*-census-raw-local-local.json"))) == 1


def test_run_json_is_one_document_on_stdout(census_repo, cli):
    res = cli("run", "census", "raw", "--local", "--json", "--config-repo", census_repo)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # the whole of stdout is one JSON document
    assert RUN_KEYS <= set(doc)
    assert (doc["status"], doc["pipeline"], doc["layer"], doc["target"]) == ("succeeded", "census", "raw", "local")
    assert [s["function"] for s in doc["steps"]] == ["function1", "function1", "function2"]
    for step in doc["steps"]:
        assert STEP_KEYS <= set(step)
        assert step["status"] == "succeeded" and step["error"] is None
        assert isinstance(step["duration_ms"], (int, float))
        assert "logs" not in step
    assert doc["steps"][0]["output"]["body"]["records"] == 52
    assert doc["output"] == doc["steps"][-1]["output"]
    assert doc["output"]["body"]["states"] == 51
    # handler prints and the progress view go to stderr
    assert "stored 52 state records" in res.stderr
    assert "stored 52" not in res.stdout


def test_run_failing_pipeline_exits_1(failing_repo, cli):
    res = cli("run", "demo", "main", "--config-repo", failing_repo)
    assert res.exit_code == 1, res.output
    assert "pipeline failed at demo/main f2" in res.stdout
    assert "dorc.NonSuccessStatusCode" in res.stdout


def test_run_failing_pipeline_json(failing_repo, cli):
    res = cli("run", "demo", "--json", "--config-repo", failing_repo)
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["status"] == "failed"
    assert [(s["function"], s["status"]) for s in doc["steps"]] == [("f1", "succeeded"), ("f2", "failed")]
    assert doc["steps"][1]["error"]["type"] == "dorc.NonSuccessStatusCode"
    assert doc["output"] is None


def test_run_invalid_definition_exits_2(project_factory, cli):
    root = project_factory({"demo/main": {"main": chain_main("f1", "f2"), "functions": {"f1": OK_HANDLER, "f2": None}}},
                           dirname="cfg")
    res = cli("run", "demo", "main", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert "1 problem(s) in the pipeline definition" in res.stderr
    assert "cfg/src/demo/main/__main__.py [function f2]" in res.stderr
    assert "Traceback" not in res.output
    assert not (root / ".dorc").exists()  # nothing ran


def test_run_unknown_instance_exits_2(census_repo, cli):
    res = cli("run", "nope", "--config-repo", census_repo)
    assert res.exit_code == 2
    assert "no pipeline instance 'nope'" in res.stderr
    assert "known instances: census" in res.stderr


def test_run_unknown_layer_exits_2(census_repo, cli):
    res = cli("run", "census", "cooked", "--config-repo", census_repo)
    assert res.exit_code == 2
    assert "no pipeline census/cooked" in res.stderr
    assert "layers of census: processed, raw" in res.stderr


def test_run_without_a_project_exits_2(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("run", "census")
    assert res.exit_code == 2
    assert "no pipeline-config found" in res.stderr


def test_project_is_found_from_inside_it_or_beside_it(census_repo, cli, monkeypatch):
    # inside the config repo (its own checkout, as users often keep it), deep in a layer's folder
    monkeypatch.chdir(census_repo / "src" / "census" / "raw" / "src")
    res = cli("list")
    assert res.exit_code == 0, res.stderr
    assert f"({census_repo.resolve()})" in res.stdout
    # beside it: ./pipeline-config wins over any dorc.toml further up
    holder = census_repo.parent / "workspace"
    (holder / "pipeline-config").mkdir(parents=True)
    for item in census_repo.iterdir():
        (holder / "pipeline-config" / item.name).symlink_to(item)
    monkeypatch.chdir(holder)
    res = cli("list")
    assert res.exit_code == 0, res.stderr
    assert f"({(holder / 'pipeline-config').resolve()})" in res.stdout


@pytest.mark.parametrize("event", ["{not json", "{'single': 'quotes'}", ""], ids=["broken", "python-dict", "empty-file"])
def test_run_bad_event_exits_2(echo_repo, cli, tmp_path, event):
    if event == "":
        path = tmp_path / "empty.json"
        path.write_text("")
        event = f"@{path}"
    res = cli("run", "demo", "--event", event, "--config-repo", echo_repo)
    assert res.exit_code == 2, res.output
    assert "is not valid JSON" in res.stderr
    assert not (echo_repo / ".dorc").exists()


def test_run_event_file_missing_exits_2(echo_repo, cli, tmp_path):
    res = cli("run", "demo", "--event", f"@{tmp_path / 'missing.json'}", "--config-repo", echo_repo)
    assert res.exit_code == 2
    assert "cannot read the event file" in res.stderr


def test_run_event_json_text_and_file(echo_repo, cli, tmp_path):
    event = {"year": 2020, "quote": 'say "hi"\n', "list": [1, 2]}
    res = cli("run", "demo", "main", "-e", json.dumps(event), "--json", "--config-repo", echo_repo)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["steps"][0]["input"] == event
    assert doc["output"]["body"] == event

    path = tmp_path / "event.json"
    path.write_text(json.dumps({"from": "file"}))
    res = cli("run", "demo", "main", "--event", f"@{path}", "--json", "--config-repo", echo_repo)
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["output"]["body"] == {"from": "file"}

    res = cli("run", "demo", "main", "--json", "--config-repo", echo_repo)
    assert json.loads(res.stdout)["steps"][0]["input"] == {}


def test_run_quiet_hides_handler_logs(echo_repo, cli):
    res = cli("run", "demo", "-q", "--config-repo", echo_repo)
    assert res.exit_code == 0
    assert "echo handler ran" not in res.output
    assert "pipeline succeeded" in res.stdout


def test_run_local_and_localstack_together_exits_2(echo_repo, cli):
    res = cli("run", "demo", "--local", "--localstack", "--config-repo", echo_repo)
    assert res.exit_code == 2
    assert "choose one of --local and --localstack" in res.stderr


@pytest.mark.parametrize("args, message", [
    (["run", "demo", "--no-such-option"], "No such option: --no-such-option"),
    (["run"], "Missing"),
    (["store", "nope"], "No such command"),
], ids=["unknown-option", "missing-argument", "unknown-command"])
def test_usage_errors_exit_2_without_a_traceback(cli, args, message):
    res = cli(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_no_arguments_shows_help(cli):
    res = cli()
    assert "Usage" in res.output
    assert "run" in res.output and "validate" in res.output


def test_config_repo_from_environment(echo_repo, cli, monkeypatch):
    monkeypatch.setenv("CONFIG_REPO_PATH", str(echo_repo))
    res = cli("run", "demo", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["pipeline"] == "demo"


# -- persistence between runs and the local store --------------------------------------------

def test_processed_on_an_empty_store_fails_with_a_clear_error(census_repo, cli):
    res = cli("run", "census", "processed", "--local", "--config-repo", census_repo)
    assert res.exit_code == 1, res.output
    assert "RawDataMissing" in res.stdout
    assert "run the raw layer first" in res.stdout
    # the function's own error is logged as Lambda logs it (its frames only); dorc does not crash
    assert "[ERROR] RawDataMissing: no raw census data" in res.stdout
    for internal in ("dorc/cli/", "dorc/targets/", "sim/runtime.py", "site-packages"):
        assert internal not in res.output

    res = cli("run", "census", "processed", "--json", "--config-repo", census_repo)
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    err = doc["steps"][0]["error"]
    assert err["type"] == "RawDataMissing"
    assert "run the raw layer first (dorc run census raw)" in err["message"]
    assert [s["function"] for s in doc["steps"]] == ["function1"]


def test_raw_then_processed_as_separate_runs_and_the_store(census_repo, cli, monkeypatch):
    res = cli("run", "census", "raw", "--json", "--config-repo", census_repo)
    assert res.exit_code == 0, res.stderr

    res = cli("store", "ls", "--config-repo", census_repo)
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert [l.split()[0] for l in lines] == [
        "s3://dorc-census-holding-local/census/processed/2020/clean.json",
        "s3://dorc-census-holding-local/census/processed/2020/features.json",
        "s3://dorc-census-holding-local/census/raw/2020/states.json",
    ]
    assert all(l.endswith(" bytes") for l in lines)

    # a later, separate run of processed reads what raw stored
    res = cli("run", "census", "processed", "--json", "--config-repo", census_repo)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["steps"][0]["output"]["body"]["records"] == 52
    assert doc["output"]["body"]["total_population"] == 331449281

    # clearing refuses without --yes when nobody can be asked
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    res = cli("store", "clear", "--config-repo", census_repo)
    assert res.exit_code == 2
    assert "refusing to delete them without --yes" in res.stderr
    assert len(cli("store", "ls", "--config-repo", census_repo).stdout.splitlines()) == 3

    res = cli("store", "clear", "--yes", "--config-repo", census_repo)
    assert res.exit_code == 0
    assert "3 object(s) deleted" in res.stdout
    res = cli("store", "ls", "--config-repo", census_repo)
    assert "the local store is empty" in res.stdout

    res = cli("run", "census", "processed", "--json", "--config-repo", census_repo)
    assert res.exit_code == 1
    assert json.loads(res.stdout)["steps"][0]["error"]["type"] == "RawDataMissing"


def test_store_on_a_fresh_project(census_repo, cli):
    assert "the local store is empty" in cli("store", "ls", "--config-repo", census_repo).stdout
    res = cli("store", "clear", "-y", "--config-repo", census_repo)
    assert res.exit_code == 0
    assert "0 object(s) deleted" in res.stdout


# -- dorc list -------------------------------------------------------------------------------

def test_list_census_in_run_order(census_repo, cli):
    res = cli("list", "--config-repo", census_repo)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "dorc-census" in out
    raw, processed = out.index("raw —"), out.index("processed —")
    assert raw < processed  # run order: raw hands over to processed (not by name)
    proc = out[processed:]
    assert proc.index("1. function1") < proc.index("2. function2")
    assert "census-processed-function1-local" in proc and "census-processed-function2-local" in proc
    assert "state machine census-processed-local" in proc
    raw_part = out[raw:processed]
    assert "1. function1  census-raw-function1-local · python3.12 · 256 MB · 60 s" in raw_part
    assert "hands over to census/processed" in raw_part
    assert "daily: cron: 06:00 UTC daily" in raw_part  # the schedule in words


def test_list_orders_functions_by_the_chain_not_the_declaration(project_factory, cli):
    from helpers import main_py

    main = main_py("Function(name='last'), Function(name='first', next_function='middle'), "
                   "Function(name='middle', next_function='last')")
    root = project_factory({
        "demo/main": {"main": main, "functions": {n: OK_HANDLER for n in ("first", "middle", "last")}},
        "demo/broken": {"main": chain_main("x"), "functions": {"x": None}},
    })
    res = cli("list", "--config-repo", root, "--env", "localstack")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.index("1. first") < out.index("2. middle") < out.index("3. last")
    assert "demo-main-first-localstack" in out
    assert "broken: invalid (1 problem(s); run dorc validate)" in out


def test_help_lists_the_commands(cli):
    res = cli("--help")
    assert res.exit_code == 0
    for command in ("run", "validate", "list", "store"):
        assert command in res.stdout


# -- end to end, in child processes ----------------------------------------------------------

def test_subprocess_raw_then_processed(census_repo):
    first = run_dorc_subprocess("run", "census", "raw", "--local", "--json", "--config-repo", census_repo)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert RUN_KEYS <= set(doc)
    assert doc["status"] == "succeeded"
    assert doc["warnings"] == []  # every census import is the standard library, its own or Lambda's
    assert [s["function"] for s in doc["steps"]] == ["function1", "function1", "function2"]
    assert "stored 52 state records" in first.stderr
    assert "stored 52" not in first.stdout

    # another process: the holding store persisted on disk
    second = run_dorc_subprocess("run", "census", "processed", "--json", "--config-repo", census_repo)
    assert second.returncode == 0, second.stderr
    doc = json.loads(second.stdout)
    assert doc["layer"] == "processed"
    assert doc["output"]["body"]["states"] == 51
    assert len(list((census_repo / ".dorc" / "runs").glob("*.json"))) == 2


def test_subprocess_exit_codes(failing_repo, project_factory):
    failed = run_dorc_subprocess("run", "demo", "--config-repo", failing_repo)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "pipeline failed at demo/main f2" in failed.stdout

    bad = project_factory({"demo/main": {"main": chain_main("f1"), "functions": {"f1": "def handler(event):\n    pass\n"}}})
    invalid = run_dorc_subprocess("validate", "--config-repo", bad)
    assert invalid.returncode == 2, invalid.stdout + invalid.stderr
    assert "handler must take two positional parameters" in invalid.stdout
    assert "Traceback" not in invalid.stderr


def test_runs_lists_the_recorded_runs_newest_first(census_repo, cli):
    assert cli("runs", "--config-repo", census_repo).stdout.strip() == "no runs recorded yet"
    assert cli("run", "census", "processed", "--local", "-q", "--config-repo", census_repo).exit_code == 1
    assert cli("run", "census", "raw", "--local", "-q", "--config-repo", census_repo).exit_code == 0
    res = cli("runs", "--config-repo", census_repo)
    assert res.exit_code == 0
    rows = [line for line in res.stdout.splitlines() if "census/" in line]
    assert len(rows) == 2
    assert "census/raw" in rows[0] and "succeeded" in rows[0]
    assert "census/processed" in rows[1] and "failed" in rows[1] and "RawDataMissing" in rows[1]
    only = cli("runs", "census", "processed", "--config-repo", census_repo)
    only_rows = [line for line in only.stdout.splitlines() if "census/" in line]
    assert len(only_rows) == 1 and "census/processed" in only_rows[0] and "RawDataMissing" in only_rows[0]


# -- command-line details ----------------------------------------------------------------------

def test_json_stdout_holds_only_the_document_even_when_a_child_process_prints(project_factory):
    child = (
        "import subprocess, sys\n"
        "def handler(event, context):\n"
        "    subprocess.run(['echo', 'from a child process'], check=True)\n"
        "    return {'statusCode': 200, 'body': 'ok'}\n"
    )
    repo = project_factory({"demo/main": {"main": chain_main("f1"), "functions": {"f1": child}}})
    res = run_dorc_subprocess("run", "demo", "--json", "--config-repo", repo)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "succeeded"  # one document, nothing else
    assert "from a child process" in res.stderr


@pytest.mark.parametrize("flag", [["--endpoint", "http://127.0.0.1:1"], ["--no-deploy"], ["--timeout", "5"]])
def test_localstack_only_options_are_refused_for_a_local_run(echo_repo, cli, flag):
    res = cli("run", "demo", "--local", *flag, "--config-repo", echo_repo)
    assert res.exit_code == 2
    assert f"{flag[0]} only applies to --localstack runs" in res.stderr
    assert not (echo_repo / ".dorc" / "runs").exists()  # nothing ran


def test_empty_event_text_is_refused(echo_repo, cli):
    res = cli("run", "demo", "--event", "", "--config-repo", echo_repo)
    assert res.exit_code == 2
    assert "--event is not valid JSON" in res.stderr


def test_runs_rejects_an_unknown_instance_and_a_limit_below_one(echo_repo, cli):
    res = cli("runs", "nope", "--config-repo", echo_repo)
    assert res.exit_code == 2 and "no pipeline instance 'nope'" in res.stderr and "demo" in res.stderr
    assert cli("runs", "-n", "0", "--config-repo", echo_repo).exit_code == 2


def test_runs_lists_newest_first_with_the_failure(failing_repo, cli):
    assert cli("run", "demo", "--config-repo", failing_repo).exit_code == 1
    assert cli("run", "demo", "--config-repo", failing_repo).exit_code == 1
    res = cli("runs", "demo", "-n", "1", "--config-repo", failing_repo)
    assert res.exit_code == 0
    assert "demo/main" in res.stdout and "failed" in res.stdout
    assert "demo/main f2: dorc.NonSuccessStatusCode" in res.stdout
    rows = [line for line in res.stdout.splitlines() if line.strip().startswith("20")]
    assert len(rows) == 1, res.stdout


def test_version(cli):
    from dorc import __version__

    res = cli("--version")
    assert res.exit_code == 0 and res.stdout.startswith(f"dorc {__version__} ")


def test_deploy_needs_an_env_except_for_universal(cli, echo_repo):
    res = cli("deploy", "infra", "--config-repo", echo_repo)
    assert res.exit_code == 2 and "dorc deploy infra needs --env" in res.stderr
    res = cli("deploy", "universal", "--config-repo", echo_repo)
    assert "--env" not in res.stderr  # what stops it here is the missing Pulumi CLI, not the env


def test_json_run_that_cannot_start_still_prints_one_document(project_factory, cli):
    bad = project_factory({"demo/main": {"main": chain_main("f1", "ghost"), "functions": {"f1": OK_HANDLER}}})
    res = cli("run", "demo", "--json", "--config-repo", bad)
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 2
    assert doc["error"]["type"] == "DefinitionError"
    assert any(p["function"] == "ghost" or "ghost" in p["message"] for p in doc["error"]["problems"])
    assert "ghost" in res.stderr  # the human message as always


def test_an_import_only_dorcs_environment_satisfies_fails_the_run_as_in_aws(project_factory, cli):
    uses_rich = "import rich\n\ndef handler(event, context):\n    return {'statusCode': 200, 'body': rich.__name__}\n"
    repo = project_factory({"demo/main": {"main": chain_main("f1"), "functions": {"f1": uses_rich}}})
    res = cli("run", "demo", "--config-repo", repo)
    # dorc's own environment has rich, but the function runs from its package, as in AWS
    assert res.exit_code == 1, res.output
    assert "Runtime.ImportModuleError" in res.stdout and "No module named 'rich'" in res.stdout
    assert "add the distribution that provides 'rich' to " in " ".join(res.stdout.split())
    doc = json.loads(cli("run", "demo", "--json", "--config-repo", repo).stdout)
    assert doc["status"] == "failed" and doc["warnings"] == [] and doc["sandbox"]
