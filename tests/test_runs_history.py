"""Past local runs: ``dorc runs`` with ids and durations, ``dorc runs show ID|last``, ``dorc logs``
(issue 12, item 6). Runs are real local runs of a small project; records are read back through the CLI."""

from __future__ import annotations

import json
import re

import pytest

from helpers import chain_main

FETCH = ("def handler(event, context):\n"
         "    print('fetching', event.get('day'))\n"
         "    return {'statusCode': 200, 'body': {'rows': list(range(event.get('n', 3)))}}\n")
TOTAL = ("def handler(event, context):\n"
         "    print('adding up', len(event['body']['rows']), 'rows')\n"
         "    return {'statusCode': 200, 'body': sum(event['body']['rows']) / event['body']['rows'][0]}\n")


@pytest.fixture
def shop(project_factory):
    return project_factory({"shop/orders": {"main": chain_main("fetch", "total"),
                                            "functions": {"fetch": FETCH, "total": TOTAL}}}, name="shop")


def _ids(stdout: str) -> list[str]:
    """The short ids in ``dorc runs``' table, newest first."""
    return re.findall(r"^\s*20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\s+([0-9a-f]{8})\s", stdout, re.M)


def test_runs_lists_short_ids_and_durations_and_show_reads_one_run(shop, cli):
    """The table's id is what ``runs show`` takes; ``show`` has steps, inputs, outputs, errors, logs."""
    assert cli("run", "shop", "orders", "-q", "--event", '{"n": 4, "day": "mon"}', "--config-repo", shop).exit_code == 1
    ran = cli("run", "shop", "orders", "-q", "--event", '{"n": 0}', "--config-repo", shop)
    assert ran.exit_code == 1
    table = cli("runs", "--config-repo", shop)
    assert table.exit_code == 0
    assert "duration" in table.stdout and "id" in table.stdout
    ids = _ids(table.stdout)
    assert len(ids) == 2 and ids[0] != ids[1]
    assert f"(dorc runs show {ids[0]})" in ran.stdout  # the run names its id as it ends
    assert re.search(rf"{ids[0]}\s.*shop/orders.*failed\s+\d+(\.\d)? (ms|s)\s", table.stdout)

    # the older run (n=4) failed in total with ZeroDivisionError: 0 + 1 + 2 + 3 divided by rows[0] == 0
    older = cli("runs", "show", ids[1], "--config-repo", shop)
    assert older.exit_code == 0, older.output
    text = older.stdout
    assert re.search(rf"run {ids[1]}[0-9a-f]+: shop/orders on local \(env local\) failed", text)
    assert re.search(r"1\. shop/orders fetch\s+succeeded\s+\d", text)
    assert re.search(r"2\. shop/orders total\s+failed\s+\d.*request [0-9a-f-]{36}", text)
    assert '"day": "mon"' in text and '"n": 4' in text  # fetch's input
    assert '"rows": [' in text  # fetch's output, total's input
    assert "error: ZeroDivisionError: division by zero" in text
    assert "stack trace (most recent call last):" in text and "line 3, in handler" in text
    assert "fetching mon" in text and "adding up 4 rows" in text  # each step's logs
    assert "REPORT RequestId:" in text

    newest = cli("runs", "show", "last", "--config-repo", shop)
    assert newest.exit_code == 0 and f"run {ids[0]}" in newest.stdout
    assert "error: ZeroDivisionError" not in newest.stdout  # n=0: rows[0] is an IndexError
    assert "error: IndexError: list index out of range" in newest.stdout


def test_runs_show_json_is_the_record(shop, cli):
    assert cli("run", "shop", "orders", "-q", "--config-repo", shop).exit_code == 1
    res = cli("runs", "show", "last", "--json", "--config-repo", shop)
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert re.fullmatch(r"[0-9a-f]{32}", doc["id"])
    assert doc["status"] == "failed" and doc["pipeline"] == "shop" and doc["layer"] == "orders"
    assert [s["function"] for s in doc["steps"]] == ["fetch", "total"]
    assert doc["steps"][0]["output"] == {"statusCode": 200, "body": {"rows": [0, 1, 2]}}
    assert doc["steps"][1]["error"]["type"] == "ZeroDivisionError"
    assert "adding up 3 rows" in doc["steps"][1]["logs"]
    record = json.loads(next((shop / ".dorc" / "runs").glob("*.json")).read_text())
    assert record["id"] == doc["id"] and record["steps"] == doc["steps"]


