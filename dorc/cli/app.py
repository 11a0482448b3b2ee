"""The ``dorc`` command: parse, call the library (``dorc.api``), render. No logic lives here.
Exit codes and failures: ``dorc.cli.failures``."""

from __future__ import annotations

import sys

import typer

from . import daemon, deploy, doctor, graph, history, localstack, pipelines, plan, resume, scaffold, sim, store
from .failures import run_guarded

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
app.add_typer(daemon.daemon_app, name="daemon")


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

    from .lean import lean_help, lean_values

    root = typer.main.get_command(app)
    todo = [root]
    while todo:
        cmd = todo.pop()
        todo += list(getattr(cmd, "commands", {}).values())
        cmd.get_help_option = (lambda original: lambda ctx: _untyped(original(ctx)))(cmd.get_help_option)
        cmd.format_help = lean_help(cmd.format_help)
        for param in cmd.params:
            lean_values(param)
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
        from .lean import lean_values

        option.display_type_rich = lambda ctx: None
        lean_values(option)
    return option


def main() -> None:
    """Parses the command line and runs the command, failures said as ``dorc.cli.failures.run_guarded``
    says them; a command line click refuses: click's own message, exit 2."""
    def call():
        try:
            return command()(standalone_mode=False)  # returns the code of a typer.Exit instead of raising it
        except typer.Exit as exc:
            return exc.exit_code
        except typer.Abort:
            sys.stderr.write("aborted\n")
            return 1
        except Exception as exc:
            if _is_usage_error(exc):
                exc.show()  # type: ignore[attr-defined]
                return getattr(exc, "exit_code", 2) or 2
            raise

    run_guarded(call)


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
    main()
