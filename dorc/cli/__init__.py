"""The ``dorc`` command line (typer): ``app`` puts every command module's commands together.

The console script is ``console_main`` (``dorc.cli.entry``), which imports typer only for the
command lines that need it; ``app`` and ``main`` load on first use.
"""

from .entry import console_main  # noqa: F401


def __getattr__(name: str):
    if name in ("app", "main"):
        from importlib import import_module

        module = import_module(".app", __name__)

        # the Typer app, not the module of the same name that importing it put here
        globals().update(app=module.app, main=module.main)
        return globals()[name]
    raise AttributeError(f"module 'dorc.cli' has no attribute {name!r}")
