"""One test, both targets: ``--dorc-targets`` (or ``$DORC_TARGETS``, or the ``dorc_targets``
marker) runs each test that uses dorc's fixtures once per target, seen from a user's test suite
(pytester): the ids, the marks, the choice of targets, and a test of a user's kind passing on both.
"""

from __future__ import annotations

import pytest

# pytester drops the modules an inner run imported first; imported here, dorc's modules (and the
# context variable that captures definitions) stay one and the same for every inner run
import dorc.api  # noqa: F401
import dorc.targets.local  # noqa: F401
import dorc.targets.localstack  # noqa: F401
from helpers import chain_main, make_project

USER_TESTS = """
    import json

    def test_total(dorc_aws, dorc_run, dorc_target):
        assert dorc_aws.target == dorc_target
        assert dorc_aws.keys() == []                      # nothing from another test
        dorc_aws.put("orders.json", [1, 2, 39])
        result = dorc_run("shop", "orders")
        assert result.succeeded, result.error
        assert result.target == dorc_target
        assert result.output == {"statusCode": 200, "body": 42}
        assert dorc_aws.get_json("totals/orders.json") == {"total": 42}

    def test_same_key_other_data(dorc_aws, dorc_run):
        assert dorc_aws.keys() == []
        dorc_aws.client("s3").put_object(Bucket=dorc_aws.holding_bucket, Key="orders.json", Body=b"[5]")
        result = dorc_run("shop", "orders")
        assert result.output["body"] == 5
        assert dorc_aws.keys() == ["orders.json", "totals/orders.json"]

    def test_invoke(dorc_invoke, dorc_target):
        step = dorc_invoke("shop", "orders", "total", event={"body": [5, 5]})
        assert step.succeeded, step.error
        assert step.output["body"] == 10
        assert step.deployed_name.startswith("shop-orders-total-")

    def test_without_dorc():
        assert True
"""

FETCH = ("import boto3, json, os\n\ndef handler(event, context):\n"
         "    obj = boto3.client('s3').get_object(Bucket=os.environ['HOLDING_BUCKET'], Key='orders.json')\n"
         "    return {'statusCode': 200, 'body': json.loads(obj['Body'].read())}\n")
TOTAL = ("import boto3, json, os\n\ndef handler(event, context):\n"
         "    total = sum(event['body'])\n"
         "    boto3.client('s3').put_object(Bucket=os.environ['HOLDING_BUCKET'], Key='totals/orders.json',\n"
         "                                  Body=json.dumps({'total': total}).encode())\n"
         "    return {'statusCode': 200, 'body': total}\n")


@pytest.fixture
def user_suite(pytester):
    """A user's project (``shop/orders``: fetch -> total) and test file, config named in the ini."""
    make_project(pytester.path, {"shop/orders": {"main": chain_main("fetch", "total"),
                                                 "functions": {"fetch": FETCH, "total": TOTAL}}},
                 name="shop", dirname="config")
    pytester.makeini("[pytest]\ndorc_config_repo = config\n")
    pytester.makepyfile(test_orders=USER_TESTS)
    return pytester


def _collected(pytester, *args) -> list[str]:
    out = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", *args)
    return sorted(line.split("::", 1)[1] for line in out.outlines if "::" in line)


def test_default_is_local_only_and_ids_stay_as_they_are(user_suite):
    assert _collected(user_suite) == ["test_invoke", "test_same_key_other_data", "test_total", "test_without_dorc"]


def test_the_option_runs_each_dorc_test_once_per_target(user_suite):
    assert _collected(user_suite, "--dorc-targets=local,localstack") == [
        "test_invoke[local]", "test_invoke[localstack]", "test_same_key_other_data[local]",
        "test_same_key_other_data[localstack]", "test_total[local]", "test_total[localstack]", "test_without_dorc"]


def test_the_localstack_runs_carry_the_localstack_mark(user_suite):
    """``-m "not localstack"`` keeps the local half of a both-targets run."""
    assert _collected(user_suite, "--dorc-targets=local,localstack", "-m", "not localstack") == [
        "test_invoke[local]", "test_same_key_other_data[local]", "test_total[local]", "test_without_dorc"]


