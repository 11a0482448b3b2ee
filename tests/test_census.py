"""The example census pipeline end to end (raw -> processed), run once for the whole module on a
private copy of pipeline-config, with the 2020 Decennial figures served by the sim Census API."""

from __future__ import annotations

import json

import pytest

from dorc.api import run_pipeline
from dorc.project import find_project
from helpers import copy_pipeline_config
from dorc_sim.aws import LocalAWS

BUCKET = "dorc-census-holding-local"
TOTAL = 331_449_281


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    """Runs ``census`` (no layer: raw, which hands over to processed) and reads back the store."""
    repo = copy_pipeline_config(tmp_path_factory.mktemp("census"))
    project = find_project(repo)
    with LocalAWS(project.state_dir / "local-aws", project.settings.region, [BUCKET]) as aws:
        result = run_pipeline("census", project=project)
        s3 = aws.client("s3")
        objects = {
            key: json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
            for key in ("census/raw/2020/states.json", "census/processed/2020/clean.json",
                        "census/processed/2020/features.json")
        }
        raw_head = s3.head_object(Bucket=BUCKET, Key="census/raw/2020/states.json")
    return {"result": result, "objects": objects, "raw_head": raw_head, "repo": repo}


@pytest.fixture(scope="module")
def result(census):
    assert census["result"].succeeded, census["result"].error
    return census["result"]


@pytest.fixture(scope="module")
def features(census):
    return census["objects"]["census/processed/2020/features.json"]


@pytest.fixture(scope="module")
def summary(result):
    return result.step("function2", layer="processed").output["body"]


def test_runs_raw_then_processed(result):
    assert [(s.layer, s.function, s.status) for s in result.steps] == [
        ("census/raw", "function1", "succeeded"),
        ("census/processed", "function1", "succeeded"),
        ("census/processed", "function2", "succeeded"),
    ]
    assert result.output == result.steps[-1].output


def test_raw_stores_52_records(census, result):
    body = result.step("function1", layer="raw").output["body"]
    assert body["records"] == 52
    assert (body["bucket"], body["key"]) == (BUCKET, "census/raw/2020/states.json")
    rows = census["objects"]["census/raw/2020/states.json"]
    assert rows[0] == ["NAME", "P1_001N", "state"]  # the API's own format, kept raw
    assert len(rows) == 53
    meta = census["raw_head"]["Metadata"]
    assert meta["request-id"] == result.step("function1", layer="raw").request_id
    assert meta["source-url"].startswith("http://127.0.0.1:")  # the sim fixture, not the real API


def test_processed_clean(census, result):
    body = result.step("function1", layer="processed").output["body"]
    assert body["records"] == 52 and body["rejected"] == []
    clean = census["objects"]["census/processed/2020/clean.json"]
    assert [r["state_fips"] for r in clean] == sorted(r["state_fips"] for r in clean)
    assert clean[0] == {"state_fips": "01", "name": "Alabama", "population": 5024279}


def test_totals(summary):
    assert summary["states"] == 51
    assert summary["total_population"] == TOTAL


def test_largest_and_smallest(summary):
    assert summary["largest"] == {"name": "California", "population": 39538223,
                                  "share": round(39538223 / TOTAL, 6)}
    assert summary["smallest"]["name"] == "Wyoming"
    assert summary["smallest"]["population"] == 576851


@pytest.mark.parametrize("region, population, states", [
    ("South", 126266107, 17),
    ("West", 78588572, 13),
    ("Midwest", 68985454, 12),
    ("Northeast", 57609148, 9),
])
def test_regions(summary, region, population, states):
    agg = summary["regions"][region]
    assert (agg["population"], agg["states"]) == (population, states)
    assert agg["share"] == round(population / TOTAL, 6)


def test_regions_add_up(summary):
    assert set(summary["regions"]) == {"South", "West", "Midwest", "Northeast"}
    assert sum(r["population"] for r in summary["regions"].values()) == TOTAL
    assert sum(r["states"] for r in summary["regions"].values()) == 51


def test_features_file(features, summary):
    rows = {r["name"]: r for r in features["rows"]}
    assert len(rows) == 52
    assert rows["Texas"]["rank"] == 2
    assert rows["California"]["rank"] == 1
    assert rows["Wyoming"]["rank"] == 51
    assert rows["District of Columbia"]["region"] == "South"
    assert rows["District of Columbia"]["division"] == "South Atlantic"
    pr = rows["Puerto Rico"]
    assert pr["territory"] is True
    assert pr["rank"] is None and pr["share"] is None and pr["region"] is None
    assert pr["population"] == 3285874
    assert sorted(r["rank"] for r in features["rows"] if r["rank"] is not None) == list(range(1, 52))
    assert features["total_population"] == summary["total_population"]
    assert features["regions"] == summary["regions"]


def test_store_persisted_to_disk(census):
    from dorc_sim.aws import list_store

    keys = [key for bucket, key, size in list_store(census["repo"] / ".dorc" / "local-aws") if bucket == BUCKET]
    assert keys == ["census/processed/2020/clean.json", "census/processed/2020/features.json",
                    "census/raw/2020/states.json"]


def test_run_record(census, result):
    records = list((census["repo"] / ".dorc" / "runs").glob("*.json"))
    assert records == [result.record_path]
    doc = json.loads(records[0].read_text())
    assert doc["status"] == "succeeded"
    assert doc["output"]["body"]["total_population"] == TOTAL
