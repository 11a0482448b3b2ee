"""Starting a run part-way: at one function, with the input it received in a recorded run
(``dorc run … --from FUNCTION [--run ID]``), and re-running a recorded run (``dorc rerun``).

The local target starts the layer's very state machine at that function's Task state, so the
rest of the chain, its contract checks and its hand-overs run exactly as deployed. Step
Functions cannot start an execution mid-way, so LocalStack runs are refused (``--local``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DorcError
from .plan import LayerPlan
from .project import Project
from .records import payload_not_kept, short_id


@dataclass
class ResumePoint:
    """Where a resumed run starts and with what."""

    layer: str  # "instance/layer" of the function
    function: str
    event_json: bytes
    record: dict[str, Any] | None = None  # the run whose step gave the input (None: --event given)
    changed: list[str] = field(default_factory=list)  # functions to run whose code changed since that run

    @property
    def link(self) -> dict[str, Any]:
        """What the new run's record keeps: ``"resumed_from": {"run", "function", "layer"}``."""
        return {"run": self.record.get("id") if self.record else None, "function": self.function, "layer": self.layer}


def find_run(project: Project, ref: str) -> dict[str, Any]:
    """The recorded run ``ref`` names: ``last``, its id or the first characters of it (as
    ``dorc runs`` shows it), or its record's file name (with or without ``.json``)."""
    from .records import find_record, read_records

    ref = (ref or "").strip()
    record = find_record(project.state_dir, ref) if ref else None
    if record is not None:
        return record
    if ref == "last" or not read_records(project.state_dir):
        raise DorcError("no runs recorded yet", hint="run a pipeline first: dorc run INSTANCE LAYER --local")
    raise DorcError(f"no recorded run {ref!r}", hint="dorc runs lists the runs and their ids; or use `last`")


def function_of(plan: LayerPlan, function: str, others: dict[str, LayerPlan] | None = None) -> str:
    """``function``'s key in ``plan``, or an error listing the layer's functions (and pointing to
    another layer of the run that has one of that name)."""
    try:
        return plan.function(function).key
    except KeyError:
        pass
    names = ", ".join(f.key for f in plan.functions)
    elsewhere = [p.key for p in (others or {}).values() if p.key != plan.key and any(f.key == function for f in p.functions)]
    hint = (f"{function} is a function of {elsewhere[0]}: dorc run {elsewhere[0].replace('/', ' ')} --local --from {function}"
            if elsewhere else f"--from takes one of {names}")
    raise DorcError(f"{plan.key} has no function {function!r} (its functions, in run order: {names})", hint=hint)


def resume_point(project: Project, plans: dict[str, LayerPlan], key: str, function: str, *,
                 run: str | dict[str, Any] | None = None, event_json: bytes | None = None) -> ResumePoint:
    """Where ``dorc run INSTANCE LAYER --from FUNCTION`` starts: ``function`` of layer ``key``,
    with ``event_json`` when given, else with the input it received in run ``run`` (a reference
    for ``find_run``, or a record) or in the newest recorded run in which layer ``key`` ran
    (started there or handed over to)."""
    from .records import read_records

    fn = function_of(plans[key], function, plans)
    instance, layer = key.split("/")
    record = None
    if run is not None:
        record = run if isinstance(run, dict) else find_run(project, run)
    if event_json is not None:  # the input is given (a rerun of a resumed run: that run's input)
        return ResumePoint(key, fn, event_json, record)
    if record is None:
        ran_here = [r for r in read_records(project.state_dir) if any(s.get("layer") == key for s in r.get("steps", []))]
        if not ran_here:
            raise DorcError(f"no recorded run of {key} to resume from: --from {fn} starts it with the input "
                            f"{fn} received in the last run",
                            hint=f"run it first: dorc run {instance} {layer} --local (or give the input: --event JSON)")
        record = ran_here[-1]
    steps = [s for s in record.get("steps", []) if s.get("layer") == key]
    which = f"run {short_id(record)} ({record.get('pipeline')}/{record.get('layer')}, {record.get('started_at')})"
    if not steps:
        layers = sorted({s.get("layer") for s in record.get("steps", [])}) or ["no layer"]
        raise DorcError(f"{which} did not run {key} (it ran {', '.join(layers)})",
                        hint=f"pick a run of {key} (dorc runs {instance}), or drop --run to take its last run")
    step = next((s for s in steps if s.get("function") == fn), None)
    if step is None:
        reached = ", ".join(s.get("function", "?") for s in steps)
        raise DorcError(f"{which} never reached {key} {fn}: it reached {reached}",
                        hint=f"resume at one of those (--from {steps[-1].get('function')}), run the layer whole, "
                             "or pick an earlier run with --run ID (dorc runs)")
    why = payload_not_kept(record, step, "input")
    if why is not None:  # the record has its size and sha256 only
        raise DorcError(f"{which} did not keep the input {key} {fn} received ({why}), so --from {fn} cannot "
                        "resume with it",
                        hint=f"give the input with --event @FILE, or raise record_payload_limit_kb under [runs] in "
                             f"dorc.toml above its size and run {instance} {layer} again, then resume from that run")
    point = ResumePoint(key, fn, json.dumps(step.get("input")).encode(), record)
    point.changed = changed_since(record, plans, key, fn)
    return point


