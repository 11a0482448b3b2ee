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

    from dorc_sim.aws import list_store

    from ..render import console

    project = find_project(config_repo)
    out = console()
    items = list_store(project.state_dir / "local-aws")
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
    from dorc_sim.aws import clear_store, list_store

    from ..render import console

    project = find_project(config_repo)
    store = project.state_dir / "local-aws"
    n = len(list_store(store))
    if n and not yes:
        if not sys.stdin.isatty():
            raise DorcError(f"the local store holds {n} object(s); refusing to delete them without --yes")
        typer.confirm(f"Delete {n} object(s) from the local store {store}?", abort=True)
    clear_store(store)
    console().print(f"cleared the local store ({n} object(s) deleted)")
