"""``dorc runs show ID|last``, ``dorc runs --target localstack`` and ``dorc logs``: past runs,
whoever started them, and the functions' logs."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any, Optional

import typer

from ..errors import DorcError
from .options import ConfigRepo

CUT_LINES = 30  # a shown input, output or log is shortened to this many lines unless --full


def duration(ms: Any) -> str:
    """"850 ms", "4.2 s", "3 min 05 s"; "-" when unknown (still running, or a record edited by hand)."""
    from ..describe import format_duration

    return format_duration(ms if isinstance(ms, (int, float)) and not isinstance(ms, bool) else None)


def _status(status: str) -> str:
    colour = {"succeeded": "green", "running": "cyan", "cancelled": "yellow"}.get(status, "red")
    return f"[{colour}]{status}[/]"


def show(run_id: Optional[str], *, target: str, env: Optional[str], endpoint: Optional[str], full: bool,
         as_json: bool, config_repo: Optional[str]) -> None:
    """One past run: what ran where and when, each step with its input, output, error and logs."""
    from rich.markup import escape

    from .. import api
    from ..records import payload_not_kept
    from ..render import console
    from ..result import json_document

    if not run_id:
        raise DorcError("dorc runs show needs a run: its id or last",
                        hint="dorc runs lists the runs with their ids; e.g. dorc runs show last")
    record = api.run_record(run_id, target=target, env=env, endpoint=endpoint, config_repo=config_repo)
    if as_json:
        doc = {k: v for k, v in record.items() if k != "record_path"}
        sys.stdout.write(json_document(doc) + "\n")
        return
    out = console()
    steps = record.get("steps", [])
    out.print(f"[bold]run {escape(str(record.get('id', '')))}[/]: {escape(str(record.get('pipeline')))}/"
              f"{escape(str(record.get('layer')))} on {escape(str(record.get('target')))} "
              f"(env {escape(str(record.get('env')))}) {_status(str(record.get('status')))}")
    out.print(f"started {str(record.get('started_at', '')).replace('T', ' ').removesuffix('Z')} UTC · "
              f"{duration(record.get('duration_ms'))} · {len(steps)} step(s)", highlight=False)
    where = record.get("execution_arn") or record.get("record_path")
    if where:
        out.print(f"[dim]{escape(str(where))}[/]")
    shortened = False
    for i, step in enumerate(steps, 1):
        out.print()
        head = (f"[bold]{i}. {escape(str(step.get('layer')))} {escape(str(step.get('function')))}[/]  "
                f"{_status(str(step.get('status')))}  {duration(step.get('duration_ms'))}")
        if step.get("request_id"):
            head += f"  [dim]request {escape(str(step['request_id']))}[/]"
        out.print(head)
        for label in ("input", "output"):
            if label == "output" and step.get("error") and step.get("output") is None:
                continue
            not_kept = payload_not_kept(record, step, label)
            if not_kept is not None:
                out.print(f"   {label}: [yellow]not kept[/] ({escape(not_kept)})", highlight=False)
                continue
            text, cut = _shorten(json.dumps(step.get(label), indent=2, ensure_ascii=False), full)
            shortened |= cut
            out.print(f"   {label}:")
            out.print(_indent(text, 5), highlight=False, markup=False)
        err = step.get("error")
        if err:
            out.print(f"   [red]error: {escape(str(err.get('type')))}: {escape(str(err.get('message')))}[/]")
            trace = [line for frame in err.get("stack_trace") or [] for line in str(frame).rstrip("\n").split("\n")]
            if trace:
                out.print("   stack trace (most recent call last):")
                out.print(_indent("\n".join(trace), 5), highlight=False, markup=False)
        logs = str(step.get("logs") or "").rstrip("\n")
        if logs:
            text, cut = _shorten(logs, full, keep_end=True)
            shortened |= cut
            out.print("   logs:")
            out.print(_indent(text, 5), highlight=False, markup=False)
    if record.get("error") and not any(s.get("error") for s in steps):
        err = record["error"]
        out.print(f"\n[red]error: {escape(str(err.get('type')))}: {escape(str(err.get('message')))}[/]")
    if record.get("output") is not None and record.get("status") == "succeeded":
        text, cut = _shorten(json.dumps(record["output"], indent=2, ensure_ascii=False), full)
        shortened |= cut
        out.print("\n[bold]output[/]:")
        out.print(_indent(text, 3), highlight=False, markup=False)
    if record.get("sandbox"):
        out.print(f"[dim]sandbox: {escape(str(record['sandbox']))}[/]")
    if record.get("iam"):
        out.print(f"[dim]iam: {escape(str(record['iam']))}[/]")
    for warning in record.get("warnings") or []:
        out.print(f"[yellow]warning:[/] {escape(str(warning))}")
    if shortened:
        out.print(f"[dim]long inputs, outputs and logs are shortened to {CUT_LINES} lines: --full shows them "
                  "whole, --json gives the record[/]")


def _shorten(text: str, full: bool, *, keep_end: bool = False) -> tuple[str, bool]:
    """At most ``CUT_LINES`` lines (logs keep their end, where the error is), with a note of what was left out."""
    lines = text.split("\n")
    if full or len(lines) <= CUT_LINES:
        return text, False
    left = len(lines) - CUT_LINES
    if keep_end:
        return "\n".join([f"… {left} earlier line(s) not shown", *lines[-CUT_LINES:]]), True
    return "\n".join([*lines[:CUT_LINES], f"… {left} more line(s) not shown"]), True


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.split("\n"))


def executions_table(instance: Optional[str], layer: Optional[str], *, target: str, env: Optional[str],
                     endpoint: Optional[str], limit: int, config_repo: Optional[str]) -> None:
    """``dorc runs --target localstack``: the deployed state machines' executions, whoever started them."""
    from rich import box
    from rich.table import Table

    from .. import api
    from ..render import console

    rows = api.executions(instance, layer, target=target, env=env, endpoint=endpoint, limit=limit,
                          config_repo=config_repo)
    out = console()
    if not rows:
        out.print(f"[dim]no executions in {target} (env {env or target}) of this project's state machines; "
                  f"deploy and run with dorc run INSTANCE LAYER --{target}[/]")
        return
    # one environment per listing: said once above the table, which keeps to 80 columns
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"executions in {target}, env {rows[0]['env']}",
                  title_justify="left")
    for col in ("started (UTC)", "pipeline", "status", "duration", "name"):
        table.add_column(col, overflow="fold", no_wrap=col in ("started (UTC)", "status", "duration"),
                         justify="right" if col == "duration" else "left")
    for r in rows:
        table.add_row(r["started_at"].replace("T", " ").removesuffix("Z"), f"{r['pipeline']}/{r['layer']}",
                      _status(r["status"]), duration(r["duration_ms"]), r["id"])
    out.print(table)
    out.print(f"[dim]dorc runs show NAME --target {target}{' --env ' + env if env else ''} shows one[/]")


