"""A project's definitions, loaded, checked and planned: the step from ``__main__.py`` files to
``LayerPlan``s that every command starts with. Problems are collected, not raised one by one,
so that ``dorc validate`` lists them all."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DefinitionError, DorcError, Problem
from .import_check import check_imports
from .graph import handover_key
from .loader import LoadedPipeline, load_pipeline
from .models import FunctionType
from .plan import LOCAL_ACCOUNT_ID, LayerPlan, build_plan, fixture_problems, plan_problems
from .project import LOCAL_ENVS, SETTINGS_FILE, Project
from .validate import check_definition


def load_layer(project: Project, instance: str, layer: str, env: str) -> tuple[LoadedPipeline, list[Problem]]:
    """Load and check one layer; problems are returned, not raised, so they can all be listed."""
    loaded = load_pipeline(project, instance, layer, env)
    problems = check_definition(loaded, project.known_layers())
    return loaded, problems


def plan_layer(project: Project, instance: str, layer: str, env: str = "local", *,
               account_id: str = LOCAL_ACCOUNT_ID) -> LayerPlan:
    """The plan of one valid layer, or ``DefinitionError`` listing every problem."""
    loaded, problems = load_layer(project, instance, layer, env)
    if problems:
        raise DefinitionError(problems)
    plan = build_plan(loaded, account_id=account_id)
    problems = plan_problems(plan, _settings_file(project)) + fixture_problems(plan, _settings_file(project))
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
    known = project.known_layers()
    handovers: dict[str, tuple[str, str | None] | None] = {}  # layer -> (target layer, function handing over)
    for inst in instances:
        for lay in ([layer] if layer else project.layers(inst)):
            project.main_file(inst, lay)  # a layer that does not exist is the command's mistake, not a problem
            envs = environments(project, inst, lay) if env is None else [env]
            out[f"{inst}/{lay}"] = _layer_problems(project, inst, lay, envs, known, handovers)
    for key, problems in out.items():
        problems += _cycle_problems(project, key, handovers, known, env or LOCAL_ENVS[0])
    return out


def _handover_of(loaded: LoadedPipeline) -> tuple[str, str | None] | None:
    """The layer this one hands over to, and the function that does (a Pipeline-typed next)."""
    for fn in loaded.definition.functions:
        if fn.next is not None and fn.next.type == FunctionType.Pipeline.value:
            return handover_key(loaded.instance, fn.next.name), fn.name
    return None


def _cycle_problems(project: Project, key: str, handovers: dict, known: set[str], env: str) -> list[Problem]:
    """Hand-overs that come back: each state machine waits for the next (``startExecution.sync``),
    so a run would never end. Layers outside the checked scope are loaded to follow the path."""
    path = [key]
    while True:
        cur = path[-1]
        if cur not in handovers:
            handovers[cur] = _load_handover(project, cur, env) if cur in known else None
        step = handovers[cur]
        if step is None:
            return []
        target = step[0]
        if target in path:
            cycle = path[path.index(target):] + [target]
            if key not in cycle[:-1] or len(cycle) == 2:
                return []  # reported against the cycle's own layers; a layer handing over to itself by dorc.validate
            inst, lay = key.split("/")
            return [Problem(project.display_path(project.main_file(inst, lay)), _cycle_message(cycle),
                            handovers[key][1])]
        path.append(target)


def _load_handover(project: Project, key: str, env: str) -> tuple[str, str | None] | None:
    inst, lay = key.split("/")
    try:
        return _handover_of(load_pipeline(project, inst, lay, env))
    except DorcError:
        return None  # its own problems are reported when it is checked


def environments(project: Project, instance: str, layer: str) -> list[str]:
    """``local``, ``localstack``, then each environment with a ``Pulumi.<env>.yaml`` in the layer's
    folder or in ``infra/`` (every deployed environment has an ``infra-<env>`` stack)."""
    found: set[str] = set()
    for folder in (project.layer_dir(instance, layer), project.root / "infra"):
        if folder.is_dir():
            found.update(f.name[len("Pulumi."):-len(".yaml")] for f in folder.glob("Pulumi.*.yaml"))
    return [*LOCAL_ENVS, *sorted(found - set(LOCAL_ENVS))]


def _layer_problems(project: Project, instance: str, layer: str, envs: list[str], known: set[str],
                    handovers: dict | None = None) -> list[Problem]:
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
        if handovers is not None and loaded.key not in handovers:
            handovers[loaded.key] = _handover_of(loaded)
        _add_new(definition, check_definition(loaded, known))
        _add_new(imports, check_imports(loaded))
        try:  # the AWS limits too, when the chain is sound enough to name things
            plan = build_plan(loaded)
            found = plan_problems(plan, _settings_file(project))
            _add_new(definition, fixture_problems(plan, _settings_file(project)))  # not per environment
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


def _settings_file(project: Project) -> str:
    return project.display_path(project.root / SETTINGS_FILE)


def _add_new(into: list[Problem], problems: list[Problem]) -> None:
    into.extend(p for p in problems if p not in into)


def _env_neutral(message: str, env: str) -> str:
    """The message with the environment's name and the numbers it changes taken out."""
    return re.sub(r"\d+", "#", re.sub(rf"-{re.escape(env)}\b", "-<env>", message))


def reachable_plans(project: Project, start_keys: list[str], env: str, *,
                    account_id: str = LOCAL_ACCOUNT_ID,
                    planned: dict[str, LayerPlan] | None = None) -> dict[str, LayerPlan]:
    """The plans of the start layers and of every layer they hand over to, transitively.
    ``planned``: plans already built (same env and account), not loaded again."""
    planned = planned or {}
    plans: dict[str, LayerPlan] = {}
    for start in start_keys:
        path = [start]
        while True:
            key = path[-1]
            if key not in plans:
                inst, lay = key.split("/")
                plans[key] = planned.get(key) or plan_layer(project, inst, lay, env, account_id=account_id)
            handover = plans[key].handover
            if handover is None:
                break
            target = f"{handover.instance}/{handover.layer}"
            if target in path:
                raise DefinitionError([_cycle_problem(project, plans, path[path.index(target):] + [target])])
            path.append(target)
    return plans


def _cycle_problem(project: Project, plans: dict[str, LayerPlan], cycle: list[str]) -> Problem:
    """A run into a hand-over cycle would start state machines forever: refused before it starts."""
    first = plans[cycle[0]]
    return Problem(project.display_path(Path(first.main_file)), _cycle_message(cycle), first.functions[-1].key)


def _cycle_message(cycle: list[str]) -> str:
    return (f"hand-overs form a cycle {' -> '.join(cycle)}: each state machine waits for the next, so a run would "
            "never end; end one of these layers without a hand-over (next_function=None)")


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
    starts = [f"{instance}/{l}" for l in layers if f"{instance}/{l}" not in targets]
    if not starts:  # every layer is handed over to: they hand over in a cycle
        plans = {f"{instance}/{lay}": planned[f"{instance}/{lay}"] for lay in layers} if planned is not None \
            else {}
        reachable_plans(project, [f"{instance}/{layers[0]}"], env, planned=plans)  # raises, naming the cycle
        raise DorcError(f"every layer of {instance} is handed over to by another, so no run can start",
                        hint="end one layer's chain without a hand-over (next_function=None)")
    return starts
