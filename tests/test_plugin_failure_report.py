"""A failing assertion on a run says why it failed (step, error, stack trace, logs): issue 12, item 9."""

from __future__ import annotations

from helpers import chain_main, make_project

FAILING = {"shop/orders": {"main": chain_main("fetch", "total"), "functions": {
    "fetch": "def handler(event, context):\n    return {'statusCode': 200, 'body': [1, 2]}\n",
    "total": ("def handler(event, context):\n"
              "    print('summing the orders')\n"
              "    return {'statusCode': 200, 'body': sum(event['orders'])}\n"),
}}}


def _users_project(pytester, monkeypatch, tests: str):
    # pytest prints assertion details in full when it sees a CI (``CI``, ``BUILD_NUMBER``): the
    # counts below are of a developer's terminal, so the inner run must not think it is in CI
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    make_project(pytester.path, FAILING, name="shop", dirname="config")
    pytester.makeini("[pytest]\ndorc_config_repo = config\n")
    pytester.makepyfile(test_orders=tests)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")  # a fresh dorc per run


def test_failing_assert_succeeded_shows_step_error_trace_and_logs(pytester, monkeypatch):
    """``assert result.succeeded`` alone: pytest's one line names the status and failing step, and
    the section below it holds the error, the handler's frame and what it printed."""
    outcome = _users_project(pytester, monkeypatch, """
        def test_total(dorc_run):
            result = dorc_run("shop", "orders")
            assert result.succeeded

        def test_compared(dorc_run):
            assert dorc_run("shop", "orders").failed_step is None

        def test_unnamed(dorc_run):
            assert dorc_run("shop", "orders").succeeded
    """)
    outcome.assert_outcomes(failed=3)
    text = outcome.stdout.str()
    # a comparison with a failed step on one side explains itself too (pytest_assertrepr_compare)
    assert "StepResult(shop/orders:total failed: KeyError: 'orders') is None" in text
    assert text.count("error: KeyError: 'orders'") == 3  # once per test: no section repeats the comparison's
    assert "dorc: why the run failed" in text  # the result held by no variable of the test
    assert "RunResult(shop/orders on local (local) failed at shop/orders:total: KeyError: 'orders'" in text
    assert "dorc: why result failed" in text  # the report's section
    assert "failed step: shop/orders:total (shop-orders-total-local)" in text
    assert "error: KeyError: 'orders'" in text
    assert "in handler" in text and "sum(event['orders'])" in text  # a stack-trace line
    assert "summing the orders" in text  # a log line
    assert "steps that succeeded: shop/orders:fetch" in text


def test_raise_for_failure_raises_run_failed_with_the_report(pytester, monkeypatch):
    """``raise_for_failure()`` on the run and on a step: an AssertionError whose message is the
    report; on a success it returns the result, so it chains."""
    outcome = _users_project(pytester, monkeypatch, """
        import pytest
        from dorc import RunFailed

        def test_run(dorc_run):
            dorc_run("shop", "orders").raise_for_failure()

        def test_step(dorc_invoke):
            dorc_invoke("shop", "orders", "total", event={"body": []}).raise_for_failure()

        def test_success_chains(dorc_invoke):
            step = dorc_invoke("shop", "orders", "fetch").raise_for_failure()
            assert step.output["body"] == [1, 2]

        def test_is_an_assertion_error(dorc_run):
            with pytest.raises(AssertionError) as info:
                dorc_run("shop", "orders").raise_for_failure()
            assert isinstance(info.value, RunFailed) and info.value.result.failed_step.function == "total"
    """)
    outcome.assert_outcomes(failed=2, passed=2)
    text = outcome.stdout.str()
    assert "RunFailed: run of shop/orders on local (local) failed" in text
    assert text.count("error: KeyError: 'orders'") == 2  # run and step
    assert "sum(event['orders'])" in text and "summing the orders" in text
    assert "dorc: " not in text  # the message is the report: no second copy in a section
