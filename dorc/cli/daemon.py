"""``dorc daemon``: the opt-in warm path (``dorc.daemon``): local runs forked from a process that
has imported dorc already."""

from __future__ import annotations

import time

import typer

daemon_app = typer.Typer(help="Keep dorc loaded in the background: local runs start in a fraction of the time.",
                         no_args_is_help=True)


@daemon_app.command("start")
def daemon_start():
    """Start it (a stale one, from before dorc changed, is replaced); dorc run uses it from now on."""
    from ..daemon import control
    from ..render import console

    info, started = control.start()
    console().print(f"dorc daemon {'started' if started else 'already running'} (pid {info.pid}, {info.folder})")


@daemon_app.command("stop")
def daemon_stop():
    """Stop it, by the PID it recorded; runs go back to starting on their own."""
    from ..daemon import control
    from ..render import console

    info = control.stop()
    console().print(f"stopped the dorc daemon (pid {info.pid})" if info else "no dorc daemon was running")


@daemon_app.command("status")
def daemon_status():
    """Whether it runs and what it holds: exit 0 running, 1 not."""
    from ..daemon import control
    from ..render import console

    info = control.status()
    out = console()
    if info is None:
        out.print("dorc daemon: not running (dorc daemon start starts it)")
        raise typer.Exit(1)
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.started))
    out.print(f"dorc daemon: running (pid {info.pid}, since {since})", highlight=False)
    out.print(f"  holds: dorc and its run's modules imported, on {info.python}; {info.runs} run(s) in flight",
              highlight=False)
    servers = ", ".join(info.sandboxes) or "none (sandboxes start as in a cold run)"
    out.print(f"  sandbox fork servers (the AWS SDK imported): {servers}", highlight=False)
    out.print(f"  socket: {info.folder}", highlight=False)
    if not info.fresh:
        out.print("  stale: dorc changed since it started; runs start on their own until dorc daemon start",
                  highlight=False)
