"""The census example tested as a user tests a pipeline, with dorc's fixtures only: seed the raw
data, run the processed layer, assert the features and what was stored. Every test runs twice,
in-process and in LocalStack (``test_x[local]``, ``test_x[localstack]``): the marker below asks
for both targets whatever ``--dorc-targets`` says, so CI's plain ``python -m pytest`` runs both.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.dorc_targets("local", "localstack")

RAW_KEY = "census/raw/2020/states.json"
FEATURES_KEY = "census/processed/2020/features.json"
CLEAN_KEY = "census/processed/2020/clean.json"

# the Census API's own format: a header row, then NAME, P1_001N, state (FIPS)
ROWS = [["NAME", "P1_001N", "state"],
        ["Wyoming", "576851", "56"], ["Texas", "29,145,505", "48"], ["Vermont", "643077", "50"],
        ["Puerto Rico", "3285874", "72"], ["Texas", "29145505", "48"], ["Nowhere", "n/a", "99"]]


def test_processed_derives_features_from_seeded_raw_data(dorc_aws, dorc_run, dorc_target):
    dorc_aws.put(RAW_KEY, ROWS)

    result = dorc_run("census", "processed")

    assert result.succeeded, result.error
    assert result.target == dorc_target
    clean = result.step("function1").output["body"]
    assert clean["records"] == 4  # Texas once, Nowhere rejected
    assert clean["rejected"] == [{"state_fips": "99", "reason": "population 'n/a' is not a number"}]
    body = result.output["body"]
    assert body["states"] == 3 and body["total_population"] == 576851 + 29145505 + 643077
    assert body["largest"] == {"name": "Texas", "population": 29145505, "share": round(29145505 / 30365433, 6)}
    assert set(body["regions"]) == {"West", "South", "Northeast"}
    # what the run stored, read back from the same holding store
    features = dorc_aws.get_json(FEATURES_KEY)
    assert [(r["name"], r["rank"], r["region"]) for r in features["rows"]] == [
        ("Texas", 1, "South"), ("Vermont", 2, "Northeast"), ("Wyoming", 3, "West"), ("Puerto Rico", None, None)]
    assert dorc_aws.keys("census/") == [CLEAN_KEY, FEATURES_KEY, RAW_KEY]


def test_raw_hands_over_to_processed(dorc_aws, dorc_run):
    result = dorc_run("census", "raw")

    assert result.succeeded, result.error
    assert [(s.layer, s.function) for s in result.steps] == [
        ("census/raw", "function1"), ("census/processed", "function1"), ("census/processed", "function2")]
    assert result.step("function1", layer="raw").output["body"]["records"] == 52
    assert result.output["body"]["total_population"] == 331449281
    assert len(dorc_aws.get_json(RAW_KEY)) == 53  # header + 50 states, DC, Puerto Rico


def test_one_function_invoked_alone(dorc_aws, dorc_invoke, dorc_target):
    dorc_aws.put(RAW_KEY, ROWS[:3])

    step = dorc_invoke("census", "processed", "function1")

    assert step.succeeded, step.error
    assert (step.function, step.layer) == ("function1", "census/processed")
    assert step.deployed_name.endswith("-" + dorc_aws.env)
    assert step.output["statusCode"] == 200 and step.output["body"]["records"] == 2
    assert step.request_id and "START RequestId: " + step.request_id in step.logs
    assert [r["name"] for r in dorc_aws.get_json(CLEAN_KEY)] == ["Texas", "Wyoming"]
    assert FEATURES_KEY not in dorc_aws.keys()  # one function: no chain after it


def test_a_failing_function_reports_its_error(dorc_aws, dorc_invoke):
    step = dorc_invoke("census", "processed", "function2")  # nothing cleaned yet in this test's store

    assert not step.succeeded
    assert step.error.type == "NoSuchKey"
    assert step.output is None


# Two tests writing the same key: each sees only its own object (LocalStack: the test env's
# holding store is emptied when a test starts; locally each test has its own store).

@pytest.mark.parametrize("state", [("Wyoming", "576851", "56"), ("Vermont", "643077", "50")])
def test_each_test_sees_only_its_own_data(dorc_aws, dorc_run, state):
    assert dorc_aws.keys() == []
    dorc_aws.put(RAW_KEY, [ROWS[0], list(state)])

    result = dorc_run("census", "processed")

    assert result.succeeded, result.error
    assert result.output["body"]["largest"]["name"] == state[0]
    assert [r["name"] for r in dorc_aws.get_json(FEATURES_KEY)["rows"]] == [state[0]]
