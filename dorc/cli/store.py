"""``dorc store``: the local holding store that persists between local runs."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import DorcError
from ..project import find_project
from .options import ConfigRepo

store_app = typer.Typer(help="The local holding store that persists between local runs.", no_args_is_help=True)


@store_app.command("ls")
def store_ls(config_repo: Optional[str] = ConfigRepo):
    """What the local holding store holds (bucket, key, size)."""
    from rich.markup import escape

    from .. import api
    from ..render import console

    out = console()
    items = api.store_objects(config_repo=config_repo)
    for bucket, key, size in items:
        out.print(f"{escape(f's3://{bucket}/{key}')}  [dim]{size:,} bytes[/]")
    if not items:
        out.print("[dim]the local store is empty[/]")


@store_app.command("clear")
def store_clear(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Delete everything local runs stored (the next processed run will need a raw run first)."""
    from .. import api
    from ..render import console

    project = find_project(config_repo)
    n = len(api.store_objects(project=project))
    if n and not yes:
        if not sys.stdin.isatty():
            raise DorcError(f"the local store holds {n} object(s); refusing to delete them without --yes")
        typer.confirm(f"Delete {n} object(s) from the local store {project.local_aws_dir}?", abort=True)
    api.clear_store(project=project)
    console().print(f"cleared the local store ({n} object(s) deleted)")
