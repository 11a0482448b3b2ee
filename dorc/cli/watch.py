"""``dorc run … --watch``: the terminal side of ``dorc.api.watch_pipeline`` (a run, then one per
change, each shown and recorded as usual). Ctrl-C stops watching with exit 130, as for any
interrupted command; each run's own outcome is in its summary and its record."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import typer

from ..errors import DefinitionError, DorcError
from ..project import Project
from ..result import RunCancelled


def watch_runs(instance: str, layer: str | None, *, project: Project, out, quiet: bool, run_args: dict[str, Any]) -> NoReturn:
    """Run with ``run_args`` (``api.run_pipeline``'s keywords) now and after every change. A run
    that cannot start because a definition is mid-edit is said and the watch goes on; any other
    reason on the first run (an unknown function, a refused option) ends it (exit 2)."""
    from rich.text import Text

    from .. import api
    from ..render import TerminalObserver, print_error, say, summary

    runs = 0
    last: list[Any] = [None]

    def run_once() -> None:
        nonlocal runs
        runs += 1
        observer = TerminalObserver(out, show_logs=not quiet)
        try:
            result = api.run_pipeline(instance, layer, project=project, observer=observer, **run_args)
        except RunCancelled as exc:  # Ctrl-C mid-run: shown and recorded as cancelled; the watch ends
            observer.interrupted()
            summary(out, exc.result, project=project)
            last[0] = exc.result
            raise
        except DorcError as exc:
            if runs == 1 and not isinstance(exc, DefinitionError):
                raise
            print_error(exc)
            return
        summary(out, result, project=project)
        last[0] = result

    def on_wait(paths: list[Path]) -> None:
        shown = ", ".join(project.display_path(p) for p in paths)
        say(out, Text("watching ", style="dim"), Text(f"{shown} for changes (Ctrl-C to stop)", style="dim"))

    def on_change(paths: list[Path]) -> None:
        first = project.display_path(paths[0]) if paths else "a file"
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        title = Text(f"{time.strftime('%H:%M:%S')} {first}{more} changed: run {runs + 1}", style="cyan")
        out.print()
        if title.cell_len + 6 <= out.width:
            out.rule(title, style="cyan")
        else:  # a long path: wrapped at spaces, never cut
            say(out, Text("── ", style="cyan"), title)

    try:
        api.watch_pipeline(instance, layer, run_once=run_once, on_change=on_change, on_wait=on_wait,
                           env=run_args.get("env"), target=run_args.get("target", "local"), project=project)
    except KeyboardInterrupt:
        result = last[0]
        recorded = (f"; the last run is recorded: {project.display_path(result.record_path)}"
                    if result is not None and result.record_path else "")
        out.file.flush()
        sys.stderr.write(f"stopped watching after {runs} run{'s' if runs != 1 else ''}{recorded}\n")
        raise typer.Exit(130) from None
