"""``dorc run``, ``validate``, ``list``, ``runs``: a pipeline's definitions and its runs."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import DorcError, FileSystemError
from .options import ConfigRepo


def run(
    instance: str = typer.Argument(..., help="Pipeline instance, e.g. census."),
    layer: Optional[str] = typer.Argument(None, help="Layer, e.g. raw. Omitted: every layer no other layer hands over to, and what they hand over to."),
    local: bool = typer.Option(False, "--local", help="Run here, each function in its own Lambda-like sandbox (the default)."),
    localstack: bool = typer.Option(False, "--localstack", help="Deploy to LocalStack and run there."),
    event: Optional[str] = typer.Option(None, "--event", "-e", help="First event: JSON text or @file.json (default {})."),
    trigger: Optional[str] = typer.Option(None, "--trigger", metavar="NAME", help="First event: the one this trigger of the layer delivers, in AWS's shape (EventBridge's Scheduled Event, or S3's Object Created)."),
    key: Optional[str] = typer.Option(None, "--key", help="With an S3 --trigger: the stored object the event is about (default: the newest under the trigger's prefix)."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment whose names and settings to use (default: local, or localstack)."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="LocalStack URL (default $AWS_ENDPOINT_URL, $LOCALSTACK_HOST or http://localhost:4566)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run result as one JSON document on stdout; logs go to stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No handler logs, only the summary."),
    no_deploy: bool = typer.Option(False, "--no-deploy", help="With --localstack: run what is deployed, do not deploy first."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="With --localstack: stop waiting (and stop the execution) after this many seconds (default: the functions' timeouts + 60 s)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --localstack: list the API calls deploying the layers would make, make none, and run nothing."),
    from_function: Optional[str] = typer.Option(None, "--from", metavar="FUNCTION", help="Start the layer at this function, with the input it received in the layer's last recorded run (or in --run's; or --event). Local runs only."),
    from_run: Optional[str] = typer.Option(None, "--run", metavar="ID", help="With --from: the recorded run whose input to use (its id or first characters, as dorc runs shows, its record's file name, or last)."),
    debug: bool = typer.Option(False, "--debug", help="Run the handlers attached to this terminal (stdin included) with their timeouts suspended and no spinner, so breakpoint() and pdb work. Local runs only."),
    no_iam: bool = typer.Option(False, "--no-iam", help="Do not check the handlers' AWS calls against their functions' roles (local runs; the summary says so)."),
    watch: bool = typer.Option(False, "--watch", help="Run again whenever a file of the layers it runs (their folders) or dorc.toml changes. Ctrl-C stops watching (exit 130)."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Run a pipeline: each function's return value is the next one's event, contracts checked on every hop."""
    from .. import api
    from ..project import find_project
    from ..render import TerminalObserver, console, summary
    from ..result import RunCancelled

    with _errors_as_json(as_json):
        if local and localstack:
            raise DorcError("choose one of --local and --localstack")
        if dry_run and as_json:
            raise DorcError("--dry-run lists the planned calls as text; it has no --json form",
                            hint="drop --json")
        if watch and (as_json or dry_run):
            flag = "--json" if as_json else "--dry-run"
            raise DorcError(f"--watch shows each run as it comes; it has no {flag} form",
                            hint=f"drop {flag} (every run is recorded: dorc runs, dorc runs show last --json)")
        if from_run is not None and (event is not None or trigger is not None):
            raise DorcError("--run and --event (or --trigger) both give --from its input", hint="choose one")
        if debug and (as_json or watch):
            flag = "--json" if as_json else "--watch"
            raise DorcError(f"--debug gives the terminal to the handlers; it has no {flag} form", hint=f"drop {flag}")
        target = "localstack" if localstack else "local"
        project = find_project(config_repo)
        out = console(stderr=as_json)
        event_json = _trigger_event(api, out, instance, layer, trigger, key, event, target=target, env=env,
                                    endpoint=endpoint, project=project) if trigger or key else api.parse_event(event)
        given = event is not None or trigger is not None  # --from without it: the recorded input
        run_args = dict(target=target, event=event_json if given or from_function is None else None, env=env,
                        endpoint=endpoint, deploy=not no_deploy, timeout=timeout, dry_run=dry_run,
                        start_at=from_function, resume_from=from_run, debug=debug, iam=not no_iam)
        if watch:
            from .watch import watch_runs

            watch_runs(instance, layer, project=project, out=out, quiet=quiet, run_args=run_args)
        observer = TerminalObserver(out, show_logs=not quiet, spinner=not debug)
        try:
            with _stdout_fd_to_stderr(as_json):
                result = api.run_pipeline(instance, layer, project=project, observer=observer, **run_args)
        except RunCancelled as exc:  # Ctrl-C: what ran is shown and recorded as cancelled; exit 130 as a shell expects
            observer.interrupted()
            result = exc.result
            code = 130
        else:
            code = None
    if result is None:  # --dry-run: the calls were listed, nothing ran
        raise typer.Exit(0)
    if as_json:
        result.write_json(sys.stdout, logs=False)  # step by step: a long chain's document is never whole in memory
        sys.stdout.write("\n")
    else:
        summary(out, result, project=project)
    if code == 130:
        recorded = f"; recorded as cancelled: {result.record_path}" if result.record_path else ""
        sys.stderr.write(f"interrupted{recorded}\n")
    raise typer.Exit(code if code is not None else 0 if result.succeeded else 1)


