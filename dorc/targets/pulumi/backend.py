"""Promotion and deployment through Pulumi stacks (real AWS): ``Backend`` over the narrow
``Engine``. What a stack runs is read from its outputs (``packages``, ``plan_digest``,
``plan_settings``, ``deployed_at``, ``state_machine_arn``), which the pipeline program exports.
"""

from __future__ import annotations

from typing import Callable

from ...errors import DorcError
from ...plan import LayerPlan
from ..deployments import Deployed, LastRun, Running, last_execution_since, read_running
from .engine import AutomationEngine, Engine
from .stacks import StackSpec, stack_spec


def layer_stack(project, plan: LayerPlan) -> StackSpec:
    return stack_spec(project, plan.instance, plan.layer, plan.env)


class PulumiBackend:
    name = "pulumi"

    def __init__(self, project, engine: Engine | None = None, on_output: Callable[[str], None] = print):
        self.project = project
        self.engine = engine or AutomationEngine()
        self.on_output = on_output

    def deployed(self, plan: LayerPlan) -> Deployed | None:
        out = self.engine.outputs(layer_stack(self.project, plan))
        if not out or "packages" not in out:
            return None
        return Deployed(env=plan.env, packages=dict(out["packages"]), plan_settings=out.get("plan_settings") or {},
                        plan_digest=out.get("plan_digest", ""), deployed_at=out.get("deployed_at", ""),
                        state_machine_arn=out.get("state_machine_arn", ""))

    def running(self, deployed: Deployed) -> Running:
        """What the stack's functions and state machine run, as AWS reports it (the stack's
        outputs only say what the last ``pulumi up`` meant to deploy)."""
        import boto3

        region = deployed.state_machine_arn.split(":")[3]
        return read_running(deployed, boto3.client("lambda", region_name=region),
                            boto3.client("stepfunctions", region_name=region))

    def last_run(self, deployed: Deployed) -> LastRun:
        """The newest execution of the deployed state machine since it was deployed (AWS API)."""
        import boto3

        sfn = boto3.client("stepfunctions", region_name=deployed.state_machine_arn.split(":")[3])
        runs = sfn.list_executions(stateMachineArn=deployed.state_machine_arn, maxResults=100)["executions"]
        return last_execution_since(runs, deployed)

    def deploy(self, plan: LayerPlan, packages: dict[str, str] | None) -> Deployed:
        spec = layer_stack(self.project, plan)
        self.engine.up(spec.promoting(packages), self.on_output)
        found = self.deployed(plan)
        if found is None:
            raise DorcError(f"stack {spec.stack} has no 'packages' output after the update")
        return found

    def destroy(self, plan: LayerPlan) -> None:
        self.engine.destroy(layer_stack(self.project, plan), self.on_output)

    def deploy_shared(self, kind: str, env: str | None) -> None:
        """``universal`` (once per project) or ``infra-<env>``."""
        self.engine.up(stack_spec(self.project, kind, None, env), self.on_output)

    def destroy_shared(self, kind: str, env: str | None) -> None:
        self.engine.destroy(stack_spec(self.project, kind, None, env), self.on_output)


def backend(project, *, endpoint: str | None = None, observer=None) -> PulumiBackend:
    if endpoint is not None:
        raise DorcError("--endpoint applies to --target localstack only", hint="drop --endpoint")
    return PulumiBackend(project, on_output=observer.engine_output if observer else print)
