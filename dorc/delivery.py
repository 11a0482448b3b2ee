"""Delivering plans to a deployment target: deploy, destroy, promote, and the offline preview
of a Pulumi stack. The CLI's ``dorc deploy``/``destroy``/``promote``/``plan`` are each one call
here, so users' scripts and the pytest plugin can do what the CLI does.

Targets are found in ``dorc.registry`` and reached only through the ``Backend`` protocol
(``dorc.targets.deployments``); nothing here knows which target it talks to.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DorcError
from .observer import NullObserver, Observer
from .plan import LOCAL_ACCOUNT_ID, SHARED_STACKS, LayerPlan
from .planning import plan_layer
from .project import Project, find_project
from .promote import SOURCE_OF, PromotionResult, local_last_run
from .promote import promote as promote_with
from .registry import deploy_target

DEFAULT_DEPLOY_TARGET = "pulumi"


@dataclass
class Delivered:
    """One stack or layer that a deploy or destroy reached."""

    key: str  # "census/raw", "universal", "infra"
    env: str | None
    target: str
    plan_digest: str | None = None
    packages: dict[str, str] | None = None


def _project(project: Project | None, config_repo: str | os.PathLike | None) -> Project:
    return project or find_project(config_repo)


def _require_env(instance: str, env: str | None, command: str) -> None:
    """``universal`` is one stack per project; everything else exists once per environment."""
    if env is None and instance != "universal":
        raise DorcError(f"dorc {command} {instance} needs --env", hint=f"e.g. dorc {command} {instance} --env preprod")


def layer_plans(project: Project, instance: str, layer: str | None, env: str) -> dict[str, LayerPlan]:
    """The plans of one layer, or of every layer of the instance."""
    layers = [layer] if layer else project.layers(instance)
    return {f"{instance}/{lay}": plan_layer(project, instance, lay, env) for lay in layers}


def deploy(instance: str, layer: str | None = None, *, env: str | None = None, target: str = DEFAULT_DEPLOY_TARGET,
           endpoint: str | None = None, dry_run: bool = False, project: Project | None = None,
           config_repo: str | os.PathLike | None = None, observer: Observer | None = None) -> list[Delivered]:
    """Build the packages and deploy (create or update) one environment. ``dry_run``: work out
    the deployment's API calls and report them through ``observer.progress`` without making
    them (LocalStack only: Pulumi's own preview is ``pulumi preview``, dorc's offline one ``dorc plan``)."""
    _require_env(instance, env, "deploy")
    project = _project(project, config_repo)
    observer = observer or NullObserver()
    module = deploy_target(target)
    if dry_run:
        if not hasattr(module, "dry_run"):
            raise DorcError(f"--dry-run is not available with --target {target}",
                            hint="`dorc plan` previews a Pulumi stack offline")
        if instance in SHARED_STACKS:
            raise DorcError(f"{instance} is deployed to LocalStack together with every layer",
                            hint=f"dorc deploy <instance> <layer> --env {env} --target {target} --dry-run")
        plans = layer_plans(project, instance, layer, env)
        module.dry_run(plans, project=project, endpoint=endpoint, observer=observer)
        return []
    backend = module.backend(project, endpoint=endpoint, observer=observer)
    if instance in SHARED_STACKS:
        backend.deploy_shared(instance, env)
        return [Delivered(instance, env if instance == "infra" else None, target)]
    out = []
    for key, plan in layer_plans(project, instance, layer, env).items():
        observer.progress(f"deploying {key} to {env} ({target})")
        dep = backend.deploy(plan, None)
        out.append(Delivered(key, env, target, dep.plan_digest, dict(dep.packages)))
    return out


def destroy(instance: str, layer: str | None = None, *, env: str | None = None, target: str = DEFAULT_DEPLOY_TARGET,
            endpoint: str | None = None, project: Project | None = None,
            config_repo: str | os.PathLike | None = None, observer: Observer | None = None) -> list[Delivered]:
    """Delete a deployed environment's resources (the holding store's data is kept)."""
    _require_env(instance, env, "destroy")
    project = _project(project, config_repo)
    observer = observer or NullObserver()
    backend = deploy_target(target).backend(project, endpoint=endpoint, observer=observer)
    if instance in SHARED_STACKS:
        backend.destroy_shared(instance, env)
        return [Delivered(instance, env if instance == "infra" else None, target)]
    out = []
    for key, plan in layer_plans(project, instance, layer, env).items():
        backend.destroy(plan)
        out.append(Delivered(key, env, target))
    return out


def promote(instance: str, layer: str, *, to: str, target: str = DEFAULT_DEPLOY_TARGET, endpoint: str | None = None,
            force: bool = False, skip_checks: bool = False, project: Project | None = None,
            config_repo: str | os.PathLike | None = None, observer: Observer | None = None) -> PromotionResult:
    """Give ``to`` exactly the packages its source ran: local -> preprod -> prod (``dorc.promote``)."""
    from .package import package_plan, source_digest

    if to not in SOURCE_OF:
        raise DorcError(f"cannot promote to {to!r}", hint="use --to preprod or --to prod")
    project = _project(project, config_repo)
    observer = observer or NullObserver()
    source_env = "preprod" if to == "prod" else to
    source_plan = plan_layer(project, instance, layer, source_env)
    observer.progress("building the local packages to compare")
    built = package_plan(source_plan, project.state_dir / "build", project.state_dir / "cache")
    local_packages = {f.key: f.package_sha256 for f in built.functions}
    # --to preprod deploys the local build itself: the packages just built, not a second build
    target_plan = built if to == source_env else plan_layer(project, instance, layer, to)
    backend = deploy_target(target).backend(project, endpoint=endpoint, observer=observer)
    sources = {fn.key: source_digest(Path(fn.source_dir)) for fn in source_plan.functions}

    @functools.cache
    def plan_digest(env: str, packaged: bool) -> str | None:
        """This definition's digest in a run record's environment (settings, and the local build)."""
        try:
            plan = plan_layer(project, instance, layer, env)
        except DorcError:
            return None
        return (plan.with_packages(local_packages) if packaged else plan).digest()

    result = promote_with(
        instance=instance, layer=layer, to=to, source_plan=built, target_plan=target_plan,
        local_packages=local_packages, backend=backend,
        local_last_run=lambda: local_last_run(project.state_dir, f"{instance}/{layer}", sources,
                                              packages=local_packages, plan_digest=plan_digest),
        force=force, skip_checks=skip_checks, handover_chain=handover_chain(project, target_plan),
        progress=observer.progress,
    )
    result.target_name = target
    return result


def handover_chain(project: Project, plan: LayerPlan) -> list[LayerPlan]:
    """The plans (in ``plan``'s environment) of the layers ``plan`` hands over to, in order."""
    chain: list[LayerPlan] = []
    while plan.handover is not None and len(chain) < 100:
        plan = plan_layer(project, plan.handover.instance, plan.handover.layer, plan.env)
        if any(p.key == plan.key for p in chain):
            break
        chain.append(plan)
    return chain


def plan_stacks(instance: str, layer: str | None = None, *, env: str | None = None, account_id: str | None = None,
                project: Project | None = None, config_repo: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """What each Pulumi stack in scope would hold, worked out offline (``dorc plan``): one
    document per stack; warnings and errors the program logged are under ``"messages"``."""
    from .targets.pulumi.engine import require_sdk

    require_sdk()
    from .targets.pulumi.preview import run_stack, stack_document

    project = _project(project, config_repo)
    layers = [layer] if layer or instance in SHARED_STACKS else project.layers(instance)
    docs = []
    for lay in layers:
        started = time.perf_counter()
        run = run_stack(project, instance, lay, env, account_id=account_id or LOCAL_ACCOUNT_ID)
        doc = stack_document(project, run, instance, lay, env, time.perf_counter() - started)
        doc["messages"] = [{"level": level, "text": text} for level, text in run.messages
                           if level in ("warning", "error")]
        docs.append(doc)
    return docs