def _trigger_event(api, out, instance, layer, trigger, key, event, **where) -> dict:
    """``--trigger NAME [--key KEY]``: the event that trigger delivers, said in one line."""
    from rich.markup import escape as escape_markup

    if trigger is None:
        raise DorcError("--key names the object of an S3 trigger's event", hint="add --trigger NAME, or drop --key")
    if event is not None:
        raise DorcError("--trigger sends the event the trigger delivers; --event sends your own", hint="choose one")
    ev = api.trigger_event(instance, layer, trigger, key=key, **where)
    what = (f"s3://{ev['detail']['bucket']['name']}/{ev['detail']['object']['key']} "
            f"({ev['detail']['object']['size']:,} bytes)") if ev["source"] == "aws.s3" else ev["resources"][0]
    out.print(f"[dim]trigger {escape_markup(trigger)}: {ev['detail-type']}, {escape_markup(what)}[/]")
    return ev


@contextlib.contextmanager
def _errors_as_json(active: bool):
    """With --json, a run that cannot start still puts one document on stdout (the message goes
    to stderr as always, and the exit code is the same)."""
    from ..result import json_document

    try:
        yield
    except DorcError as exc:
        if active:
            sys.stdout.write(json_document(exc.to_dict(), indent=None) + "\n")
        raise
    except OSError as exc:
        if not exc.filename:  # not a file the machine refused: an internal error (below)
            _internal_error_as_json(active, exc)
            raise
        err = FileSystemError.from_os_error(exc)
        if active:
            sys.stdout.write(json_document(err.to_dict(), indent=None) + "\n")
        raise err from None
    except Exception as exc:  # a bug in dorc: ``dorc.cli.app.main`` says so (exit 3)
        _internal_error_as_json(active, exc)
        raise


def _internal_error_as_json(active: bool, exc: Exception) -> None:
    from ..result import json_document

    if active and not isinstance(exc, typer.Exit):
        sys.stdout.write(json_document({"status": "error", "exit_code": 3, "error": {
            "type": "InternalError", "message": f"{type(exc).__name__}: {exc}",
            "hint": "a bug in dorc: please report it; DORC_DEBUG=1 shows the traceback"}}, indent=None) + "\n")


@contextlib.contextmanager
def _stdout_fd_to_stderr(active: bool):
    """With --json, stdout carries the one JSON document: what a handler's subprocess or C code
    writes to file descriptor 1 (past the runtime's sys.stdout swap) goes to stderr meanwhile."""
    if not active:
        yield
        return
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):  # no real descriptors (embedded use): nothing to protect
        yield
        return
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


