"""``dorc init``, ``new`` and ``invoke``: start a config repo and a layer, and run one function."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from .options import ConfigRepo


def init(
    directory: Optional[str] = typer.Argument(None, help="Folder of the new config repo (default: ./pipeline-config, which dorc finds from here)."),
    name: Optional[str] = typer.Option(None, "--name", help="Project name, part of S3 bucket names (default: the folder's name; for ./pipeline-config, the name of the folder holding it)."),
    region: str = typer.Option("eu-west-2", "--region", help="AWS region of the project."),
):
    """Create a config repo: dorc.toml, the universal and infra programs, src/, tests/ and pytest.ini. Never overwrites."""
    from rich.text import Text

    from .. import api
    from ..render import console

    made = api.init_project(directory, name=name, region=region)
    out = console()
    out.print(Text.assemble(("✓ ", "bold green"), "created the dorc config repo ", (str(made.root), "bold"),
                            f" (project {made.project_name})"))
    for path in made.files:
        out.print(Text(f"  {path.relative_to(made.root)}", style="dim"))
    out.print(f"next: cd {made.root} && dorc new INSTANCE LAYER --functions extract,load")


def new(
    instance: str = typer.Argument(..., help="Pipeline instance, e.g. sales."),
    layer: str = typer.Argument(..., help="Layer, e.g. raw."),
    functions: str = typer.Option(..., "--functions", "-f", help="Function names in run order, comma-separated: a,b,c."),
    hands_over_to: Optional[str] = typer.Option(None, "--hands-over-to", help="INSTANCE/LAYER (or a LAYER of this instance) the last function hands over to; it must exist."),
    trigger: Optional[str] = typer.Option(None, "--trigger", help="'cron:0 6 * * ? *' (EventBridge's six fields), s3:BUCKET/PREFIX, or s3:holding/PREFIX for the holding store of every environment."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Create a layer that validates and runs as written: definition, handlers, Pulumi files, a test. Never overwrites."""
    from rich.text import Text

    from .. import api
    from ..project import find_project
    from ..render import console

    project = find_project(config_repo)
    made = api.new_layer(instance, layer, functions, hands_over_to=hands_over_to, trigger=trigger, project=project)
    out = console()
    out.print(Text.assemble(("✓ ", "bold green"), "created ", (f"{instance}/{layer}", "bold")))
    for path in made.files:
        out.print(Text(f"  {project.display_path(path)}", style="dim"))
    out.print(f"next: dorc validate {instance} {layer} && dorc run {instance} {layer} --local")


def invoke(
    instance: str = typer.Argument(..., help="Pipeline instance, e.g. census."),
    layer: str = typer.Argument(..., help="Layer, e.g. processed."),
    function: str = typer.Argument(..., help="Function of that layer, e.g. function2."),
    event: Optional[str] = typer.Option(None, "--event", "-e", help="Event: JSON text or @file.json (default {})."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment whose names and settings to use (default: local)."),
    as_json: bool = typer.Option(False, "--json", help="Print the step as one JSON document on stdout; logs go to stderr."),
    no_iam: bool = typer.Option(False, "--no-iam", help="Do not check the handler's AWS calls against its function's role."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Invoke one function alone, with Lambda's rules only (a non-2xx statusCode is a successful invocation). Exit 0 it returned, 1 it raised."""
    from rich.text import Text

    from .. import api
    from ..describe import format_duration
    from ..project import find_project
    from ..render import TerminalObserver, console, print_import_fix

    project = find_project(config_repo)
    event_json = api.parse_event(event)
    out = console(stderr=as_json)
    step = api.invoke_function(instance, layer, function, event=event_json, env=env, project=project,
                               observer=TerminalObserver(out), iam=not no_iam)
    if as_json:
        sys.stdout.write(json.dumps(step.to_dict(logs=False)) + "\n")
    else:
        where = f"{step.layer} {step.function}"
        if step.succeeded:
            output = step.output
            code = output.get("statusCode", "-") if isinstance(output, dict) else "-"
            out.print(Text.assemble(("✓ ", "bold green"), (where, "bold"), f" returned (statusCode {code})",
                                    (f"  in {format_duration(step.duration_ms)}", "dim")))
            shown = json.dumps(output)
            out.print(Text("output: " + (shown if len(shown) <= 2000 else shown[:2000] + " …")))
        else:
            out.print(Text.assemble(("✗ ", "bold red"), (where, "bold"), " raised",  # the error: printed above
                                    (f" {step.error.type}" if step.error else "", "red"),
                                    (f"  in {format_duration(step.duration_ms)}", "dim")))
            print_import_fix(out, project, step)
    raise typer.Exit(0 if step.succeeded else 1)