def changed_since(record: dict[str, Any], plans: dict[str, LayerPlan], key: str, function: str) -> list[str]:
    """The functions a run resumed at ``key``/``function`` will run whose sources differ from
    what ``record`` ran (it runs the current code: the caller says so)."""
    from .package import source_digest

    ran = record.get("sources") or {}
    out = []
    for plan in plans.values():
        names = [f.key for f in plan.functions]
        todo = names[names.index(function):] if plan.key == key else names
        for fn in plan.functions:
            old = (ran.get(plan.key) or {}).get(fn.key)
            if fn.key in todo and old is not None and old != source_digest(Path(fn.source_dir)):
                out.append(fn.key if plan.key == key else f"{plan.key} {fn.key}")
    return out


def functions_run(plan: LayerPlan, function: str) -> list[str]:
    """The functions of ``plan`` a run started at ``function`` runs: it and those after it."""
    names = [f.key for f in plan.functions]
    return names[names.index(function):]


@dataclass
class Rerun:
    """What ``dorc rerun`` starts again: the recorded run's pipeline, layer, target, env and
    first event, at the function it started at (or ``start_at``, with that step's input)."""

    instance: str
    layer: str | None  # None: the run started at every start layer of the instance
    target: str
    env: str
    event_json: bytes
    start_at: str | None
    record: dict[str, Any]


def rerun_of(project: Project, ref: str, start_at: str | None = None) -> Rerun:
    """What ``dorc rerun ref [--from start_at]`` runs; with ``start_at``, the layer of the run's
    step of that name (the start layer when the run has none: the resume then says so)."""
    record = find_run(project, ref)
    instance, layer = record.get("pipeline"), record.get("layer")
    if not instance or not layer:
        raise DorcError(f"run {short_id(record)} names no pipeline and layer", hint="pick another run (dorc runs)")
    steps = record.get("steps", [])
    if "event" in record:
        event = record["event"]
    else:  # a record from before the first event was kept: the first step's input was that event
        event = steps[0].get("input") if steps else {}
    resumed = record.get("resumed_from") or {}
    if start_at is None:  # the same run again: a resumed run resumes at the same function again
        return Rerun(instance, None if record.get("whole_instance") else layer, record.get("target", "local"),
                     record.get("env", "local"), json.dumps(event).encode(), resumed.get("function"), record)
    step_layers = [s.get("layer") for s in steps if s.get("function") == start_at]
    key = step_layers[0] if step_layers and "/" in str(step_layers[0]) else f"{instance}/{layer}"
    inst, lay = key.split("/")
    return Rerun(inst, lay, record.get("target", "local"), record.get("env", "local"), b"", start_at, record)
