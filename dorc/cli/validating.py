"""``dorc validate``'s work and output, without typer: the typer command (``dorc.cli.pipelines``)
and the command line read by ``dorc.cli.fast`` both run it."""

from __future__ import annotations

import os
import sys

from ..errors import DorcError, Problem


def validate_and_show(instance: str | None, layer: str | None, env: str | None, config_repo: str | None) -> int:
    """Every layer in scope, valid or with its problems listed; the exit code: 0 valid, 2 invalid."""
    from ..planning import validate  # dorc.api's validate, without the rest of dorc.api
    from ..project import find_project

    results = validate(find_project(config_repo), instance, layer, env)
    if not results:
        raise DorcError("no pipelines found", hint="add src/<instance>/<layer>/__main__.py under the pipeline-config folder")
    if not _plain(results):
        _show(results)
    else:  # what rich would write here, without importing it (about 25 ms of the command)
        lines = []
        for key, problems in results.items():
            lines.append(f"✗ {key}: {len(problems)} problem(s)" if problems else f"✓ {key} is valid")
            lines += [f"  ✗ {p}" for p in problems]
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    return 2 if any(results.values()) else 0


def _show(results: dict[str, list[Problem]]) -> None:
    from rich.text import Text

    from ..render import console, print_problem

    out = console()
    for key, problems in results.items():
        if problems:
            out.print(Text.assemble(("✗ ", "bold red"), (key, "bold"), f": {len(problems)} problem(s)"))
            for p in problems:
                print_problem(out, p)
        else:
            out.print(Text.assemble(("✓ ", "bold green"), (key, "bold"), " is valid"))


def _plain(results: dict[str, list[Problem]]) -> bool:
    """Whether rich would write the lines to stdout as they are: not a terminal (by rich's own
    signs), no width to wrap at (``COLUMNS``), and text with no tab or control character for rich
    to expand or drop. Anything less clear-cut is left to rich."""
    if any(var in os.environ for var in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")) or "IPython" in sys.modules:
        return False
    try:
        if sys.stdout is None or sys.stdout.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    texts = [key for key in results] + [str(p) for problems in results.values() for p in problems]
    return all(text.replace("\n", "").isprintable() for text in texts)
