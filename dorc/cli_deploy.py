"""``dorc deploy``, ``dorc destroy``, ``dorc promote``: the plan, delivered to a target.

``--target pulumi`` (default) drives Pulumi stacks in AWS; ``--target localstack`` deploys the
same plan to LocalStack, which is how promotion is rehearsed without an AWS account.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Optional

import typer

from .cli import _project, app
from .cli_options import ConfigRepo
from .errors import DorcError

SHARED = ("universal", "infra")


class DeployTarget(str, Enum):
    pulumi = "pulumi"
    localstack = "localstack"


TargetOpt = typer.Option(DeployTarget.pulumi, "--target", help="pulumi: stacks in AWS; localstack: the same plan in LocalStack.")
EndpointOpt = typer.Option(None, "--endpoint", help="LocalStack URL (with --target localstack).")


def _observer():
    from .render import TerminalObserver, console

    return TerminalObserver(console(stderr=True))


def _layer_plans(project, instance: str, layer: Optional[str], env: str):
    from .api import plan_layer

    layers = [layer] if layer else project.layers(instance)
    return {f"{instance}/{l}": plan_layer(project, instance, l, env) for l in layers}


def _require_env(instance: str, env: str | None, command: str) -> None:
    """``universal`` is one stack per project; everything else exists once per environment."""
    if env is None and instance != "universal":
        raise DorcError(f"dorc {command} {instance} needs --env", hint=f"e.g. dorc {command} {instance} --env preprod")


@app.command()
def deploy(
    instance: str = typer.Argument(..., help="Pipeline instance, or `universal` / `infra` for the shared stacks."),
    layer: Optional[str] = typer.Argument(None, help="Layer (default: every layer of the instance)."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment, e.g. preprod or prod (not needed for universal)."),
    target: DeployTarget = TargetOpt,
    endpoint: Optional[str] = EndpointOpt,
    config_repo: Optional[str] = ConfigRepo,
):
    """Build the packages and deploy the plan (create or update) to one environment."""
    _require_env(instance, env, "deploy")
    project = _project(config_repo)
    obs = _observer()
    if target == DeployTarget.localstack:
        if instance in SHARED:
            raise DorcError(f"{instance} is deployed to LocalStack together with every layer",
                            hint=f"dorc deploy <instance> <layer> --env {env} --target localstack")
        from .targets.localstack import LocalStackBackend

        backend = LocalStackBackend(project, endpoint, progress=obs.progress)
        for key, plan in _layer_plans(project, instance, layer, env).items():
            dep = backend.deploy(plan, None)
            obs.out.print(f"✓ deployed {key} to {env} on LocalStack  [dim]plan {dep.plan_digest[:12]}[/]")
            for fn, sha in dep.packages.items():
                obs.out.print(f"    {fn}: {sha}")
        return
    from .targets.pulumi_backend import PulumiBackend, shared_stack_spec, stack_spec
    from .targets.pulumi_engine import AutomationEngine

    engine = AutomationEngine()
    if instance in SHARED:
        engine.up(shared_stack_spec(project, instance, env), lambda line: obs.out.print(line, end=""))
        return
    backend = PulumiBackend(project, engine, on_output=lambda line: obs.out.print(line, end=""))
    for key, plan in _layer_plans(project, instance, layer, env).items():
        obs.progress(f"pulumi up {stack_spec(project, plan).stack}")
        dep = backend.deploy(plan, None)
        obs.out.print(f"✓ deployed {key} to {env}  [dim]plan {dep.plan_digest[:12]}[/]")


@app.command()
def destroy(
    instance: str = typer.Argument(..., help="Pipeline instance, or `universal` / `infra`."),
    layer: Optional[str] = typer.Argument(None, help="Layer (default: every layer of the instance)."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment (not needed for universal)."),
    target: DeployTarget = TargetOpt,
    endpoint: Optional[str] = EndpointOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Delete a deployed environment's resources (the holding store's data is kept)."""
    _require_env(instance, env, "destroy")
    project = _project(config_repo)
    what = f"{instance}{'/' + layer if layer else ''}{' in ' + env if env else ''} ({target.value})"
    if not yes:
        if not sys.stdin.isatty():
            raise DorcError(f"refusing to destroy {what} without --yes")
        typer.confirm(f"Destroy {what}?", abort=True)
    obs = _observer()
    if target == DeployTarget.localstack:
        from .targets import localstack

        for plan in _layer_plans(project, instance, layer, env).values():
            localstack.destroy(plan, project=project, endpoint=endpoint, progress=obs.progress)
        obs.out.print(f"✓ destroyed {what}")
        return
    from .targets.pulumi_backend import shared_stack_spec, stack_spec
    from .targets.pulumi_engine import AutomationEngine

    engine = AutomationEngine()
    printer = lambda line: obs.out.print(line, end="")  # noqa: E731
    if instance in SHARED:
        engine.destroy(shared_stack_spec(project, instance, env), printer)
    else:
        for plan in _layer_plans(project, instance, layer, env).values():
            engine.destroy(stack_spec(project, plan), printer)
    obs.out.print(f"✓ destroyed {what}")


