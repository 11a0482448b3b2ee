"""The LocalStack target: the plan deployed (``aws_deploy``), executed, and read back from the
execution history (``sfn_history``) into the same ``RunResult`` as an in-process run; and the
promotion backend for environments deployed to LocalStack."""

from __future__ import annotations

import base64

from ..errors import DorcError
from ..observer import NullObserver
from ..plan import LayerPlan
from ..result import RunResult
from .aws_deploy import (Clients, LocalStackError, Progress, _error_code, deploy, deployments_dir,  # noqa: F401
                         read_deployment, require_ready, stack_name)
from .sfn_history import execute

# -- the target --------------------------------------------------------------------------------

def function_environments(plans: dict[str, LayerPlan], fixtures) -> dict[str, dict[str, dict[str, str]]]:
    from .local import local_environment

    return {key: {fn.key: local_environment(p, fn, fixtures) for fn in p.functions} for key, p in plans.items()}


def run(plans: dict[str, LayerPlan], start: str, event_json: bytes, *, project, observer=None,
        endpoint: str | None = None, progress: Progress | None = None, timeout: float | None = None,
        deploy_first: bool = True) -> RunResult:
    """Deploy (unless ``deploy_first`` is False: run what is deployed) and execute ``start``."""
    from sim.fixtures import Fixtures

    from ..localstack_endpoint import endpoint_url

    observer = observer or NullObserver()
    progress = progress or getattr(observer, "progress", None) or NullObserver().progress
    ep = endpoint_url(endpoint)
    require_ready(ep)
    if timeout is None:
        timeout = sum(fn.timeout for p in plans.values() for fn in p.functions) + 60.0
    with Fixtures(stable_ports=True) as fixtures:
        envs = function_environments(plans, fixtures)
        try:
            if deploy_first:
                deploy(plans, project=project, endpoint=ep, environments=envs, progress=progress)
            else:
                missing = [k for k, p in plans.items() if read_deployment(project.state_dir, stack_name(p)) is None]
                if missing:
                    raise LocalStackError(f"not deployed to LocalStack: {', '.join(missing)}",
                                          hint="run without --no-deploy, or `dorc deploy ... --target localstack`")
        except DorcError:
            raise
        except Exception as exc:
            raise LocalStackError(f"deploying to LocalStack at {ep} failed: {type(exc).__name__}: {exc}",
                                  hint="fix the cause and run again; a re-run completes a half-done deployment") from None
        c = Clients(ep, plans[start].region)
        return execute(c, plans, start, event_json, observer, timeout)


# -- promotion backend: environments deployed to LocalStack (the rehearsal of preprod -> prod) ---

class LocalStackBackend:
    """``dorc.promote.Backend`` for environments deployed to one LocalStack endpoint."""

    name = "localstack"

    def __init__(self, project, endpoint: str | None = None, progress: Progress | None = None):
        from ..localstack_endpoint import endpoint_url

        self.project = project
        self.endpoint = endpoint_url(endpoint)
        self.progress = progress or (lambda m: None)
        require_ready(self.endpoint)

    def _clients(self, plan: LayerPlan) -> Clients:
        return Clients(self.endpoint, plan.region)

    def deployed(self, plan: LayerPlan):
        from ..promote import Deployed

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

    def last_run(self, deployed):
        """The newest execution of the deployed state machine started after that deployment."""
        from ..promote import last_execution_since

        c = Clients(self.endpoint, deployed.state_machine_arn.split(":")[3])
        runs = c.states.list_executions(stateMachineArn=deployed.state_machine_arn, maxResults=100)["executions"]
        return last_execution_since(runs, deployed)

    def deploy(self, plan: LayerPlan, packages: dict[str, str] | None):
        from sim.fixtures import Fixtures

        with Fixtures(stable_ports=True) as fixtures:
            envs = function_environments({plan.key: plan}, fixtures)
            deploy({plan.key: plan}, project=self.project, endpoint=self.endpoint, environments=envs,
                   progress=self.progress, promoted={plan.key: packages} if packages else None)
        found = self.deployed(plan)
        assert found is not None
        return found

    def running_packages(self, plan: LayerPlan) -> dict[str, str]:
        """sha256 of the code each deployed function runs, as Lambda reports it."""
        c = self._clients(plan)
        return {fn.key: base64.b64decode(c.awslambda.get_function(FunctionName=fn.name)["Configuration"]["CodeSha256"]).hex()
                for fn in plan.functions}


def destroy(plan: LayerPlan, *, project, endpoint: str | None, progress: Progress) -> None:
    """Removes the layer's functions, state machine and rules (shared buckets and roles stay)."""
    from ..localstack_endpoint import endpoint_url

    ep = endpoint_url(endpoint)
    require_ready(ep)
    c = Clients(ep, plan.region)

    def delete(what: str, missing_code: str, *calls) -> None:
        """Already gone is fine: destroy must finish what an earlier destroy started."""
        try:
            for call in calls:
                call()
            progress(f"deleted {what}")
        except Exception as exc:
            if _error_code(exc) != missing_code:
                raise

    for t in plan.triggers:
        delete(f"rule {t.rule_name}", "ResourceNotFoundException",
               lambda: c.events.remove_targets(Rule=t.rule_name, Ids=["state-machine"]),
               lambda: c.events.delete_rule(Name=t.rule_name))
    delete(f"state machine {plan.state_machine_name}", "StateMachineDoesNotExist",
           lambda: c.states.delete_state_machine(stateMachineArn=plan.state_machine_arn))
    for fn in plan.functions:
        delete(f"function {fn.name}", "ResourceNotFoundException",
               lambda: c.awslambda.delete_function(FunctionName=fn.name))
    (deployments_dir(project.state_dir) / f"{stack_name(plan)}.json").unlink(missing_ok=True)
