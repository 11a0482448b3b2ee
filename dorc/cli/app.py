"""The ``dorc`` command: parse, call the library (``dorc.api``), render. No logic lives here.

Exit codes: 0 success; 1 the pipeline ran and failed; 2 invalid definition, project, command
line or a missing tool (nothing ran); 3 an internal error in dorc (a bug: one line, and the
traceback with ``DORC_DEBUG=1``); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import gc
import os
import sys

import typer

from ..errors import DorcError, FileSystemError
from . import deploy, doctor, graph, history, localstack, pipelines, plan, resume, scaffold, sim, store

app = typer.Typer(
    help="Run serverless data pipelines locally, in LocalStack and in AWS from one definition.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
# Every command module only defines its commands; they are all put on ``app`` here, one way.
app.command()(pipelines.run)
app.command()(pipelines.validate)
app.command("list")(pipelines.list_)
app.command()(pipelines.runs)
app.command()(resume.rerun)
app.command()(history.logs)
app.command()(scaffold.init)
app.command()(scaffold.new)
app.command()(scaffold.invoke)
app.command()(plan.plan)
app.command()(graph.graph)
app.command()(deploy.deploy)
app.command()(deploy.destroy)
app.command()(deploy.promote)
app.command()(doctor.doctor)
app.add_typer(store.store_app, name="store")
app.add_typer(localstack.localstack_app, name="localstack")
app.add_typer(sim.sim_app, name="sim")


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        sys.stdout.write(f"dorc {__version__} (Python {sys.version.split()[0]})\n")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print dorc's version and exit.")) -> None:
    """Run serverless data pipelines locally, in LocalStack and in AWS from one definition."""


#: What an option's value is, in --help (other value options show their name in capitals).
_VALUE_NAMES = {"config_repo": "DIR", "event": "JSON|@FILE", "timeout": "SECONDS", "endpoint": "URL",
                "limit": "N", "env": "ENV"}


def command():
    """``app`` as a click command whose --help reads ``--event JSON|@FILE``, ``--quiet`` and
    ``dorc run INSTANCE [LAYER]``: no ``<str>``/``<bool>`` type placeholders on every line."""
    import typer.core
    import typer.main

    root = typer.main.get_command(app)
    todo = [root]
    while todo:
        cmd = todo.pop()
        todo += list(getattr(cmd, "commands", {}).values())
        cmd.get_help_option = (lambda original: lambda ctx: _untyped(original(ctx)))(cmd.get_help_option)
        for param in cmd.params:
            if isinstance(param, typer.core.TyperArgument):
                name = (param.metavar or param.name or "").upper()
                param.metavar = name
                param.display_type_rich = lambda ctx: None
                param._usage_display_name = (lambda p: lambda: p.metavar if p.required else f"[{p.metavar}]")(param)
            elif getattr(param, "is_flag", False) or getattr(param, "count", False):
                param.display_type_rich = lambda ctx: None
            else:
                shown = param.metavar or _VALUE_NAMES.get(param.name or "", (param.name or "value").upper())
                param.display_type_rich = (lambda text: lambda ctx: text)(shown)
    return root


def _untyped(option):
    """--help, made by click when help is asked for: a flag, no type shown."""
    if option is not None:
        option.display_type_rich = lambda ctx: None
    return option


INTERNAL_ERROR = 3
DEBUG_VAR = "DORC_DEBUG"


def main() -> None:
    """Console-script entry point: user mistakes become one message and exit code 2; a file the
    machine refuses (permissions, a full disk) one message naming it; anything else is a bug in
    dorc: one line asking for a report, exit 3, the traceback only with ``DORC_DEBUG=1``."""
    try:
        code = command()(standalone_mode=False)  # returns the code of a typer.Exit instead of raising it
    except DorcError as exc:
        from ..render import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if _is_usage_error(exc):  # bad command line: click's own message, exit 2
            exc.show()  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", 2) or 2)
        if isinstance(exc, OSError) and exc.filename:  # the machine refused a file: say which, and the fix
            from ..render import print_error

            error = FileSystemError.from_os_error(exc)
            print_error(error)
            sys.exit(error.exit_code)
        if os.environ.get(DEBUG_VAR, "") not in ("", "0"):
            raise
        _internal_error(exc)
        sys.exit(INTERNAL_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


def _internal_error(exc: Exception) -> None:
    """A bug in dorc, not the user's mistake: say so in one line, where it broke, and how to see more."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = next((f" at {os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames)
                  if os.sep + "dorc" in f.filename), "")
    message = str(exc).splitlines()[0] if str(exc) else ""
    sys.stderr.write(f"internal error in dorc: {type(exc).__name__}{': ' + message if message else ''}{where}\n"
                     f"  this is a bug in dorc, please report it with the command you ran; "
                     f"{DEBUG_VAR}=1 shows the traceback\n")


def console_main() -> None:
    """The ``dorc`` executable: ``main()``, then a faster exit.

    What a run loaded (moto, botocore's service models) lives until the process ends; the
    interpreter's last garbage collections would walk all of it, about 0.3 s of a 1.5 s local run.
    Freezing moves it out of their way; files are still flushed and closed as usual. Only for the
    process entry point: ``main()`` called in-process (tests) keeps collecting normally.
    """
    try:
        main()
    finally:
        gc.freeze()


def _is_usage_error(exc: Exception) -> bool:
    """typer ships its own copy of click (``typer._click``) and may also use click itself."""
    classes = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            classes.append(getattr(__import__(module, fromlist=["ClickException"]), "ClickException"))
        except (ImportError, AttributeError):
            pass
    return any(isinstance(exc, cls) for cls in classes)

if __name__ == "__main__":
    console_main()