def logs(
    instance: str = typer.Argument(..., help="Pipeline instance, e.g. census."),
    layer: str = typer.Argument(..., help="Layer, e.g. raw."),
    target: str = typer.Option("local", "--target", help="localstack: the functions' CloudWatch logs there; local: the logs of the layer's newest recorded run."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment deployed (default: localstack, or local)."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="LocalStack URL (default $AWS_ENDPOINT_URL, $LOCALSTACK_HOST or http://localhost:4566)."),
    function: Optional[list[str]] = typer.Option(None, "--function", "-f", help="Only this function (repeatable)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only lines of the last 30s, 10m, 2h, 1d."),
    follow: bool = typer.Option(False, "--follow", help="Keep printing new lines until Ctrl-C."),
    config_repo: Optional[str] = ConfigRepo,
):
    """The functions' logs: CloudWatch's in LocalStack (--target localstack), each line with its function."""
    from .. import api
    from ..project import find_project

    since_ms = None if since is None else int((time.time() - _seconds(since)) * 1000)
    events = api.function_logs(instance, layer, target=target, env=env, endpoint=endpoint, functions=function,
                               since_ms=since_ms, follow=follow, project=find_project(config_repo))
    width = max((len(f) for f in function or []), default=0)
    count = 0
    try:
        for e in events:
            count += 1
            stamp = time.strftime("%H:%M:%S", time.gmtime(e["timestamp"] / 1000))
            for line in str(e["message"]).rstrip("\n").split("\n"):
                sys.stdout.write(f"{stamp} {e['function']:<{width}} {line}\n")
            if follow:
                sys.stdout.flush()
    except KeyboardInterrupt:  # --follow ends with Ctrl-C: that is its normal end
        sys.stdout.flush()
        raise typer.Exit(0) from None
    if not count:
        sys.stderr.write(f"no log lines of {instance}/{layer}" + (" in the given time" if since else "") + "\n")


def _seconds(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise DorcError(f"--since {text!r} is not a duration", hint="e.g. --since 30s, 10m, 2h or 1d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
