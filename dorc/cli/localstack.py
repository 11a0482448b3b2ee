"""``dorc localstack ...``: install, start, stop, status and logs of a LocalStack for dorc.

Imports stay inside the commands so that other dorc commands do not pay for them.
Exit codes: 0 done (start: ready; status: running and answering), 1 status says not running,
2 a DorcError (printed by ``dorc.cli.main``: nothing could be done, and why).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

import typer

localstack_app = typer.Typer(
    help="A LocalStack for `dorc run --localstack`: on this host (Python 3.13, no Docker) or in Docker.",
    no_args_is_help=True,
)

Port = typer.Option(4566, "--port", "-p", help="Port on 127.0.0.1.")
StateDir = typer.Option(None, "--state-dir", help="Folder for its pid, log and files (default ~/.cache/dorc/localstack/run-<port>).")
Python = typer.Option(None, "--python", help="Python >= 3.13 to build LocalStack's venv with (default: $DORC_LOCALSTACK_PYTHON, pyenv, PATH).")


class _Progress:
    """Steps print as lines; details (pip's lines) only update the spinner."""

    def __init__(self, out):
        self.out = out
        self.status = None
        self.t0 = time.monotonic()

    def __enter__(self):
        self.status = self.out.status("working…", spinner="dots")
        self.status.__enter__()
        return self

    def __exit__(self, *exc):
        self.status.__exit__(*exc)

    def __call__(self, message: str) -> None:
        from rich.markup import escape
        from rich.text import Text

        if message.startswith("  "):
            self.status.update(f"[dim]{escape(message.strip())}[/]")
            return
        self.out.print(Text.assemble((f"{time.monotonic() - self.t0:6.1f}s ", "dim"), message))
        self.status.update(escape(message))


def _who(info) -> str:
    """Which process or container is the LocalStack: what `stop` will end."""
    return f"pid {info.pid}" if info.pid else f"container {str(info.container_id)[:12]}"


@localstack_app.command()
def install(
    python: Optional[str] = Python,
    force: bool = typer.Option(False, "--force", help="Rebuild the venv from scratch."),
):
    """Install LocalStack (pinned) and dorc's Lambda executor into a venv of their own (host mode)."""
    from .. import api
    from ..localstack import install as installed
    from ..render import console

    out = console(stderr=True)
    t0 = time.monotonic()
    already = installed.is_installed() and not force and python is None
    with _Progress(out) as progress:
        venv_py = api.localstack_install(python, progress=progress, force=force)
    state = installed.install_state() or {}
    what = "already installed" if already else f"installed in {time.monotonic() - t0:.1f} s"
    console().print(f"LocalStack {installed.LOCALSTACK_VERSION} {what}: {venv_py} "
                    f"(Python {state.get('python_version', '?')}, executor plugin '{installed.EXECUTOR_NAME}')")


@localstack_app.command()
def start(
    port: int = Port,
    state_dir: Optional[str] = StateDir,
    python: Optional[str] = Python,
    mode: str = typer.Option("auto", "--mode", help="auto (Docker if it runs and LOCALSTACK_AUTH_TOKEN is set, else host), host or docker."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for it to answer."),
):
    """Start LocalStack in the background and wait until it answers (exit 0 when ready)."""
    from .. import api
    from ..render import console

    out = console(stderr=True)
    t0 = time.monotonic()
    with _Progress(out) as progress:
        info = api.localstack_start(port=port, state_dir=state_dir, python=python, mode=mode, progress=progress, timeout=timeout)
    who = _who(info)
    console().print(f"LocalStack {info.version} ready at [bold]{info.endpoint}[/] ({info.mode} mode, {who}) "
                    f"in {time.monotonic() - t0:.1f} s")
    if info.log_file:
        console().print(f"[dim]log: {info.log_file}; stop with: dorc localstack stop --port {port}"
                        + (f" --state-dir {state_dir}" if state_dir else "") + "[/]")
    console().print(f"[dim]use it: export AWS_ENDPOINT_URL={info.endpoint}  or  dorc run ... --localstack "
                    f"--endpoint {info.endpoint}[/]")


@localstack_app.command()
def stop(
    port: int = Port,
    state_dir: Optional[str] = StateDir,
    grace: float = typer.Option(5.0, "--grace", help="Seconds between SIGTERM and SIGKILL."),
):
    """Stop the LocalStack that `dorc localstack start` started (by its recorded PID or container)."""
    from .. import api
    from ..render import console

    t0 = time.monotonic()
    info = api.localstack_stop(port=port, state_dir=state_dir, grace=grace)
    if info is None:
        st = api.localstack_status(port=port, state_dir=state_dir)
        extra = f" ({st.endpoint} answers, but dorc did not start it)" if st.ready else ""
        console().print(f"no LocalStack started by dorc on port {port}{extra}")
        return
    who = _who(info)
    console().print(f"stopped LocalStack at {info.endpoint} ({info.mode} mode, {who}) in {time.monotonic() - t0:.1f} s")


@localstack_app.command()
def status(
    port: int = Port,
    state_dir: Optional[str] = StateDir,
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Also check this URL when dorc did not start one."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
):
    """Is it running, does it answer, which services are up. Exit 0 when it answers, 1 otherwise."""
    from .. import api
    from ..render import console

    st = api.localstack_status(port=port, state_dir=state_dir, endpoint=endpoint)
    if as_json:
        sys.stdout.write(json.dumps(st.to_dict(), indent=2, default=str) + "\n")
        sys.exit(0 if st.ready else 1)
    out = console()
    mark = "[bold green]✓ ready[/]" if st.ready else ("[yellow]running, not answering[/]" if st.running else "[red]✗ not running[/]")
    out.print(f"LocalStack at {st.endpoint}: {mark}" + (f" [dim]({st.note})[/]" if st.note else ""))
    if st.info:
        i = st.info
        who = _who(i)
        up = time.time() - i.started_at
        out.print(f"  {i.mode} mode, {who}, version {i.version}, up {up:.0f} s, state {i.state_dir}")
        if i.log_file:
            out.print(f"  log: {i.log_file}")
    if st.health:
        services = st.health.get("services") or {}
        up_services = sorted(k for k, v in services.items() if v in ("running", "available"))
        if up_services:
            out.print(f"  services: {', '.join(up_services)}")
    sys.exit(0 if st.ready else 1)  # not typer.Exit: main() drops the code app() returns for it


@localstack_app.command()
def logs(
    port: int = Port,
    state_dir: Optional[str] = StateDir,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C to stop)."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many of the last lines."),
):
    """LocalStack's log (the last lines; --follow for more as they come)."""
    from .. import api

    for line in api.localstack_logs(port=port, state_dir=state_dir, follow=follow, lines=lines):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
