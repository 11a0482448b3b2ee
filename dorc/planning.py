"""A project's definitions, loaded, checked and planned: the step from ``__main__.py`` files to
``LayerPlan``s that every command starts with. Problems are collected, not raised one by one,
so that ``dorc validate`` lists them all."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DefinitionError, DorcError, Problem
from .import_check import check_imports
from .loader import LoadedPipeline, load_pipeline
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
    problems = plan_problems(plan) + fixture_problems(plan, _settings_file(project))
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
            plan = build_plan(loaded)
            found = plan_problems(plan)
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