def test_dorc_targets_variable_is_the_default_of_the_option(user_suite, monkeypatch):
    monkeypatch.setenv("DORC_TARGETS", "localstack")
    assert _collected(user_suite, "-k", "total") == ["test_total[localstack]"]
    assert _collected(user_suite, "-k", "total", "--dorc-targets=local") == ["test_total"]


def test_the_marker_chooses_the_targets_of_a_module(user_suite):
    user_suite.makepyfile(test_marked="""
        import pytest

        pytestmark = pytest.mark.dorc_targets("local", "localstack")

        def test_marked(dorc_target):
            assert dorc_target in ("local", "localstack")
    """)
    assert _collected(user_suite, "test_marked.py") == ["test_marked[local]", "test_marked[localstack]"]
    assert _collected(user_suite, "test_marked.py", "--dorc-targets=localstack") == [
        "test_marked[local]", "test_marked[localstack]"]


def test_an_unknown_target_is_a_usage_error(user_suite):
    out = user_suite.runpytest_inprocess("-p", "no:cacheprovider", "--dorc-targets=local,aws")
    assert out.ret == pytest.ExitCode.USAGE_ERROR
    assert "--dorc-targets: unknown dorc target(s) aws; choose from local, localstack" in "\n".join(out.errlines)


def test_local_run_of_a_users_tests(user_suite):
    out = user_suite.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    out.assert_outcomes(passed=4)


@pytest.mark.localstack
def test_one_test_passes_on_both_targets(user_suite, dorc_localstack, monkeypatch):
    """The user's tests, with both targets: each dorc test passes twice, and in LocalStack the
    second test does not see the first one's objects under the same key."""
    monkeypatch.setenv("DORC_LOCALSTACK_ENDPOINT", dorc_localstack.endpoint)  # this session's LocalStack
    out = user_suite.runpytest_inprocess("-p", "no:cacheprovider", "-v", "--dorc-targets=local,localstack")
    out.assert_outcomes(passed=7)
    for name in ("test_total", "test_same_key_other_data", "test_invoke"):
        for target in ("local", "localstack"):
            out.stdout.fnmatch_lines([f"*test_orders.py::{name}[[]{target}[]] PASSED*"])
    # what the LocalStack half left in the session's test environment: the last test's (test_invoke)
    # object only, the earlier tests' were emptied when it started
    from localstack_client.session import Session

    assert isinstance(dorc_localstack.session, Session)
    s3 = dorc_localstack.client("s3", region_name="eu-west-2")
    listed = s3.list_objects_v2(Bucket="shop-holding-localstack-t").get("Contents", [])
    assert [o["Key"] for o in listed] == ["totals/orders.json"]
    assert s3.get_object(Bucket="shop-holding-localstack-t", Key="totals/orders.json")["Body"].read() == b'{"total": 10}'


def test_each_xdist_worker_has_a_test_environment_of_its_own(census_repo, monkeypatch):
    """Workers must not empty each other's holding store: ``gw<N>`` deploys to ``localstack-t<N>``,
    an environment of this machine like ``localstack`` (no Pulumi.<env>.yaml needed); a name
    outside that family still needs its settings file."""
    from dorc import api
    from dorc.errors import DorcError
    from dorc.pytest_plugin import localstack_test_env

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert localstack_test_env() == "localstack-t"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert localstack_test_env() == "localstack-t3"
    plan = api.plan_layer(api.find_project(census_repo), "census", "processed", "localstack-t3")
    assert [f.name for f in plan.functions] == ["census-processed-function1-localstack-t3",
                                                "census-processed-function2-localstack-t3"]
    assert plan.holding_bucket == "dorc-census-holding-localstack-t3"
    with pytest.raises(DorcError, match="Pulumi.localstack-tx.yaml does not exist"):
        api.plan_layer(api.find_project(census_repo), "census", "processed", "localstack-tx")
