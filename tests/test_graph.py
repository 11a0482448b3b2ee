"""``dorc graph``, ``dorc list`` in run order with triggers in words, and ``dorc plan`` with the
state machine collapsed to one line: a newcomer sees the pipeline, not 110 lines of JSON."""

from __future__ import annotations

import json
import re

from helpers import OK_HANDLER, chain_main, handler_returning, main_py

# A Mermaid flowchart line dorc writes: a node, a subgraph, an edge, styling.
_ID = r"[A-Za-z0-9_]+"
_LABEL = r'"[^"]*"'
_NODE = re.compile(rf"^\s*({_ID})(?:\[({_LABEL})\]|\(\[({_LABEL})\]\))$")
_SUBGRAPH = re.compile(rf"^\s*subgraph ({_ID})\[({_LABEL})\]$")
_EDGE = re.compile(rf"^\s*({_ID}) (-->|-\.->)(?:\|({_LABEL})\|)? ({_ID})$")


def parse_mermaid(text: str) -> tuple[dict[str, str], list[tuple[str, str, str | None]], dict[str, str]]:
    """(nodes: id -> label, edges: (from, to, label), subgraphs: id -> label); fails on any line
    that is not valid flowchart syntax of the kinds dorc writes, or on unbalanced subgraphs."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes, edges, subgraphs, depth = {}, [], {}, 0
    classes: dict[str, str] = {}
    for line in lines[1:]:
        if m := _SUBGRAPH.match(line):
            subgraphs[m.group(1)] = m.group(2).strip('"')
            depth += 1
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0, "end without subgraph"
        elif line.strip() == "direction TB":
            assert depth > 0
        elif m := _NODE.match(line):
            assert m.group(1) not in nodes, f"node {m.group(1)} defined twice"
            nodes[m.group(1)] = (m.group(2) or m.group(3)).strip('"')
        elif m := _EDGE.match(line):
            edges.append((m.group(1), m.group(4), m.group(3).strip('"') if m.group(3) else None))
        elif m := re.match(rf"^\s*classDef ({_ID}) \S+$", line):
            classes.setdefault(m.group(1), "")
        elif m := re.match(rf"^\s*class ({_ID}(?:,{_ID})*) ({_ID})$", line):
            assert m.group(2) in classes, "class used before classDef"
            for node in m.group(1).split(","):
                classes[node] = m.group(2)
        else:
            raise AssertionError(f"not Mermaid flowchart syntax: {line!r}")
    assert depth == 0, "subgraph without end"
    for a, b, _ in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} names an undefined node"
    return nodes, edges, {**subgraphs, **{f"class:{k}": v for k, v in classes.items() if k in nodes}}


def test_graph_tree_shows_census_in_run_order_with_trigger_and_hand_over(census_repo, cli):
    res = cli("graph", "census", "--config-repo", census_repo)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.index("census/raw") < out.index("daily: cron: 06:00 UTC daily") < out.index("→ census/processed")
    # processed is drawn under raw (it is handed over to), its functions in run order
    processed = out.index("→ census/processed")
    assert processed < out.index("1. function1", processed) < out.index("2. function2", processed)
    assert "census-processed-function2-local" in out


def test_graph_mermaid_for_census_parses_with_safe_ids_and_edges(census_repo, cli):
    res = cli("graph", "census", "--format", "mermaid", "--config-repo", census_repo)
    assert res.exit_code == 0, res.output
    nodes, edges, groups = parse_mermaid(res.stdout)
    ids = {(label, "raw" if "raw" in node else "processed"): node for node, label in nodes.items()}
    raw1, proc1 = ids[("1. function1", "raw")], ids[("1. function1", "processed")]
    proc2, trigger = ids[("2. function2", "processed")], ids[("daily: cron: 06:00 UTC daily", "raw")]
    assert len(nodes) == 4  # ids are readable and made of [A-Za-z0-9_] (the parser's pattern)
    assert set(edges) == {(trigger, raw1, None), (raw1, proc1, "hands over"), (proc1, proc2, None)}
    assert sorted(v for k, v in groups.items() if not k.startswith("class:")) == [
        "census/processed · census-processed-local", "census/raw · census-raw-local"]


def test_graph_ids_stay_unique_and_labels_quoted_for_awkward_names(project_factory, cli):
    """Names Mermaid would misread (dashes, a label with quotes and brackets) still give valid text."""
    main = main_py("Function(name='a-b', next_function='a_b'), Function(name='a_b')",
                   extra="from dorc import S3Trigger").replace(
        "    functions=", """    trigger=S3Trigger(name='drop', bucket_name='b-{env}', key_prefix='in/"q"<x>#1;'),\n    functions=""")
    root = project_factory({"my-inst/l-1": {"main": main, "functions": {"a-b": OK_HANDLER, "a_b": OK_HANDLER}}})
    res = cli("graph", "--format", "mermaid", "--config-repo", root)
    assert res.exit_code == 0, res.output
    nodes, edges, _ = parse_mermaid(res.stdout)
    assert sorted(nodes.values()) == [
        "1. a-b", "2. a_b",  # two distinct ids though both clean to a_b
        "drop: S3: objects created under s3://b-local/in/#quot;q#quot;#lt;x#gt;#35;1;"]  # Mermaid's entity codes
    assert len(nodes) == 3 and len(edges) == 2


def test_graph_run_last_shows_statuses_and_durations(project_factory, cli):
    root = project_factory({"demo/main": {
        "main": chain_main("f1", "f2", "f3"),
        "functions": {"f1": OK_HANDLER, "f2": handler_returning('{"statusCode": 500, "body": "no"}'),
                      "f3": OK_HANDLER}}})
    assert cli("run", "demo", "main", "--config-repo", root).exit_code == 1
    res = cli("graph", "--run", "last", "--config-repo", root)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    f1, f2, f3 = (next(line for line in lines if f"{i}. f{i}" in line) for i in (1, 2, 3))
    assert "✓ succeeded" in f1 and re.search(r"\d+(\.\d)? ms$", f1)
    assert "✗ failed (dorc.NonSuccessStatusCode)" in f2
    assert "not run" in f3
    assert re.search(r"run [0-9a-f]{8} · failed · local", lines[0])
    mer = cli("graph", "--run", "last", "--format", "mermaid", "--config-repo", root)
    nodes, _, groups = parse_mermaid(mer.stdout)
    statuses = {nodes[k.removeprefix("class:")].split(" · ")[0]: v for k, v in groups.items() if k.startswith("class:")}
    assert statuses == {"1. f1": "succeeded", "2. f2": "failed", "3. f3": "notrun"}
    run_id = json.loads(next((root / ".dorc" / "runs").glob("*.json")).read_text())["id"]
    by_id = cli("graph", "--run", run_id[:8], "--config-repo", root)
    assert by_id.exit_code == 0 and by_id.stdout.splitlines()[0] == lines[0]
    missing = cli("graph", "--run", "nope", "--config-repo", root)
    assert missing.exit_code == 2 and "no recorded run 'nope'" in missing.stderr and "dorc runs" in missing.stderr


def test_list_shows_layers_in_run_order_and_triggers_in_words(project_factory, cli):
    """``a_start`` hands over to ``b_mid``... named so that alphabetical order is not run order."""
    start = chain_main("s1", handover="c_mid").replace(
        "from dorc import", "from dorc import CronTrigger, S3Trigger,").replace(
        "    functions=", "    trigger=[CronTrigger(name='morning', cron='0 6 * * ? *'), "
                          "CronTrigger(name='weekdays', cron='30 7 ? * MON-FRI *'), "
                          "CronTrigger(name='often', cron='0/15 * * * ? *'), "
                          "CronTrigger(name='odd', cron='0 6 1,15 * ? *'), "
                          "S3Trigger(name='drop', bucket_name='{project}-landing-{env}', key_prefix='inbox/')],\n"
                          "    functions=")
    root = project_factory({
        "shop/z_start": {"main": start, "functions": {"s1": OK_HANDLER}},
        "shop/c_mid": {"main": chain_main("m1", handover="a_end"), "functions": {"m1": OK_HANDLER}},
        "shop/a_end": {"main": chain_main("e1"), "functions": {"e1": OK_HANDLER}},
    }, name="shop")
    res = cli("list", "--config-repo", root)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.index("z_start") < out.index("c_mid —") < out.index("a_end —")
    assert "morning: cron: 06:00 UTC daily" in out
    assert "weekdays: cron: 07:30 UTC Monday to Friday" in out
    assert "often: cron: every 15 minutes" in out
    assert "odd: cron: 0 6 1,15 * ? *" in out  # no words for it: the expression as written
    assert "drop: S3: objects created under s3://shop-landing-local/inbox/" in out
    assert "event-pattern" not in out and '"detail"' not in out


def test_plan_collapses_the_state_machine_unless_asl(census_repo, cli):
    res = cli("plan", "census", "raw", "--env", "preprod", "--config-repo", census_repo)
    assert res.exit_code == 0, res.output
    assert ("definition   7 states: function1, contract checks, hands over to census/processed  "
            "(--asl shows it in full)") in res.stdout
    assert '"StartAt"' not in res.stdout and len(res.stdout.splitlines()) < 50  # the ASL alone is over 100
    full = cli("plan", "census", "raw", "--env", "preprod", "--asl", "--config-repo", census_repo)
    assert full.exit_code == 0, full.output
    body = full.stdout[full.stdout.index("definition\n") + len("definition\n"):]
    asl = json.loads(body[:body.index("\n        }\n") + len("\n        }\n")])
    assert asl["StartAt"] == "function1" and len(asl["States"]) == 7
    processed = cli("plan", "census", "processed", "--env", "preprod", "--config-repo", census_repo)
    assert "13 states: function1 → function2, contract checks" in processed.stdout
