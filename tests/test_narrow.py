"""At 80 columns dorc's own output wraps at spaces: layer names, deployed names, error types and
paths are never broken mid-word (a terminal would cut an over-long line anywhere). Durations read
as ms, s or min; --help has no type placeholders; an ImportModuleError of a declared requirement
says which requirements.txt to add it to."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from helpers import OK_HANDLER, chain_main, handler_returning

WIDTH = 80
INST, LAYER = "household_stats", "quarterly_adjust"
REQUIREMENTS = f"src/{INST}/{LAYER}/src/regional_shares/requirements.txt"


@pytest.fixture
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))  # after the cli fixture's 2000


@pytest.fixture
def repo(project_factory, monkeypatch):
    """Long names, a failing import of a package no requirements.txt declares, and the working
    directory at the repo's root (as a user runs dorc)."""
    root = project_factory({f"{INST}/{LAYER}": {
        "main": chain_main("normalise_counts", "regional_shares"),
        "functions": {"normalise_counts": OK_HANDLER,
                      "regional_shares": {"lambda.py": "import tabulate\n" + OK_HANDLER}}}})
    monkeypatch.chdir(root)
    return root


def assert_fits(output: str, whole: list[str]) -> list[str]:
    """No line wider than the terminal, and each token in ``whole`` unbroken on some line."""
    lines = output.splitlines()
    wide = [line for line in lines if cell_len(line) > WIDTH]
    assert not wide, f"lines wider than {WIDTH}: {wide}"
    for token in whole:
        assert any(token in line for line in lines), f"{token!r} is broken across lines:\n{output}"
    return lines


def joined(output: str) -> str:
    """The output's words with the wrapping taken out."""
    return " ".join(output.split())


def test_failed_run_summary_fits_80_columns_and_says_which_requirements_file(repo, cli, narrow):
    res = cli("run", INST, LAYER, "--quiet")
    assert res.exit_code == 1
    assert_fits(res.output, [f"{INST}/{LAYER}", "normalise_counts", "regional_shares", "Runtime.ImportModuleError",
                             f"{INST}-{LAYER}-regional_shares-local", REQUIREMENTS])
    assert f"add the distribution that provides 'tabulate' to {REQUIREMENTS}" in joined(res.stdout)
    assert "…" not in res.output
    alone = cli("invoke", INST, LAYER, "regional_shares")  # the function alone says the same
    assert alone.exit_code == 1 and f"provides 'tabulate' to {REQUIREMENTS}" in joined(alone.stdout)


def test_a_requirement_that_cannot_be_vendored_stops_the_run_with_pips_reason(project_factory, cli):
    root = project_factory({"demo/main": {"main": chain_main("f1"), "functions": {
        "f1": {"lambda.py": "import tabulate\n" + OK_HANDLER, "requirements.txt": "--no-index\ntabulate==0.9.0\n"}}}})
    res = cli("run", "demo", "main", "--config-repo", root)
    assert res.exit_code == 2, res.output  # nothing ran: the package cannot be built, as for a deploy
    assert "could not vendor" in res.output and "tabulate" in res.output
    assert "Traceback" not in res.output


def test_list_runs_and_validate_fit_80_columns(repo, cli, narrow):
    assert cli("run", INST, LAYER, "--quiet").exit_code == 1
    listed = cli("list")
    assert listed.exit_code == 0
    assert_fits(listed.stdout, [f"{INST}-{LAYER}-normalise_counts-local", f"{INST}-{LAYER}-regional_shares-local",
                                f"{INST}-{LAYER}-local"])
    runs = cli("runs")
    assert runs.exit_code == 0
    lines = assert_fits(runs.stdout, [f"{INST}/{LAYER}", "Runtime.ImportModuleError", "regional_shares"])
    assert any(re.match(r"[0-9a-f]{8}  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · failed · \d", line) for line in lines)
    # a layer too long for AWS's 64-character Lambda names: every problem's name whole
    long_layer = Path(repo) / "src" / INST / "quarterly_adjustments_v2"
    (long_layer / "src" / "normalise_household").mkdir(parents=True)
    (long_layer / "src" / "normalise_household" / "lambda.py").write_text(OK_HANDLER)
    (long_layer / "__main__.py").write_text(chain_main("normalise_household"))
    bad = cli("validate", INST, "quarterly_adjustments_v2")
    assert bad.exit_code == 2
    name = f"{INST}-quarterly_adjustments_v2-normalise_household-local"
    assert_fits(bad.stdout, [name, "normalise_household"])
    missing = cli("run", INST, "no_such_layer")
    assert missing.exit_code == 2
    assert_fits(missing.stderr, [f"{INST}/no_such_layer:", "no_such_layer/__main__.py", "quarterly_adjustments_v2"])


@pytest.mark.parametrize("command", [["run"], ["graph"], ["runs"], ["validate"]])
def test_help_has_no_type_placeholders_and_fits(cli, narrow, command):
    res = cli(*command, "--help")
    assert res.exit_code == 0
    lines = assert_fits(res.stdout, ["--config-repo"])
    assert not re.search(r"<(str|bool|int|float|text|path)>", res.stdout), res.stdout
    assert "--config-repo" in res.stdout and any("--config-repo" in line and "DIR" in line for line in lines)
    if command == ["run"]:
        assert re.search(r"Usage: .*dorc run \[OPTIONS\] INSTANCE \[LAYER\]", res.stdout)
        assert any("--event" in line and "JSON|@FILE" in line for line in lines)
        assert any(line.strip("│ ").startswith("--quiet") and "-q" in line and "BOOL" not in line.upper()
                   for line in lines)


def test_durations_read_in_ms_s_and_min(project_factory, cli, narrow):
    root = project_factory({"demo/main": {"main": chain_main("quick", "slow", slow="timeout=10"), "functions": {
        "quick": OK_HANDLER,
        "slow": handler_returning('{"statusCode": 200, "body": time.sleep(1.05)}', imports="import time")}}})
    res = cli("run", "demo", "main", "--quiet", "--config-repo", root)
    assert res.exit_code == 0, res.output
    table = res.stdout
    assert re.search(r"│ quick +│ succeeded +│ +\d+(\.\d)? ms │", table), table
    assert re.search(r"│ slow +│ succeeded +│ +1\.\d s │", table), table
    assert re.search(r"✓ pipeline succeeded {2}in 1\.\d s", table)
    # a long run as a record holds it, drawn by dorc graph
    record = next((root / ".dorc" / "runs").glob("*.json"))
    doc = json.loads(record.read_text())
    doc["steps"][1]["duration_ms"] = 125_000.0
    doc["duration_ms"] = 3_725_000.0
    record.write_text(json.dumps(doc))
    graph = cli("graph", "--run", "last", "--config-repo", root)
    assert re.search(r"2\. slow +✓ succeeded +2 min 05 s", graph.stdout), graph.stdout
    assert "1 h 02 min" in graph.stdout.splitlines()[0]
