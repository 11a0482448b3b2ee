"""The terminal view of a run: CloudWatch-style logs while it goes, a summary table at the end."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import DefinitionError, DorcError, Problem
from .result import RunResult, StepResult


def console(stderr: bool = False) -> Console:
    # The stream is fixed now: the Lambda runtime swaps sys.stdout while handlers run.
    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=True)


class TerminalObserver:
    """Prints each step's START/logs/END/REPORT as it happens; a spinner on a real terminal."""

    def __init__(self, out: Console, *, show_logs: bool = True):
        self.out = out
        self.show_logs = show_logs
        self._status = None

    def progress(self, message: str) -> None:
        """Deployment stages (LocalStack, Pulumi): one dim line each."""
        self.out.print(Text("  · " + message, style="dim"))

    def step_started(self, layer: str, function: str, deployed_name: str) -> None:
        self.out.print(Text.assemble(("▶ ", "bold cyan"), (f"{layer} ", "cyan"), (function, "bold"),
                                     (f"  ({deployed_name})", "dim")))
        if self.out.is_terminal:
            self._status = self.out.status(f"running {layer} {function}…", spinner="dots")
            self._status.start()

    def log(self, line: str) -> None:
        if not self.show_logs:
            return
        style = "dim" if line.startswith(("START ", "END ", "REPORT ")) else None
        self.out.print(Text("  " + line, style=style or ""))

    def step_finished(self, step: StepResult) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if step.succeeded:
            return
        err = step.error
        self.out.print(Text.assemble(("✗ ", "bold red"), (f"{step.layer} {step.function} failed: ", "red"),
                                     (f"{err.type}: {err.message}" if err else "", "bold red")))
        if err and err.stack_trace and not self.show_logs:  # with logs shown, the [ERROR] lines had them
            for frame in err.stack_trace:
                self.out.print(Text("    " + frame.rstrip().replace("\n", "\n    "), style="red"))


def summary(out: Console, result: RunResult) -> None:
    table = Table(title=f"{result.pipeline} ({result.target}, env {result.env})", title_justify="left")
    table.add_column("layer")
    table.add_column("function")
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("memory", justify="right")
    table.add_column("statusCode", justify="right")
    for s in result.steps:
        out_val = s.output if s.output_json is not None and len(s.output_json) < 1_000_000 else None
        code = str(out_val.get("statusCode")) if isinstance(out_val, dict) and "statusCode" in out_val else "-"
        table.add_row(
            s.layer, s.function,
            Text("succeeded", style="green") if s.succeeded else Text(f"failed ({s.error.type})" if s.error else "failed", style="red"),
            f"{s.duration_ms:.1f} ms", f"{s.max_memory_mb} MB" if s.max_memory_mb else "-", code,
        )
    out.print(table)
    verdict = Text("✓ pipeline succeeded", style="bold green") if result.succeeded else Text(
        f"✗ pipeline failed at {result.failed_step.layer} {result.failed_step.function}" if result.failed_step
        else f"✗ pipeline failed: {result.error.type if result.error else ''}", style="bold red")
    verdict.append(f"  in {result.duration_ms:.0f} ms", style="dim")
    out.print(verdict)
    if result.record_path:
        out.print(Text(f"run record: {result.record_path}", style="dim"))


def print_error(exc: DorcError) -> None:
    err = console(stderr=True)
    if isinstance(exc, DefinitionError):
        err.print(Text(f"error: {len(exc.problems)} problem(s) in the pipeline definition", style="bold red"))
        for p in exc.problems:
            print_problem(err, p)
    else:
        err.print(Text("error: ", style="bold red") + Text(exc.message))
    if exc.hint:
        err.print(Text("  fix: ", style="yellow") + Text(exc.hint))


def print_problem(out: Console, p: Problem) -> None:
    where = Text(p.file, style="bold")
    if p.function:
        where.append(f" [function {p.function}]", style="cyan")
    out.print(Text("  ✗ ", style="red") + where + Text(": " + p.message))
