"""The library API the CLI and users' tests call: definition -> plan -> target -> RunResult."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import DefinitionError, DorcError, Problem
from .loader import LoadedPipeline, load_pipeline
from .plan import LOCAL_ACCOUNT_ID, LayerPlan, build_plan, plan_problems
from .project import LOCAL_ENVS, Project, find_project
from .result import RunResult
from .import_check import check_imports
from .validate import check_definition

TARGETS = ("local", "localstack")


def known_layers(project: Project) -> set[str]:
    return {f"{i}/{l}" for i in project.instances() for l in project.layers(i)}


def load_layer(project: Project, instance: str, layer: str, env: str) -> tuple[LoadedPipeline, list[Problem]]:
    """Load and check one layer; problems are returned, not raised, so they can all be listed."""
    loaded = load_pipeline(project, instance, layer, env)
    problems = check_definition(loaded, known_layers(project))
    return loaded, problems


def plan_layer(project: Project, instance: str, layer: str, env: str = "local", *,
               account_id: str = LOCAL_ACCOUNT_ID) -> LayerPlan:
    """The plan of one valid layer, or ``DefinitionError`` listing every problem."""
    loaded, problems = load_layer(project, instance, layer, env)
    if problems:
        raise DefinitionError(problems)
    plan = build_plan(loaded, account_id=account_id)
    problems = plan_problems(plan)
    if problems:
        raise DefinitionError(problems)
    return plan


def validate(project: Project, instance: str | None = None, layer: str | None = None,
             env: str | None = None) -> dict[str, list[Problem]]:
    """Every layer in scope -> its problems (empty list when valid).

    ``env`` None (the CLI's default): the definition as a whole, loaded and checked in every
    environment it will meet (``environments``), since a name that fits ``-local`` may not fit
    ``-preprod``. A given ``env``: that environment only. Problems that do not depend on the
    environment are listed once; a broken AWS limit names the environment(s)."""
    out: dict[str, list[Problem]] = {}
    instances = [instance] if instance else project.instances()
    known = known_layers(project)
    for inst in instances:
        for lay in ([layer] if layer else project.layers(inst)):
            project.main_file(inst, lay)  # a layer that does not exist is the command's mistake, not a problem
            envs = environments(project, inst, lay) if env is None else [env]
            out[f"{inst}/{lay}"] = _layer_problems(project, inst, lay, envs, known)
    return out


def environments(project: Project, instance: str, layer: str) -> list[str]:
    """``local``, ``localstack``, then each environment with a ``Pulumi.<env>.yaml`` in the layer's
    folder or in ``infra/`` (every deployed environment has an ``infra-<env>`` stack)."""
    found: set[str] = set()
    for folder in (project.layer_dir(instance, layer), project.root / "infra"):
        if folder.is_dir():
            found.update(f.name[len("Pulumi."):-len(".yaml")] for f in folder.glob("Pulumi.*.yaml"))
    return [*LOCAL_ENVS, *sorted(found - set(LOCAL_ENVS))]


def _layer_problems(project: Project, instance: str, layer: str, envs: list[str], known: set[str]) -> list[Problem]:
    definition: list[Problem] = []  # the same in every environment: listed once
    imports: list[Problem] = []
    limits: dict[tuple, tuple[Problem, list[str]]] = {}  # one AWS limit broken in one or more envs
    main_rel = project.display_path(project.main_file(instance, layer))
    for env in envs:
        try:
            loaded = load_pipeline(project, instance, layer, env)
        except DefinitionError as exc:
            _add_new(definition, exc.problems)
            continue
        except DorcError as exc:  # no Pulumi.<env>.yaml, a setting missing for this env
            _add_new(definition, [Problem(main_rel, f"environment {env!r}: {exc.message}"
                                                    + (f"; fix: {exc.hint}" if exc.hint else ""))])
            continue
        _add_new(definition, check_definition(loaded, known))
        _add_new(imports, check_imports(loaded))
        try:  # the AWS limits too, when the chain is sound enough to name things
            found = plan_problems(build_plan(loaded))
        except Exception:
            found = []
        for p in found:
            key = (p.function, _env_neutral(p.message, env))
            if key in limits:
                limits[key][1].append(env)
            else:
                limits[key] = (Problem(project.display_path(Path(p.file)), p.message, p.function), [env])
    named = []
    for p, envs_broken in limits.values():
        where = f"environment {envs_broken[0]!r}"
        if len(envs_broken) > 1:
            where += f"; also broken in {', '.join(map(repr, envs_broken[1:]))}"
        named.append(Problem(p.file, f"{p.message} ({where})", p.function))
    return definition + imports + named


def _add_new(into: list[Problem], problems: list[Problem]) -> None:
    into.extend(p for p in problems if p not in into)


def _env_neutral(message: str, env: str) -> str:
    """The message with the environment's name and the numbers it changes taken out."""
    import re

    return re.sub(r"\d+", "#", re.sub(rf"-{re.escape(env)}\b", "-<env>", message))


def reachable_plans(project: Project, start_keys: list[str], env: str, *,
                    account_id: str = LOCAL_ACCOUNT_ID,
                    planned: dict[str, LayerPlan] | None = None) -> dict[str, LayerPlan]:
    """The plans of the start layers and of every layer they hand over to, transitively.
    ``planned``: plans already built (same env and account), not loaded again."""
    planned = planned or {}
    plans: dict[str, LayerPlan] = {}
    todo = list(start_keys)
    while todo:
        key = todo.pop()
        if key in plans:
            continue
        inst, lay = key.split("/")
        plan = planned.get(key) or plan_layer(project, inst, lay, env, account_id=account_id)
        plans[key] = plan
        if plan.handover:
            todo.append(f"{plan.handover.instance}/{plan.handover.layer}")
    return plans


def start_layers(project: Project, instance: str, layer: str | None, env: str,
                 planned: dict[str, LayerPlan] | None = None) -> list[str]:
    """Which layers a run starts at. With a layer: that one (its hand-overs follow, as in AWS).
    Without: every layer of the instance that no other layer hands over to, by name; the plans
    this builds to find out are left in ``planned`` for ``reachable_plans``."""
    if layer:
        project.main_file(instance, layer)
        return [f"{instance}/{layer}"]
    layers = project.layers(instance)
    if not layers:
        raise DorcError(f"instance {instance!r} has no layers", hint=f"add {instance}/<layer>/__main__.py")
    targets: set[str] = set()
    for lay in layers:
        plan = plan_layer(project, instance, lay, env)
        if planned is not None:
            planned[f"{instance}/{lay}"] = plan
        if plan.handover:
            targets.add(f"{plan.handover.instance}/{plan.handover.layer}")
    return [f"{instance}/{l}" for l in layers if f"{instance}/{l}" not in targets]


def parse_event(text: str | None) -> bytes:
    """``--event``: JSON text, or ``@file.json``; default ``{}``. Returned as the JSON that is sent."""
    if text is None:
        return b"{}"
    source = "--event"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise DorcError(f"cannot read the event file {path}: {exc.strerror}",
                            hint="--event @FILE takes a path to a JSON file; or give the JSON itself: --event '{}'") from None
        source = str(path)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DorcError(f"{source} is not valid JSON: {exc}", hint="e.g. --event '{\"year\": 2020}' or --event @event.json") from None
    return json.dumps(value).encode()


def run_pipeline(instance: str, layer: str | None = None, *, target: str = "local", event: Any = None,
                 env: str | None = None, config_repo: str | os.PathLike | None = None, project: Project | None = None,
                 observer=None, record: bool = True, endpoint: str | None = None,
                 deploy: bool = True, timeout: float | None = None) -> RunResult:
    """Run a pipeline and return its ``RunResult`` (the same shape from every target).

    ``event`` is a Python value (sent as JSON) or, with ``bytes``, JSON already encoded.
    """
    if target not in TARGETS:
        raise DorcError(f"unknown target {target!r}", hint=f"use one of {', '.join(TARGETS)}")
    project = project or find_project(config_repo)
    env = env or ("localstack" if target == "localstack" else "local")
    event_json = event if isinstance(event, bytes) else json.dumps({} if event is None else event).encode()
    planned: dict[str, LayerPlan] = {}
    starts = start_layers(project, instance, layer, env, planned)
    plans = reachable_plans(project, starts, env, planned=planned)
    results = []
    for start in starts:
        if target == "local":
            from .targets import local

            res = local.run(plans, start, event_json, state_dir=project.state_dir, observer=observer)
        else:
            from .targets import localstack

            res = localstack.run(plans, start, event_json, project=project, observer=observer, endpoint=endpoint,
                                 deploy_first=deploy, timeout=timeout)
        results.append(res)
        if not res.succeeded:
            break
    result = _merge(results)
    result.warnings = import_warnings(project, plans)
    if record:
        from .package import source_digest
        from .records import write_record

        sources = {key: {fn.key: source_digest(Path(fn.source_dir)) for fn in p.functions} for key, p in plans.items()}
        write_record(project.state_dir, result, {"sources": sources,
                                                 "plan_digests": {k: p.digest() for k, p in plans.items()}})
    return result


def import_warnings(project: Project, plans: dict[str, LayerPlan]) -> list[str]:
    """What ran here but would not import in AWS (``dorc validate`` lists the same as problems):
    a local run shares dorc's environment, so "it passed" must not hide it."""
    from .import_check import function_import_problems

    return [str(problem) for plan in plans.values() for fn in plan.functions
            for problem in function_import_problems(project, fn.key, Path(fn.source_dir), fn.runtime)]


def invoke_function(instance: str, layer: str, function: str, *, event: Any = None, env: str = "local",
                    config_repo: str | os.PathLike | None = None, project: Project | None = None, observer=None):
    """Invoke one function of a layer in-process and return its ``StepResult``."""
    from .targets import local

    project = project or find_project(config_repo)
    plan = plan_layer(project, instance, layer, env)
    try:
        plan.function(function)
    except KeyError:
        names = ", ".join(f.key for f in plan.functions)
        raise DorcError(f"{instance}/{layer} has no function {function!r} (functions: {names})") from None
    event_json = event if isinstance(event, bytes) else json.dumps({} if event is None else event).encode()
    return local.invoke_function(plan, function, event_json, state_dir=project.state_dir, observer=observer)


def _merge(results: list[RunResult]) -> RunResult:
    """Independent start layers run one after the other; the result reads as one run."""
    first = results[0]
    if len(results) == 1:
        return first
    first.steps = [s for r in results for s in r.steps]
    first.duration_ms = sum(r.duration_ms for r in results)
    last = results[-1]
    first.error, first.output_json = last.error, last.output_json
    return first
