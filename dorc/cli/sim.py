"""``dorc sim``: the local AWS server that local runs of this config repo share."""

from __future__ import annotations

from typing import Optional

import typer

from .options import ConfigRepo

sim_app = typer.Typer(help="The local AWS server (moto) that local runs of this config repo share.",
                      no_args_is_help=True)


@sim_app.command("start")
def sim_start(config_repo: Optional[str] = ConfigRepo):
    """Start it (runs start it on demand; this only starts it early)."""
    from .. import local_aws
    from ..render import console

    info = local_aws.sim_start(config_repo=config_repo)
    console().print(f"local AWS server running at {info.url} (pid {info.pid})")


@sim_app.command("stop")
def sim_stop(config_repo: Optional[str] = ConfigRepo):
    """Stop it, by the PID it recorded; the store stays on disk."""
    from .. import local_aws
    from ..render import console

    info = local_aws.sim_stop(config_repo=config_repo)
    console().print(f"stopped the local AWS server (pid {info.pid})" if info else "no local AWS server was running")


@sim_app.command("status")
def sim_status(config_repo: Optional[str] = ConfigRepo):
    """Whether it runs, where and since when: exit 0 running, 1 not."""
    from .. import local_aws
    from ..render import console

    info, line = local_aws.sim_status(config_repo=config_repo)
    console().print(f"local AWS server: {line}")
    raise typer.Exit(0 if info else 1)
