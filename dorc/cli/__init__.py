"""The ``dorc`` command line (typer): ``app`` puts every command module's commands together."""

from .app import app, console_main, main  # noqa: F401  (the console script is dorc.cli:console_main)
