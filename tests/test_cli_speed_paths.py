"""The command line's quick paths say what the full ones say.

``dorc --help`` loads neither pydantic, dorc's models nor the AWS SDK; ``dorc validate`` is read
without typer (``dorc.cli.fast``) and, off a terminal, written without rich; a run's summary is
drawn in one pass. Each is checked against the path it shortens: the same text, the same exit codes.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from helpers import OUTSIDE_VARS, REPO_ROOT, chain_main, OK_HANDLER

HEAVY = ("pydantic", "boto3", "botocore", "moto", "dorc.models", "dorc.planning", "dorc.api", "markdown_it")


def _dorc(*args: str, cwd=REPO_ROOT, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``dorc ARGS`` through the console script's entry, in a child process: its result, and the
    modules it had imported when it exited."""
    code = ("import json, sys\n"
            f"sys.argv = ['dorc', *{list(args)!r}]\n"
            "from dorc.cli import console_main\n"
            "try:\n"
            "    console_main()\n"
            "finally:\n"
            "    sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n")
    base = {k: v for k, v in os.environ.items() if k not in (*OUTSIDE_VARS, "COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=60)
    stderr, _, modules = proc.stderr.rpartition("\nMODULES ")
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, stderr), json.loads(modules)


def _loaded(modules: list[str], prefixes) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def _commands() -> dict:
    from dorc.cli.app import command

    return command().commands


def test_help_lists_every_command_without_loading_models_or_the_aws_sdk():
    proc, modules = _dorc("--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for name, cmd in _commands().items():
        assert f" {name} " in proc.stdout, name
        if not getattr(cmd, "hidden", False) and cmd.help:
            assert cmd.help.split(".")[0][:40] in proc.stdout, name  # its one-line summary, not only its name
    assert _loaded(modules, HEAVY) == []


@pytest.mark.parametrize("command", [["run"], ["validate"], ["store", "put"], ["deploy"]])
def test_a_command_help_loads_no_models_either(command):
    proc, modules = _dorc(*command, "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "--config-repo" in proc.stdout
    assert _loaded(modules, HEAVY) == []


def test_help_reads_the_same_on_a_terminal():
    """With rich's deferred parts (markdown, tracebacks) left out, the styled help is the plain one, styled."""
    styled, modules = _dorc("run", "--help", env={"COLUMNS": "120", "FORCE_COLOR": "1"})
    plain, _ = _dorc("run", "--help", env={"COLUMNS": "120"})
    assert styled.returncode == plain.returncode == 0, styled.stderr
    assert "\x1b[" in styled.stdout and "JSON|@FILE" in plain.stdout
    assert re.sub(r"\x1b\[[0-9;]*m", "", styled.stdout) == plain.stdout
    assert "rich.markdown" not in modules


def _invalid_project(project_factory):
    return project_factory({
        "demo/good": {"main": chain_main("a", "b"), "functions": {"a": OK_HANDLER, "b": OK_HANDLER}},
        "demo/bad": {"main": chain_main("x", "y"),
                     "functions": {"x": "def handler(event):\n    return event\n", "y": None}},
    })


def test_validate_without_typer_says_what_the_typer_command_says(project_factory, cli):
    root = _invalid_project(project_factory)
    typer_path = cli("validate", "--config-repo", root)
    fast, modules = _dorc("validate", "--config-repo", str(root))
    assert typer_path.exit_code == fast.returncode == 2
    assert fast.stdout == typer_path.stdout
    assert "✗ demo/bad: 2 problem(s)" in fast.stdout and "✓ demo/good is valid" in fast.stdout
    assert _loaded(modules, ("typer", "click", "boto3", "botocore", "moto", "rich")) == []
    # rich writing it (a sign of a terminal that is not one) writes the same
    rich_path, modules = _dorc("validate", "--config-repo", str(root), env={"TTY_COMPATIBLE": "0"})
    assert rich_path.stdout == fast.stdout and "rich" in modules


def test_validate_arguments_and_options_as_typer_reads_them(project_factory, cli):
    root = _invalid_project(project_factory)
    one, modules = _dorc("validate", "demo", "good", "--env=local", cwd=root.parent, env={"CONFIG_REPO_PATH": str(root)})
    assert (one.returncode, one.stdout) == (0, "✓ demo/good is valid\n")
    assert "typer" not in modules
    missing, _ = _dorc("validate", "demo", "nope", "--config-repo", str(root))
    assert missing.returncode == 2 and "no pipeline demo/nope" in missing.stderr
    assert cli("validate", "demo", "nope", "--config-repo", root).stderr == missing.stderr


@pytest.mark.parametrize("args, says", [
    (["--bogus"], "No such option: --bogus"),
    (["a", "b", "c"], "Got unexpected extra argument"),
    (["--env"], "requires an argument"),
])
def test_validate_command_lines_it_does_not_read_go_to_typer(args, says):
    proc, modules = _dorc("validate", *args)
    assert proc.returncode == 2
    assert says in proc.stderr
    assert "typer" in modules


def test_the_fast_validate_knows_the_typer_commands_parameters():
    from dorc.cli.fast import COMMANDS

    for name, (arguments, options, env_vars) in COMMANDS.items():
        params = _commands()[name].params
        assert tuple(p.name for p in params if p.param_type_name == "argument") == arguments
        declared = {opt: p.name for p in params if p.param_type_name == "option" for opt in p.opts}
        assert declared == options
        assert {p.name: p.envvar for p in params if p.envvar} == env_vars


@pytest.mark.parametrize("args, says", [
    (["runs", "--limit", "0"], "--limit"),
    (["runs", "--limit", "many"], "--limit"),
    (["run", "census", "raw", "--timeout", "soon"], "--timeout"),
])
def test_option_values_are_still_checked(cli, args, says):
    res = cli(*args)
    assert res.exit_code == 2
    assert says in res.output


# -- the run summary ------------------------------------------------------------------------------

def _result(steps: int, *, fail_last: bool = False, name: str = "function"):
    from dorc.result import RunResult, StepError, StepResult

    run = RunResult(pipeline="demo", layer="main", target="local", env="local", duration_ms=1234.0)
    for i in range(steps):
        failed = fail_last and i == steps - 1
        run.add_step(StepResult(
            function=f"{name}{i}" * (1 + i % 3), layer=f"demo/l{i % 2}", deployed_name="x",
            status="failed" if failed else "succeeded", duration_ms=0.4 + i * 977.3,
            output_json=None if failed else json.dumps({"statusCode": 200 + i} if i % 2 else [i]).encode(),
            error=StepError("Runtime.ImportModuleError", "no module") if failed else None,
            max_memory_mb=40 + i if i % 3 else None))
    if fail_last:
        run.error = StepError("Runtime.ImportModuleError", "no module")
    return run


def _rich_table(out: Console, run) -> None:
    """The summary's table as rich's Table draws it (what ``summary`` drew before it drew its own)."""
    from dorc.describe import format_duration

    table = Table(title=f"{run.pipeline} ({run.target}, env {run.env})", title_justify="left")
    for col in ("layer", "function", "status"):
        table.add_column(col, no_wrap=True)
    for col in ("duration", "memory", "statusCode"):
        table.add_column(col, justify="right", no_wrap=True)
    for s in run.steps:
        out_val = s.output
        code = json.dumps(out_val["statusCode"]) if isinstance(out_val, dict) and "statusCode" in out_val else "-"
        status = Text("succeeded", style="green") if s.succeeded else Text(f"failed ({s.error.type})", style="red")
        table.add_row(s.layer, s.function, status, format_duration(s.duration_ms),
                      f"{s.max_memory_mb} MB" if s.max_memory_mb else "-", code)
    out.print(table)


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("name", ["function", "fünction_日本"])
def test_the_summary_table_is_the_one_rich_draws(terminal, name):
    from dorc.render import summary

    run = _result(7, fail_last=True, name=name)
    consoles = [Console(file=io.StringIO(), width=160, force_terminal=terminal, color_system="truecolor" if terminal else None,
                        highlight=False, soft_wrap=True) for _ in range(2)]
    summary(consoles[0], run)
    _rich_table(consoles[1], run)
    ours, theirs = (c.file.getvalue() for c in consoles)
    assert ours.startswith(theirs)  # then the verdict line
    assert "│ demo/l1 │" in ours and "failed (Runtime.ImportModuleError)" in ours


def test_a_summary_too_wide_for_the_terminal_lists_the_steps():
    from dorc.render import summary

    out = Console(file=io.StringIO(), width=40, force_terminal=True, color_system=None, highlight=False, soft_wrap=True)
    summary(out, _result(3))
    text = out.file.getvalue()
    assert "┏" not in text
    assert "  ✓ demo/l0 function0\n      succeeded · 0.4 ms · memory -\n" in text
    assert "statusCode 201" in text


def test_a_thousand_step_summary_has_a_row_per_step():
    from dorc.render import summary

    out = Console(file=io.StringIO(), width=120, highlight=False, soft_wrap=True)
    summary(out, _result(1000))
    lines = out.file.getvalue().splitlines()
    assert sum(line.startswith("│ demo/l") for line in lines) == 1000
    assert lines[-1].startswith("✓ pipeline succeeded")