def test_unknown_run_id_exits_2_saying_how_to_find_ids(shop, cli):
    none_yet = cli("runs", "show", "last", "--config-repo", shop)
    assert none_yet.exit_code == 2 and "no runs recorded" in none_yet.stderr
    assert cli("run", "shop", "orders", "-q", "--config-repo", shop).exit_code == 1
    res = cli("runs", "show", "zzzz9999", "--config-repo", shop)
    assert res.exit_code == 2
    assert "no recorded run 'zzzz9999'" in res.stderr
    assert "`dorc runs` lists the recorded runs with their ids" in res.stderr and "Traceback" not in res.output
    missing = cli("runs", "show", "--config-repo", shop)
    assert missing.exit_code == 2 and "dorc runs show needs a run" in missing.stderr


def test_records_written_before_ids_are_listed_and_shown(shop, cli):
    """A record without ``id`` (older dorc) gets one from its file name, stable between calls."""
    assert cli("run", "shop", "orders", "-q", "--config-repo", shop).exit_code == 1
    path = next((shop / ".dorc" / "runs").glob("*.json"))
    doc = json.loads(path.read_text())
    del doc["id"]
    old = path.with_name("20200101T000000-000-shop-orders-local-local.json")
    old.write_text(json.dumps(doc))
    path.unlink()
    first, second = _ids(cli("runs", "--config-repo", shop).stdout), _ids(cli("runs", "--config-repo", shop).stdout)
    assert len(first) == 1 and first == second
    shown = cli("runs", "show", first[0], "--config-repo", shop)
    assert shown.exit_code == 0 and "2. shop/orders total" in shown.stdout and old.name in shown.stdout


def test_long_outputs_are_shortened_with_a_note_and_full_shows_them(shop, cli):
    assert cli("run", "shop", "orders", "-q", "--event", '{"n": 200}', "--config-repo", shop).exit_code == 1
    short = cli("runs", "show", "last", "--config-repo", shop)
    assert "more line(s) not shown" in short.stdout and "--full shows them whole" in short.stdout
    assert "      199" not in short.stdout
    full = cli("runs", "show", "last", "--full", "--config-repo", shop)
    assert "not shown" not in full.stdout and re.search(r"^\s+199$", full.stdout, re.M)


def test_logs_of_a_layer_print_its_newest_local_run_per_function(shop, cli):
    assert cli("run", "shop", "orders", "-q", "--event", '{"day": "tue"}', "--config-repo", shop).exit_code == 1
    res = cli("logs", "shop", "orders", "--config-repo", shop)
    assert res.exit_code == 0
    assert re.search(r"^\d\d:\d\d:\d\d fetch fetching tue$", res.stdout, re.M)
    assert re.search(r"^\d\d:\d\d:\d\d total adding up 3 rows$", res.stdout, re.M)
    only = cli("logs", "shop", "orders", "--function", "total", "--config-repo", shop)
    assert "fetching" not in only.stdout and "adding up" in only.stdout
    bad = cli("logs", "shop", "orders", "--function", "nope", "--config-repo", shop)
    assert bad.exit_code == 2 and "has no function 'nope'" in bad.stderr and "fetch, total" in bad.stderr
    follow = cli("logs", "shop", "orders", "--follow", "--config-repo", shop)
    assert follow.exit_code == 2 and "--target localstack" in follow.stderr


def test_show_and_json_options_belong_to_runs_show(shop, cli):
    res = cli("runs", "--json", "--config-repo", shop)
    assert res.exit_code == 2 and "dorc runs show ID" in res.stderr
    res = cli("runs", "--endpoint", "http://127.0.0.1:4566", "--config-repo", shop)
    assert res.exit_code == 2 and "--endpoint goes with --target localstack" in res.stderr
