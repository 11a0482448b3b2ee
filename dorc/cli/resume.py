"""``dorc rerun``: a recorded run again, whole or from one of its functions (``dorc.resume``).
(``dorc run … --from FUNCTION`` is an option of ``dorc run``: ``dorc.cli.pipelines``.)"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from .options import ConfigRepo


def rerun(
    run_id: str = typer.Argument("last", metavar="ID", help="The recorded run: its id or first characters (as dorc runs shows them), its record's file name, or last (the default)."),
    from_function: Optional[str] = typer.Option(None, "--from", metavar="FUNCTION", help="Start at this function, with the input it received in that run (local runs only)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No handler logs, only the summary."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="For a LocalStack run: LocalStack's URL (default $AWS_ENDPOINT_URL, $LOCALSTACK_HOST or http://localhost:4566)."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Run a recorded run again: same pipeline, layer, target, env and first event (a resumed run resumes at the same function with the same input). The new record links to it."""
    from .. import api
    from ..project import find_project
    from ..render import TerminalObserver, console, summary
    from ..result import RunCancelled

    project = find_project(config_repo)
    out = console()
    observer = TerminalObserver(out, show_logs=not quiet)
    try:
        result = api.rerun_pipeline(run_id, start_at=from_function, observer=observer, endpoint=endpoint,
                                    project=project)
    except RunCancelled as exc:  # Ctrl-C: shown and recorded as cancelled, exit 130
        observer.interrupted()
        summary(out, exc.result, project=project)
        recorded = f"; recorded as cancelled: {exc.result.record_path}" if exc.result.record_path else ""
        sys.stderr.write(f"interrupted{recorded}\n")
        raise typer.Exit(130) from None
    summary(out, result, project=project)
    raise typer.Exit(0 if result.succeeded else 1)
