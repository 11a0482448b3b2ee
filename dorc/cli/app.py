"""The ``dorc`` command: parse, call the library (``dorc.api``), render. No logic lives here.

Exit codes: 0 success; 1 the pipeline ran and failed; 2 invalid definition, project, command
line or a missing tool (nothing ran).
"""

from __future__ import annotations

import gc
import sys

import typer

from ..errors import DorcError
from . import deploy, localstack, pipelines, plan, store

app = typer.Typer(
    help="Run serverless data pipelines in-process, in LocalStack and in AWS from one definition.",
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
app.command()(plan.plan)
app.command()(deploy.deploy)
app.command()(deploy.destroy)
app.command()(deploy.promote)
app.add_typer(store.store_app, name="store")
app.add_typer(localstack.localstack_app, name="localstack")


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        sys.stdout.write(f"dorc {__version__} (Python {sys.version.split()[0]})\n")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print dorc's version and exit.")) -> None:
    """Run serverless data pipelines in-process, in LocalStack and in AWS from one definition."""


def main() -> None:
    """Console-script entry point: user mistakes become one message and exit code 2."""
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit instead of raising it
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
        raise
    sys.exit(code if isinstance(code, int) else 0)


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
