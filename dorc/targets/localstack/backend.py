"""Promotion backend for environments deployed to one LocalStack endpoint (the rehearsal of
preprod -> prod): what runs comes from dorc's deployment records, checked against LocalStack."""

from __future__ import annotations

from ...localstack.endpoint import require_ready
from ...observer import Progress
from ...package import hex_digest
from ...plan import LayerPlan
from ..deployments import Deployed, LastRun, Running, last_execution_since, read_running, running_differences
from .clients import Clients
from .deploy import deploy, read_deployment, stack_name
from .dryrun import dry_run  # noqa: F401  (``dorc deploy --dry-run``: ``dorc.delivery`` calls it here)


class LocalStackBackend:
    """``dorc.targets.deployments.Backend`` over one LocalStack endpoint."""

    name = "localstack"

    def __init__(self, project, endpoint: str | None = None, progress: Progress | None = None):
        self.project = project
        self.endpoint = require_ready(endpoint)
        self.progress = progress or (lambda m: None)

    def _clients(self, plan: LayerPlan) -> Clients:
        return Clients(self.endpoint, plan.region)

    def deployed(self, plan: LayerPlan) -> Deployed | None:
        dep = read_deployment(self.project.state_dir, stack_name(plan))
        if dep is None or dep.endpoint != self.endpoint:
            return None
        try:  # LocalStack forgets everything on restart; the record alone proves nothing
            self._clients(plan).states.describe_state_machine(stateMachineArn=dep.state_machine_arn)
        except Exception:
            return None
        return Deployed(env=plan.env, packages=dep.packages, plan_settings=dep.plan_settings,
                        plan_digest=dep.plan_digest, deployed_at=dep.deployed_at,
                        state_machine_arn=dep.state_machine_arn)

    def running(self, deployed: Deployed) -> Running:
        """What the functions and the state machine the record names run, as LocalStack reports
        it; ``[local.environment]`` variables are this machine's and not compared."""
        c = Clients(self.endpoint, deployed.state_machine_arn.split(":")[3])
        return read_running(deployed, c.awslambda, c.states, replaced=set(self.project.settings.local_environment))

    def ran(self, plans: dict[str, LayerPlan]) -> dict[str, dict]:
        """For the record of a ``--no-deploy`` run: per layer, the packages that ran (each
        function's CodeSha256) and the digest of the plan that ran, None when the deployment does
        not match its record (then nothing proves which settings ran)."""
        out = {}
        for key, plan in plans.items():
            try:
                dep = self.deployed(plan)
                if dep is None:
                    out[key] = {"packages": self.running_packages(plan), "plan_digest": None}
                    continue
                running = self.running(dep)
                out[key] = {"packages": running.packages,
                            "plan_digest": None if running_differences(dep, running) else dep.plan_digest}
            except Exception:  # nothing readable: the run proves nothing about any build
                out[key] = {"packages": {}, "plan_digest": None}
        return out

    def last_run(self, deployed: Deployed) -> LastRun:
        """The newest execution of the deployed state machine started after that deployment."""
        c = Clients(self.endpoint, deployed.state_machine_arn.split(":")[3])
        runs = c.states.list_executions(stateMachineArn=deployed.state_machine_arn, maxResults=100)["executions"]
        return last_execution_since(runs, deployed)

    def deploy(self, plan: LayerPlan, packages: dict[str, str] | None) -> Deployed:
        from dorc_sim.fixtures import Fixtures

        from . import function_environments

        with Fixtures.for_plans([plan], stable_ports=True) as fixtures:
            envs = function_environments({plan.key: plan}, fixtures)
            deploy({plan.key: plan}, project=self.project, endpoint=self.endpoint, environments=envs,
                   progress=self.progress, promoted={plan.key: packages} if packages else None)
        found = self.deployed(plan)
        assert found is not None
        return found

    def running_packages(self, plan: LayerPlan) -> dict[str, str]:
        """sha256 of the code each deployed function runs, as Lambda reports it."""
        c = self._clients(plan)
        return {fn.key: hex_digest(c.awslambda.get_function(FunctionName=fn.name)["Configuration"]["CodeSha256"])
                for fn in plan.functions}

    def deploy_shared(self, kind: str, env: str | None) -> None:
        from ...errors import DorcError

        raise DorcError(f"{kind} is deployed to LocalStack together with every layer",
                        hint=f"dorc deploy <instance> <layer> --env {env or 'ENV'} --target localstack")

    destroy_shared = deploy_shared

    def destroy(self, plan: LayerPlan) -> None:
        from . import destroy

        destroy(plan, project=self.project, endpoint=self.endpoint, progress=self.progress)


def backend(project, *, endpoint: str | None = None, observer=None) -> LocalStackBackend:
    return LocalStackBackend(project, endpoint, progress=observer.progress if observer else None)
