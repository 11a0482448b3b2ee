"""``dorc doctor``: what this machine supports (runtimes, sandbox, LocalStack, Docker, Pulumi),
each missing thing with how to get it.

Exit codes: 0 always (doctor reports, it does not fail); with ``--strict``, 1 when something is
missing.
"""

from __future__ import annotations

import json
import sys

import typer

GROUPS = {"runtimes": "Lambda runtimes", "sandbox": "Sandbox", "localstack": "LocalStack", "docker": "Docker",
          "pulumi": "Pulumi"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when something is missing."),
):
    """What this machine supports for local, LocalStack and AWS runs, and how to get what is missing."""
    from rich.text import Text

    from ..doctor import checks
    from ..render import console, say

    found = checks()
    missing = [c for c in found if not c.ok]
    if as_json:
        doc = {"ok": not missing, "checks": [c.to_dict() for c in found]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        out = console()
        width = max(len(c.name) for c in found) + 2
        group = None
        for check in found:
            if check.group != group:
                group = check.group
                out.print(Text(GROUPS.get(group, group), style="bold"))
            mark = Text("  ✓ ", style="green") if check.ok else Text("  ✗ ", style="red")
            say(out, mark + Text(check.name.ljust(width)), check.detail)
            if check.hint:
                say(out, Text(" " * (4 + width) + "fix: ", style="yellow"), check.hint)
        out.print(Text("everything is there" if not missing else f"{len(missing)} missing", style="dim"))
    sys.exit(1 if strict and missing else 0)  # not typer.Exit: main() drops the code app() returns for it
