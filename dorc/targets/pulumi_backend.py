"""Promotion and deployment through Pulumi stacks (real AWS): ``dorc.promote.Backend`` over the
narrow ``Engine``. What a stack runs is read from its outputs (``packages``, ``plan_digest``,
``plan_settings``, ``deployed_at``, ``state_machine_arn``), which the pipeline program exports.
"""

from __future__ import annotations

import json
from typing import Callable

from ..plan import LayerPlan
from ..plan import pulumi_project_name, stack_name
from .pulumi_engine import AutomationEngine, Engine, StackSpec


def stack_spec(project, plan: LayerPlan, packages: dict[str, str] | None = None) -> StackSpec:
    settings = project.layer_dir(plan.instance, plan.layer) / f"Pulumi.{plan.env}.yaml"
    program_env = {"DORC_PROMOTED_PACKAGES": json.dumps(packages, sort_keys=True)} if packages else {}
    return StackSpec(
        project=pulumi_project_name(project.settings.project, plan.instance, plan.layer),
        stack=stack_name(plan.instance, plan.layer, plan.env),
        program=project.main_file(plan.instance, plan.layer),
        settings_file=settings if settings.is_file() else None,
        program_env=program_env,
        workspace_root=project.state_dir / "pulumi",
    )


def shared_stack_spec(project, which: str, env: str | None) -> StackSpec:
    """``universal`` (once per project) or ``infra`` (``infra-<env>``)."""
    folder = project.root / which
    stack = stack_name(which, None, env)
    settings = folder / f"Pulumi.{env}.yaml" if env else None
    return StackSpec(project=pulumi_project_name(project.settings.project, which), stack=stack,
                     program=folder / "__main__.py",
                     settings_file=settings if settings and settings.is_file() else None,
                     workspace_root=project.state_dir / "pulumi")


class PulumiBackend:
    name = "pulumi"

    def __init__(self, project, engine: Engine | None = None, on_output: Callable[[str], None] = print):
        self.project = project
        self.engine = engine or AutomationEngine()
        self.on_output = on_output

    def deployed(self, plan: LayerPlan):
        from ..promote import Deployed

        out = self.engine.outputs(stack_spec(self.project, plan))
        if not out or "packages" not in out:
            return None
        return Deployed(env=plan.env, packages=dict(out["packages"]), plan_settings=out.get("plan_settings") or {},
                        plan_digest=out.get("plan_digest", ""), deployed_at=out.get("deployed_at", ""),
                        state_machine_arn=out.get("state_machine_arn", ""))

    def last_run(self, deployed):
        """The newest execution of the deployed state machine since it was deployed (AWS API)."""
        import boto3

        from ..promote import last_execution_since

        sfn = boto3.client("stepfunctions", region_name=deployed.state_machine_arn.split(":")[3])
        runs = sfn.list_executions(stateMachineArn=deployed.state_machine_arn, maxResults=100)["executions"]
        return last_execution_since(runs, deployed)

    def deploy(self, plan: LayerPlan, packages: dict[str, str] | None):
        self.engine.up(stack_spec(self.project, plan, packages), self.on_output)
        found = self.deployed(plan)
        if found is None:
            from ..errors import DorcError

            raise DorcError(f"stack {plan.instance}-{plan.layer}-{plan.env} has no 'packages' output after the update")
        return found