def validate(
    instance: Optional[str] = typer.Argument(None, help="Only this instance."),
    layer: Optional[str] = typer.Argument(None, help="Only this layer."),
    env: Optional[str] = typer.Option(None, "--env", help="Check the deployed names of this environment only (default: every environment the project knows: local, localstack and each Pulumi.<env>.yaml)."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Check definitions, handlers, the chain and AWS limits. Exit 0 valid, 2 invalid (every problem listed)."""
    from .validating import validate_and_show

    raise typer.Exit(validate_and_show(instance, layer, env, config_repo))


def list_(
    env: str = typer.Option("local", "--env", help="Environment for the deployed names."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Pipelines, their layers and functions in run order, with deployed names."""
    from rich.markup import escape
    from rich.text import Text
    from rich.tree import Tree

    from .. import api
    from ..errors import DefinitionError
    from ..describe import run_order, trigger_words
    from ..project import find_project
    from ..render import console
    from .plan import list_permission_lines

    project = find_project(config_repo)
    out = console()
    root = Tree(f"[bold]{project.settings.project}[/] ({project.root})")
    for inst in project.instances():
        t_inst = root.add(f"[bold cyan]{inst}[/]")
        plans, invalid = {}, {}
        for lay in project.layers(inst):
            try:
                plans[f"{inst}/{lay}"] = api.plan_layer(project, inst, lay, env)
            except DefinitionError as exc:
                invalid[lay] = len(exc.problems)
        for key in run_order(plans):  # layers no other hands over to first, each followed by its chain
            plan, lay = plans[key], plans[key].layer
            t_lay = t_inst.add(f"[bold]{lay}[/] — {escape(plan.description)}  [dim]state machine {plan.state_machine_name}[/]")
            for i, fn in enumerate(plan.functions, 1):
                t_fn = t_lay.add(f"{i}. {fn.key}  [dim]{fn.name} · {fn.runtime} · {fn.memory} MB · {fn.timeout} s[/]")
                # its effective permissions, as `dorc plan` shows them: role, statements, managed policies
                for line in list_permission_lines(fn, plan.holding_bucket):
                    t_fn.add(Text(line, style="dim"))  # Text: an ARN's ":secret:" is no emoji code
            if plan.handover:
                t_lay.add(f"→ hands over to [cyan]{plan.handover.instance}/{plan.handover.layer}[/]")
            for trig in plan.triggers:
                t_lay.add(f"⏰ {trig.key}: {escape(trigger_words(trig))}")
        for lay, count in invalid.items():
            t_inst.add(f"[red]{lay}: invalid ({count} problem(s); run dorc validate)[/]")
    out.print(root, soft_wrap=False)  # long lines wrap inside the tree instead of being cut


def runs(
    instance: Optional[str] = typer.Argument(None, help="Only this instance; or `show` to show one run: dorc runs show ID|last."),
    layer: Optional[str] = typer.Argument(None, help="Only runs that started at this layer (after `show`: the run's id, or last)."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many, newest first."),
    target: str = typer.Option("local", "--target", help="local: the recorded runs; localstack: the executions of the state machines deployed there, whoever started them."),
    env: Optional[str] = typer.Option(None, "--env", help="Only runs in this environment; with --target localstack: the environment deployed there (default localstack)."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="With --target localstack: its URL (default $AWS_ENDPOINT_URL, $LOCALSTACK_HOST or http://localhost:4566)."),
    full: bool = typer.Option(False, "--full", help="With show: inputs, outputs and logs in full, not shortened."),
    as_json: bool = typer.Option(False, "--json", help="With show: the run as one JSON document."),
    config_repo: Optional[str] = ConfigRepo,
):
    """The recorded runs (.dorc/runs), newest first, with their ids; `dorc runs show ID|last` shows one."""
    from rich import box
    from rich.table import Table

    from .. import api
    from ..render import console
    from ..records import short_id
    from . import history

    if instance == "show":  # ``dorc runs show ID``: one run (``runs`` keeps its INSTANCE LAYER form)
        history.show(layer, target=target, env=env, endpoint=endpoint, full=full, as_json=as_json,
                     config_repo=config_repo)
        return
    if as_json or full:
        raise DorcError("--json and --full go with `dorc runs show ID`", hint="e.g. dorc runs show last --json")
    if target != "local":
        history.executions_table(instance, layer, target=target, env=env, endpoint=endpoint, limit=limit,
                                 config_repo=config_repo)
        return
    if endpoint is not None:
        raise DorcError("--endpoint goes with --target localstack", hint="add --target localstack, or drop --endpoint")
    records = api.run_records(instance, layer, limit=limit, config_repo=config_repo, env=env)
    out = console()
    if not records:
        which = f" of {instance}{'/' + layer if layer else ''}" if instance else ""
        out.print(f"[dim]no runs{which} recorded yet[/]")
        return
    rows = []
    for r in records:
        failed = next((f"{s['layer']} {s['function']}: {s['error'].get('type', '')}" for s in r.get("steps", [])
                       if s.get("error")), "")
        status = r.get("status")
        where = str(r.get("target", "")) + (f" ({r.get('env')})" if r.get("env") != r.get("target") else "")
        rows.append((str(r.get("started_at", "")).replace("T", " ").removesuffix("Z"), short_id(r),
                     f"{r.get('pipeline')}/{r.get('layer')}", where,
                     "[green]succeeded[/]" if status == "succeeded" else
                     "[yellow]cancelled[/]" if status == "cancelled" else "[red]failed[/]",
                     history.duration(r.get("duration_ms")), str(len(r.get("steps", []))), failed))
    columns = ["started (UTC)", "id", "pipeline", "target", "status", "duration", "steps", "failed at"]
    if not any(row[-1] for row in rows):
        columns.pop()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in columns:
        # a narrow terminal folds long cells instead of cutting them to "…"
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "started (UTC)", "status", "duration", "steps"),
                         justify="right" if col == "duration" else "left")
    for row in rows:
        table.add_row(*row[:len(columns)])
    if out.measure(table, options=out.options.update_width(10_000)).maximum <= out.width:
        out.print(table)
    else:  # too narrow for the table: one entry per run, wrapped at spaces instead of folded mid-word
        from rich.text import Text

        from ..render import say

        for started, run_id, pipeline, where, status, duration, steps, failed in rows:
            say(out, Text(f"{run_id}  ", style="bold"), Text.from_markup(
                f"{started} UTC · {status} · {duration} · {steps} step(s)"))
            say(out, "    ", f"{pipeline} · {where}")
            if failed:
                say(out, "    failed at ", failed)
    newest = Path(records[0]["record_path"])
    from rich.text import Text

    from ..render import say

    say(out, Text("records in ", style="dim"),
        Text(f"{newest.parent} (newest: {newest.name}); dorc runs show ID shows one", style="dim"))
