"""A project in words and as a graph: triggers and schedules read aloud, the state machine in one
line, layers in run order, and the model ``dorc graph`` draws (a tree, or Mermaid text), with a
recorded run's statuses and durations on the functions. Pure text; the terminal view is the CLI's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .plan import LayerPlan, TriggerPlan
from .project import Project

# -- durations ---------------------------------------------------------------------------------


def format_duration(ms: float | None) -> str:
    """``4.2 ms``, ``850 ms``, ``1.2 s``, ``2 min 05 s``, ``1 h 02 min``: read at a glance."""
    if ms is None:
        return "-"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    total = int(round(seconds))
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


# -- triggers in words -------------------------------------------------------------------------

_DAY_NAMES = {"SUN": "Sunday", "MON": "Monday", "TUE": "Tuesday", "WED": "Wednesday", "THU": "Thursday",
              "FRI": "Friday", "SAT": "Saturday"}
_DAY_NUMBERS = dict(enumerate(_DAY_NAMES, 1))  # EventBridge: 1 is Sunday


def _day(text: str) -> str | None:
    key = _DAY_NUMBERS.get(int(text)) if text.isdigit() else text.upper()
    return _DAY_NAMES.get(key or "")


def _days(field_: str) -> str | None:
    """``MON`` -> "on Mondays", ``MON-FRI`` -> "Monday to Friday", ``MON,THU`` -> "on Monday and Thursday"."""
    if "-" in field_ and "," not in field_:
        first, last = (_day(p) for p in field_.split("-", 1))
        return f"{first} to {last}" if first and last else None
    names = [_day(p) for p in field_.split(",")]
    if not all(names):
        return None
    if len(names) == 1:
        return f"on {names[0]}s"
    return "on " + ", ".join(names[:-1]) + f" and {names[-1]}"  # type: ignore[arg-type]


def cron_words(expression: str) -> str:
    """The common EventBridge ``cron(...)`` shapes in words ("06:00 UTC daily", "every 15 minutes",
    "06:30 UTC Monday to Friday"); anything else as written, without ``cron(...)``."""
    expr = expression.strip()
    if expr.startswith("cron(") and expr.endswith(")"):
        expr = expr[5:-1].strip()
    fields = expr.split()
    if len(fields) != 6 or fields[5] != "*" or fields[3] != "*":
        return expr
    minute, hour, dom, _, dow, _ = fields
    every_day = dom in ("*", "?") and dow in ("*", "?")
    if every_day and hour == "*":
        if minute in ("*", "0/1", "*/1"):
            return "every minute"
        step = re.fullmatch(r"(?:\*|0)/(\d+)", minute)
        if step:
            return f"every {step.group(1)} minutes"
        if minute.isdigit():
            return f"hourly at minute {int(minute):02d}"
        return expr
    if not minute.isdigit():
        return expr
    step = re.fullmatch(r"(?:\*|0)/(\d+)", hour)
    if step and every_day:
        return f"every {step.group(1)} hours at minute {int(minute):02d}"
    if not hour.isdigit() or int(hour) > 23 or int(minute) > 59:
        return expr
    at = f"{int(hour):02d}:{int(minute):02d} UTC"
    if every_day:
        return f"{at} daily"
    if dom == "?" and dow not in ("*", "?"):
        days = _days(dow)
        return f"{at} {days}" if days else expr
    if dow == "?":
        if dom == "L":
            return f"{at} on the last day of each month"
        if dom.isdigit():
            return f"{at} on day {int(dom)} of each month"
    return expr


def trigger_words(trigger: TriggerPlan) -> str:
    """"cron: 06:00 UTC daily", "S3: objects created under s3://bucket/inbox/"."""
    if trigger.kind == "cron" or trigger.schedule_expression:
        return f"cron: {cron_words(trigger.schedule_expression or '')}"
    detail = (trigger.event_pattern or {}).get("detail", {})
    buckets = detail.get("bucket", {}).get("name", [])
    prefixes = [p.get("prefix", "") for p in detail.get("object", {}).get("key", []) if isinstance(p, dict)]
    where = " or ".join(f"s3://{b}/{p}" for b in buckets for p in (prefixes or [""]))
    return f"S3: objects created {'under' if prefixes else 'in'} {where}"


# -- the state machine in one line -------------------------------------------------------------

def asl_summary(asl: dict[str, Any]) -> str:
    """"7 states: function1 → function2, contract checks, hands over to census/processed": what a
    reader wants from the definition; ``dorc plan --asl`` shows all of it."""
    states: dict[str, Any] = asl.get("States") or {}
    order: list[str] = []
    todo = [asl.get("StartAt")]
    while todo:  # the states in the order a run meets them
        name = todo.pop(0)
        if name is None or name in order or name not in states:
            continue
        order.append(name)
        state = states[name]
        todo += [state.get("Next")] + [c.get("Next") for c in state.get("Choices", [])] + [state.get("Default")]
    tasks, handovers, checks = [], [], False
    for name in order:
        state = states[name]
        resource = str(state.get("Resource", ""))
        if state.get("Type") == "Task" and ":states:startExecution" in resource:
            handovers.append(name.removeprefix("start ").strip())
        elif state.get("Type") == "Task":
            tasks.append(name)
        elif state.get("Type") in ("Choice", "Fail"):
            checks = True
    parts = [" → ".join(tasks) if tasks else "no functions"]
    if checks:
        parts.append("contract checks")
    parts += [f"hands over to {h}" for h in handovers]
    return f"{len(states)} state{'s' if len(states) != 1 else ''}: " + ", ".join(parts)


# -- run order ---------------------------------------------------------------------------------

def handover_target(plan: LayerPlan) -> str | None:
    return f"{plan.handover.instance}/{plan.handover.layer}" if plan.handover else None


def run_order(plans: dict[str, LayerPlan]) -> list[str]:
    """Layer keys in run order: each layer no other one hands over to (by name), followed by the
    chain it hands over to; layers only reachable through a cycle last, by name."""
    targets = {handover_target(p) for p in plans.values()}
    order: list[str] = []
    for start in sorted(k for k in plans if k not in targets) + sorted(plans):
        key: str | None = start
        while key in plans and key not in order:
            order.append(key)
            key = handover_target(plans[key])
    return order


# -- the graph ---------------------------------------------------------------------------------

@dataclass
class FunctionNode:
    key: str
    deployed_name: str
    status: str | None = None  # with a run: "succeeded", "failed", "not run"
    duration_ms: float | None = None
    error: str | None = None  # the error type


@dataclass
class LayerNode:
    key: str  # "census/raw"
    description: str
    state_machine: str
    functions: list[FunctionNode]
    handover: str | None
    triggers: list[tuple[str, str]]  # (name, words)


@dataclass
class InstanceGraph:
    name: str
    layers: list[LayerNode]  # in run order
    invalid: list[tuple[str, int]] = field(default_factory=list)  # (layer, problems): see dorc validate


@dataclass
class ProjectGraph:
    project: str
    instances: list[InstanceGraph]
    run: dict[str, Any] | None = None  # the run record shown on the nodes


def project_graph(project: Project, instance: str | None = None, env: str = "local",
                  run: dict[str, Any] | None = None) -> ProjectGraph:
    """Every layer of the instance (or of the project), planned, in run order; a layer that does
    not plan is listed as invalid. ``run``: a run record whose steps mark the functions."""
    from .errors import DefinitionError
    from .planning import plan_layer

    steps: dict[tuple[str, str], dict[str, Any]] = {}
    for step in (run or {}).get("steps", []):
        steps[(step.get("layer", ""), step.get("function", ""))] = step  # a retried step: the last attempt
    instances = []
    for inst in ([instance] if instance else project.instances()):
        plans: dict[str, LayerPlan] = {}
        invalid = []
        for lay in project.layers(inst):
            try:
                plans[f"{inst}/{lay}"] = plan_layer(project, inst, lay, env)
            except DefinitionError as exc:
                invalid.append((lay, len(exc.problems)))
        layers = []
        for key in run_order(plans):
            plan = plans[key]
            functions = []
            for fn in plan.functions:
                node = FunctionNode(fn.key, fn.name)
                if run is not None:
                    step = steps.get((key, fn.key))
                    if step is None:
                        node.status = "not run"
                    else:
                        node.status = str(step.get("status", ""))
                        node.duration_ms = step.get("duration_ms")
                        node.error = (step.get("error") or {}).get("type")
                functions.append(node)
            layers.append(LayerNode(key, plan.description, plan.state_machine_name, functions,
                                    handover_target(plan), [(t.key, trigger_words(t)) for t in plan.triggers]))
        instances.append(InstanceGraph(inst, layers, invalid))
    return ProjectGraph(project.settings.project, instances, run)


# -- Mermaid -----------------------------------------------------------------------------------

def _label(text: str) -> str:
    """A quoted Mermaid label: quotes and the characters Mermaid reads as markup as its entity
    codes (``#quot;``; ``#`` itself too, so that user text never reads as one)."""
    for char, code in (("#", "#35;"), ("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return f'"{text}"'


class _Ids:
    """Safe, unique Mermaid ids (letters, digits, underscores) for arbitrary names."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, ...], str] = {}

    def __call__(self, *parts: str) -> str:
        if parts not in self._ids:
            base = "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_") or "x" for p in parts)
            ident, n = base, 1
            while ident in self._ids.values():
                n += 1
                ident = f"{base}_{n}"
            self._ids[parts] = ident
        return self._ids[parts]


_STATUS_CLASSES = {"succeeded": "succeeded", "failed": "failed", "not run": "notrun", "cancelled": "failed"}


def mermaid(graph: ProjectGraph) -> str:
    """The graph as a Mermaid ``flowchart``: a subgraph per layer holding its functions in run
    order, triggers pointing at the first function, hand-overs from the last function of a layer
    to the first of the next. Every label quoted, every id made of letters, digits and ``_``."""
    ids = _Ids()
    lines = ["flowchart TD"]
    edges: list[str] = []
    classes: dict[str, list[str]] = {}
    first_fn: dict[str, str] = {}
    last_fn: dict[str, str] = {}
    for inst in graph.instances:
        for layer in inst.layers:
            lines.append(f"  subgraph {ids('layer', layer.key)}[{_label(layer.key + ' · ' + layer.state_machine)}]")
            lines.append("    direction TB")
            previous = None
            for i, fn in enumerate(layer.functions, 1):
                node = ids("fn", layer.key, fn.key)
                text = f"{i}. {fn.key}"
                if fn.status:
                    text += f" · {fn.status}"
                    if fn.error:
                        text += f" ({fn.error})"
                    if fn.duration_ms is not None:
                        text += f" · {format_duration(fn.duration_ms)}"
                    classes.setdefault(_STATUS_CLASSES.get(fn.status, "notrun"), []).append(node)
                lines.append(f"    {node}[{_label(text)}]")
                if previous:
                    edges.append(f"  {previous} --> {node}")
                previous = node
            lines.append("  end")
            if layer.functions:
                first_fn[layer.key] = ids("fn", layer.key, layer.functions[0].key)
                last_fn[layer.key] = previous  # type: ignore[assignment]
            for name, words in layer.triggers:
                node = ids("trigger", layer.key, name)
                lines.append(f"  {node}([{_label(f'{name}: {words}')}])")
                edges.append(f"  {node} -.-> {first_fn.get(layer.key) or ids('layer', layer.key)}")
    for inst in graph.instances:
        for layer in inst.layers:
            if not layer.handover:
                continue
            source = last_fn.get(layer.key) or ids("layer", layer.key)
            target = first_fn.get(layer.handover)
            if target is None:  # a layer outside the graph (another instance): a node of its own
                target = ids("layer", layer.handover)
                lines.append(f"  {target}[{_label(layer.handover)}]")
                first_fn[layer.handover] = target
            edges.append(f"  {source} -->|{_label('hands over')}| {target}")
    lines += edges
    styles = {"succeeded": "fill:#d4f7d4,stroke:#2e7d32", "failed": "fill:#fbd5d5,stroke:#c62828",
              "notrun": "fill:#eeeeee,stroke:#9e9e9e,stroke-dasharray:4"}
    for cls, nodes in classes.items():
        lines.append(f"  classDef {cls} {styles[cls]}")
        lines.append(f"  class {','.join(nodes)} {cls}")
    return "\n".join(lines) + "\n"
