"""Deploying plans with boto3, to LocalStack (or any endpoint that speaks the AWS APIs), as
plan then execute: build the packages -> read what the endpoint holds (``remote``) -> work out
the calls (``planner``) -> make them and record what now runs (``executor``).

Every call is a create of what is missing or an update of what differs, so a re-run after a
failure half way repairs it, and an unchanged package is not uploaded again. ``dry_run`` stops
before the calls and shows them.
"""

from __future__ import annotations

from ...observer import NullObserver, Progress
from ...plan import InfraPlan, LayerPlan, UniversalPlan, build_infra_plan, build_universal_plan
from .clients import Clients
from .executor import describe, execute, record
from .planner import APICall, plan_deployment
from .record import Deployment, deployment_file, read_deployment, stack_name  # noqa: F401  (this module's API)
from .remote import read_remote_state


def function_environments(plans: dict[str, LayerPlan], fixtures) -> dict[str, dict[str, dict[str, str]]]:
    """Each function's variables as LocalStack gets them: ``[local.environment]`` applied
    (``fixtures.render`` gives each ``{sim.<name>}`` its URL)."""
    from ..local import local_environment

    return {key: {fn.key: local_environment(p, fn, fixtures) for fn in p.functions} for key, p in plans.items()}


def shared_plans(project, plan: LayerPlan) -> tuple[UniversalPlan, InfraPlan]:
    """The universal and infra-<env> stacks that ``plan``'s layer deploys with on LocalStack."""
    universal = build_universal_plan(project.settings, plan.region)
    infra = build_infra_plan(project.settings, plan.env, plan.region, account_id=plan.account_id,
                             holding_bucket=plan.holding_bucket)
    return universal, infra


def packaged(plans: dict[str, LayerPlan], project, promoted: dict[str, dict[str, str]] | None = None) -> dict[str, LayerPlan]:
    """Each plan with its packages: promoted digests, else deterministic zips built now (their
    digests name the artifacts the planner compares)."""
    from ...package import package_plan

    out = {}
    for key, plan in plans.items():
        if promoted and key in promoted:
            plan = plan.with_packages(promoted[key])
        elif any(f.package_sha256 is None for f in plan.functions):
            plan = package_plan(plan, project.state_dir / "build", project.state_dir / "cache")
        out[key] = plan
    return out


def planned_calls(c: Clients, plans: dict[str, LayerPlan], *, project,
                  environments: dict[str, dict[str, dict[str, str]]],
                  promoted: dict[str, dict[str, str]] | None = None) -> list[APICall]:
    """Read the endpoint and plan against it; ``plans`` must be packaged."""
    universal, infra = shared_plans(project, next(iter(plans.values())))
    remote = read_remote_state(c, plans, universal, infra)
    return plan_deployment(plans, universal, infra, remote, environments, promoted)


def deploy(plans: dict[str, LayerPlan], *, project, endpoint: str, environments: dict[str, dict[str, dict[str, str]]],
           progress: Progress, promoted: dict[str, dict[str, str]] | None = None) -> dict[str, Deployment]:
    """Deploy every plan, hand-over targets first. Layers in ``promoted`` (key -> function ->
    sha256) get those existing packages instead of a fresh build. ``plans`` is updated in place
    with the packaged plans."""
    plans.update(packaged(plans, project, promoted))
    c = Clients(endpoint, next(iter(plans.values())).region)
    calls = planned_calls(c, plans, project=project, environments=environments, promoted=promoted)
    execute(calls, c, progress, ready=[fn.name for p in plans.values() for fn in p.functions])
    return record(plans, endpoint, project.state_dir)


def show_plan(plans: dict[str, LayerPlan], *, project, endpoint: str,
              environments: dict[str, dict[str, dict[str, str]]], observer=None) -> list[APICall]:
    """The calls ``deploy`` would make now, reported one per line and made not at all."""
    progress = (observer or NullObserver()).progress
    plans = packaged(plans, project)
    c = Clients(endpoint, next(iter(plans.values())).region)
    calls = planned_calls(c, plans, project=project, environments=environments)
    for line in describe(calls):
        progress(line)
    progress(f"{len(calls)} call(s); nothing was changed")
    return calls
