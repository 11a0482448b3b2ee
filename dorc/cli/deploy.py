"""``dorc deploy``, ``dorc destroy``, ``dorc promote``: the plan, delivered to a target
(``dorc.api.deploy``/``destroy``/``promote``).

``--target pulumi`` (default) drives Pulumi stacks in AWS; ``--target localstack`` deploys the
same plan to LocalStack, which is how promotion is rehearsed without an AWS account.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Optional

import typer

from ..errors import DorcError
from .options import ConfigRepo


class DeployTarget(str, Enum):
    pulumi = "pulumi"
    localstack = "localstack"


TargetOpt = typer.Option(DeployTarget.pulumi, "--target", help="pulumi: stacks in AWS; localstack: the same plan in LocalStack.")
EndpointOpt = typer.Option(None, "--endpoint", help="LocalStack URL (with --target localstack).")


def _observer():
    from ..render import TerminalObserver, console

    return TerminalObserver(console(stderr=True))


def deploy(
    instance: str = typer.Argument(..., help="Pipeline instance, or `universal` / `infra` for the shared stacks."),
    layer: Optional[str] = typer.Argument(None, help="Layer (default: every layer of the instance)."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment, e.g. preprod or prod (not needed for universal)."),
    target: DeployTarget = TargetOpt,
    endpoint: Optional[str] = EndpointOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="With --target localstack: list the API calls the deployment would make, and make none."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Build the packages and deploy the plan (create or update) to one environment."""
    from .. import api

    obs = _observer()
    done = api.deploy(instance, layer, env=env, target=target.value, endpoint=endpoint, dry_run=dry_run,
                      config_repo=config_repo, observer=obs)
    where = " on LocalStack" if target == DeployTarget.localstack else ""
    for d in done:
        if d.plan_digest is None:
            obs.out.print(f"✓ deployed {d.key}{' ' + d.env if d.env else ''}")
            continue
        obs.out.print(f"✓ deployed {d.key} to {d.env}{where}  [dim]plan {d.plan_digest[:12]}[/]")
        if target == DeployTarget.localstack:
            for fn, sha in (d.packages or {}).items():
                obs.out.print(f"    {fn}: {sha}")


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
    from .. import api

    if env is None and instance != "universal":
        raise DorcError(f"dorc destroy {instance} needs --env", hint=f"e.g. dorc destroy {instance} --env preprod")
    what = f"{instance}{'/' + layer if layer else ''}{' in ' + env if env else ''} ({target.value})"
    if not yes:
        if not sys.stdin.isatty():
            raise DorcError(f"refusing to destroy {what} without --yes")
        typer.confirm(f"Destroy {what}?", abort=True)
    obs = _observer()
    api.destroy(instance, layer, env=env, target=target.value, endpoint=endpoint, config_repo=config_repo,
                observer=obs)
    obs.out.print(f"✓ destroyed {what}")


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
    from .. import api

    obs = _observer()
    result = api.promote(instance, layer, to=to, target=target.value, endpoint=endpoint, force=force,
                         skip_checks=skip_checks, config_repo=config_repo, observer=obs)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    if result.drift:
        obs.out.print(f"[yellow]promoted despite drift (--force): {result.source}'s packages, not the local build:[/]")
        for d in result.drift:
            obs.out.print(f"  - {d}")
    obs.out.print(f"[bold green]✓ promoted {instance}/{layer}: {result.source} → {result.target}[/]")
    for change in result.changes:
        obs.out.print(f"  · {change}")
