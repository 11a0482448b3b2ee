"""The deployment record: what a layer deployed to LocalStack runs, kept under
``.dorc/deployments/localstack/<stack>.json``.

LocalStack has no stack outputs to ask, so promotion (which packages run in preprod?) and
``dorc run --no-deploy`` (is it deployed?) read this record, written only after a deployment
succeeded. Its format is shared with what promotion compares: change it with care.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...plan import LayerPlan
from ...plan import stack_name as plan_stack_name
from ..deployments import deployment_stamp
from .clients import TARGET


@dataclass
class Deployment:
    """What a deployed layer runs: promotion compares these, never rebuilt zips."""

    stack: str
    endpoint: str
    plan_digest: str
    packages: dict[str, str]
    state_machine_arn: str
    deployed_at: str
    plan_settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stack_name(plan: LayerPlan) -> str:
    """The same name the Pulumi stack of this layer and environment has."""
    return plan_stack_name(plan.instance, plan.layer, plan.env)


def deployments_dir(state_dir: Path) -> Path:
    return state_dir / "deployments" / TARGET


def deployment_file(state_dir: Path, stack: str) -> Path:
    return deployments_dir(state_dir) / f"{stack}.json"


def read_deployment(state_dir: Path, stack: str) -> Deployment | None:
    path = deployment_file(state_dir, stack)
    try:
        return Deployment(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def deployment_of(plan: LayerPlan, endpoint: str) -> Deployment:
    """The record of ``plan`` (packaged or promoted), deployed now to ``endpoint``."""
    return Deployment(stack=stack_name(plan), endpoint=endpoint, plan_digest=plan.digest(),
                      packages={f.key: f.package_sha256 for f in plan.functions},
                      state_machine_arn=plan.state_machine_arn, deployed_at=deployment_stamp(),
                      plan_settings=plan.snapshot())


def write_deployment(state_dir: Path, dep: Deployment) -> None:
    """Atomically: a reader never sees half a record."""
    folder = deployments_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{dep.stack}.json.{os.getpid()}.{threading.get_ident()}.tmp"  # unique: concurrent deploys
    tmp.write_text(json.dumps(dep.to_dict(), indent=2))
    tmp.replace(folder / f"{dep.stack}.json")
