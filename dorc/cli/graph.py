"""``dorc graph``: layers in run order, their functions, hand-overs and triggers, as a terminal
tree or as Mermaid text; a recorded run's statuses and durations on the functions."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from .options import ConfigRepo

_MARKS = {"succeeded": ("✓", "green"), "failed": ("✗", "red"), "cancelled": ("✗", "yellow"), "not run": ("·", "dim")}


def graph(
    instance: Optional[str] = typer.Argument(None, help="Pipeline instance, e.g. census. Omitted: every instance (or the run's)."),
    fmt: str = typer.Option("tree", "--format", "-f", help="tree (the terminal) or mermaid (a Mermaid flowchart for docs)."),
    run: Optional[str] = typer.Option(None, "--run", help="Show this recorded run's statuses and durations: last, or a run's id (dorc runs)."),
    env: str = typer.Option("local", "--env", help="Environment for the deployed names."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Draw a pipeline: layers in run order, functions, hand-overs and triggers."""
    from .. import api
    from ..errors import DorcError

    if fmt not in ("tree", "mermaid"):
        raise DorcError(f"unknown --format {fmt!r}", hint="use --format tree or --format mermaid")
    model = api.pipeline_graph(instance, env=env, run=run, config_repo=config_repo)
    if fmt == "mermaid":
        from ..describe import mermaid

        sys.stdout.write(mermaid(model))
        return
    print_tree(model)


def print_tree(model) -> None:
    from rich.markup import escape
    from rich.text import Text
    from rich.tree import Tree

    from ..describe import format_duration
    from ..records import short_id
    from ..render import console

    out = console()
    run = model.run
    title = Text(model.project, style="bold")
    if run is not None:
        status = str(run.get("status", ""))
        title.append(f"  run {short_id(run)} · {status} · {run.get('target')} · "
                     f"{format_duration(run.get('duration_ms'))}", style="green" if status == "succeeded" else "red")
    root = Tree(title)
    for inst in model.instances:
        t_inst = root.add(Text(inst.name, style="bold cyan"))
        layers = {layer.key: layer for layer in inst.layers}
        shown: set[str] = set()

        def add_layer(parent, layer, via_handover: bool) -> None:
            shown.add(layer.key)
            label = Text.assemble(("→ " if via_handover else "", "cyan"), (layer.key, "bold"),
                                  f"  {layer.description}" if layer.description not in ("", layer.key) else "",
                                  (f"  ({layer.state_machine})", "dim"))
            node = parent.add(label)
            for name, words in layer.triggers:
                node.add(Text.assemble(("⏰ ", ""), (name, "bold"), f": {words}"))
            for i, fn in enumerate(layer.functions, 1):
                text = Text(f"{i}. {fn.key}")
                if fn.status:
                    mark, style = _MARKS.get(fn.status, ("?", ""))
                    text.append(f"  {mark} {fn.status}", style=style)
                    if fn.error:
                        text.append(f" ({fn.error})", style=style)
                    if fn.duration_ms is not None:
                        text.append(f"  {format_duration(fn.duration_ms)}", style="dim")
                else:
                    text.append(f"  {fn.deployed_name}", style="dim")
                node.add(text)
            target = layer.handover
            if target is None:
                return
            if target in layers and target not in shown:
                add_layer(node, layers[target], True)
            else:
                where = "above" if target in layers else "another instance"
                node.add(Text.assemble(("→ ", "cyan"), (target, "bold"), (f"  (hands over; see {where})", "dim")))

        for layer in inst.layers:
            if layer.key not in shown:
                add_layer(t_inst, layer, False)
        for lay, count in inst.invalid:
            t_inst.add(f"[red]{escape(lay)}: invalid ({count} problem(s); run dorc validate)[/]")
    out.print(root, soft_wrap=False)  # long labels wrap inside the tree instead of being cut