@app.command()
def promote(
    instance: str = typer.Argument(..., help="Pipeline instance."),
    layer: str = typer.Argument(..., help="Layer."),
    to: str = typer.Option(..., "--to", help="preprod (from the local build) or prod (from preprod)."),
    target: DeployTarget = TargetOpt,
    endpoint: Optional[str] = EndpointOpt,
    force: bool = typer.Option(False, "--force", help="Promote even if the local build differs from the source (the source's packages are promoted)."),
    skip_checks: bool = typer.Option(False, "--skip-checks", help="Promote even if the source's last run did not succeed."),
    as_json: bool = typer.Option(False, "--json", help="Print the promotion summary as JSON."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Give an environment exactly the packages its source ran: local -> preprod -> prod.

    "Last run" means: for the local build, the newest `dorc run` (local or LocalStack) that ran these very sources; for preprod, the newest execution of the deployed state machine since it was deployed.
    """  # noqa: E501 - one line: the help view wraps it to the terminal
    from pathlib import Path

    from .api import plan_layer
    from .package import package_plan, source_digest
    from .promote import SOURCE_OF, local_last_run
    from .promote import promote as do_promote

    if to not in SOURCE_OF:
        raise DorcError(f"cannot promote to {to!r}", hint="use --to preprod or --to prod")
    project = _project(config_repo)
    obs = _observer()
    source_env = "preprod" if to == "prod" else to
    source_plan = plan_layer(project, instance, layer, source_env)
    obs.progress("building the local packages to compare")
    built = package_plan(source_plan, project.state_dir / "build", project.state_dir / "cache")
    local_packages = {f.key: f.package_sha256 for f in built.functions}
    # --to preprod deploys the local build itself: the packages just built, not a second build
    target_plan = built if to == source_env else plan_layer(project, instance, layer, to)
    if target == DeployTarget.localstack:
        from .targets.localstack import LocalStackBackend

        backend = LocalStackBackend(project, endpoint, progress=obs.progress)
    else:
        from .targets.pulumi_backend import PulumiBackend

        backend = PulumiBackend(project, on_output=lambda line: obs.out.print(line, end=""))
    sources = {fn.key: source_digest(Path(fn.source_dir)) for fn in source_plan.functions}
    result = do_promote(
        instance=instance, layer=layer, to=to, source_plan=built, target_plan=target_plan,
        local_packages=local_packages, backend=backend,
        local_last_run=lambda: local_last_run(project.state_dir, f"{instance}/{layer}", sources),
        force=force, skip_checks=skip_checks, progress=obs.progress,
    )
    if as_json:
        doc = {"instance": instance, "layer": layer, "from": result.source, "to": result.target,
               "target": target.value, "packages": result.packages, "drift": result.drift, "forced": result.forced,
               "checks_skipped": result.checks_skipped, "changes": result.changes,
               "plan_digest": result.deployed.plan_digest if result.deployed else None}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    if result.drift:
        obs.out.print(f"[yellow]promoted despite drift (--force): {result.source}'s packages, not the local build:[/]")
        for d in result.drift:
            obs.out.print(f"  - {d}")
    obs.out.print(f"[bold green]✓ promoted {instance}/{layer}: {result.source} → {result.target}[/]")
    for change in result.changes:
        obs.out.print(f"  · {change}")
