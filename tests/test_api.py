"""The library API: every command is one function of ``dorc.api``, with the CLI's rules and
errors, so users' scripts and the pytest plugin can do what the CLI does."""

from __future__ import annotations

import socket

import pytest

from dorc import api
from dorc.errors import DorcError, LocalStackError, LocalStackRunError, ToolMissingError
from dorc.project import find_project
from helpers import OK_HANDLER, chain_main, make_project


@pytest.fixture
def project(tmp_path):
    root = make_project(tmp_path, {"demo/main": {"main": chain_main("f1", "f2"),
                                                 "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}}})
    return find_project(root)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_every_command_has_a_library_function():
    for name in ("run_pipeline", "invoke_function", "validate", "plan_layer", "plan_stacks", "deploy", "destroy",
                 "promote", "localstack_install", "localstack_start", "localstack_stop", "localstack_status",
                 "localstack_logs"):
        assert callable(getattr(api, name)), name


def test_run_and_invoke_through_the_api(project):
    result = api.run_pipeline("demo", "main", project=project, event={"n": 1}, record=False)
    assert result.succeeded and [s.function for s in result.steps] == ["f1", "f2"]
    assert result.output["body"]["event"]["body"]["event"] == {"n": 1}
    step = api.invoke_function("demo", "main", "f2", project=project, event={"x": 2})
    assert step.output["body"]["event"] == {"x": 2}


@pytest.mark.parametrize("kwargs, flag", [({"endpoint": "http://127.0.0.1:1"}, "--endpoint"),
                                          ({"deploy": False}, "--no-deploy"), ({"timeout": 5.0}, "--timeout")])
def test_localstack_only_options_are_refused_on_a_local_run(project, kwargs, flag):
    with pytest.raises(DorcError, match=f"{flag} only applies to --localstack runs") as exc:
        api.run_pipeline("demo", "main", project=project, record=False, **kwargs)
    assert exc.value.exit_code == 2


def test_unknown_targets_are_refused_with_the_known_ones(project):
    with pytest.raises(DorcError, match="unknown target 'aws'") as exc:
        api.run_pipeline("demo", "main", target="aws", project=project)
    assert "local, localstack" in exc.value.hint
    with pytest.raises(DorcError, match="unknown deployment target 'local'") as exc:
        api.deploy("demo", "main", env="preprod", target="local", project=project)
    assert "localstack, pulumi" in exc.value.hint


def test_deploy_and_destroy_need_an_environment_except_universal(project):
    for call in (api.deploy, api.destroy):
        with pytest.raises(DorcError, match="needs --env"):
            call("demo", "main", project=project)


def test_deploying_to_a_localstack_that_is_not_running_is_one_clear_error(project):
    with pytest.raises(LocalStackError, match="LocalStack is not reachable at") as exc:
        api.deploy("demo", "main", env="preprod", target="localstack", endpoint=_closed_port_url(), project=project)
    assert exc.value.exit_code == 2 and "dorc localstack start" in exc.value.hint
    assert not isinstance(exc.value, LocalStackRunError)


def test_pulumi_deployments_without_the_pulumi_cli_say_what_to_install(project, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `pulumi` on it
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "no-pulumi"))
    with pytest.raises(ToolMissingError, match="Pulumi CLI is not installed"):
        api.deploy("demo", "main", env="preprod", project=project)
    for env in ("preprod", "prod"):
        (project.layer_dir("demo", "main") / f"Pulumi.{env}.yaml").write_text("config: {aws:region: eu-west-2}\n")
    with pytest.raises(ToolMissingError, match="Pulumi CLI is not installed"):
        api.promote("demo", "main", to="prod", project=project)


def test_promote_refuses_an_unknown_environment(project):
    with pytest.raises(DorcError, match="cannot promote to 'staging'"):
        api.promote("demo", "main", to="staging", target="localstack", project=project)


def test_the_localstack_run_error_is_a_localstack_error():
    """One family: ``except LocalStackError`` catches a failed deployment too (exit 1)."""
    assert issubclass(LocalStackRunError, LocalStackError)
    assert LocalStackRunError("x").exit_code == 1 and LocalStackError("x").exit_code == 2
