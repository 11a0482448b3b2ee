"""The LocalStack target: the plan deployed (``deploy``: read what the endpoint holds, plan
the calls, make them), executed, and read back from the execution history (``history``) into
the same ``RunResult`` as a local run. ``dry_run`` shows the deployment's calls and makes none.
``backend`` is the promotion backend for environments deployed to LocalStack."""

from __future__ import annotations

from ...errors import DorcError, LocalStackError, LocalStackRunError
from ...localstack.endpoint import require_ready
from ...observer import NullObserver, Progress
from ...plan import LayerPlan
from ...result import RunResult, StepResult
from .clients import Clients, error_code
from .deploy import deploy, deployment_file, function_environments, read_deployment, stack_name
from .dryrun import dry_run  # noqa: F401  (``dorc run --localstack --dry-run``)
from .executions import execution_record, list_executions, log_events  # noqa: F401  (``dorc runs``, ``dorc logs``)
from .history import execute

TARGET = "localstack"
DEFAULT_ENV = "localstack"  # the environment whose names a run uses unless --env says otherwise
OPTIONS = ("endpoint", "deploy_first", "timeout")  # run options this target takes


def run(plans: dict[str, LayerPlan], start: str, event_json: bytes, *, project, observer=None,
        endpoint: str | None = None, progress: Progress | None = None, timeout: float | None = None,
        deploy_first: bool = True) -> RunResult:
    """Deploy (unless ``deploy_first`` is False: run what is deployed) and execute ``start``."""
    from dorc_sim.fixtures import Fixtures

    observer = observer or NullObserver()
    progress = progress or getattr(observer, "progress", None) or NullObserver().progress
    ep = require_ready(endpoint)
    if timeout is None:
        timeout = sum(fn.timeout for p in plans.values() for fn in p.functions) + 60.0
    with Fixtures.for_plans(plans, stable_ports=True) as fixtures:
        envs = function_environments(plans, fixtures)
        try:
            if deploy_first:
                deploy(plans, project=project, endpoint=ep, environments=envs, progress=progress)
            else:
                missing = [k for k, p in plans.items() if read_deployment(project.state_dir, stack_name(p)) is None]
                if missing:
                    raise LocalStackRunError(f"not deployed to LocalStack: {', '.join(missing)}",
                                             hint="run without --no-deploy, or `dorc deploy ... --target localstack`")
                _require_deployed(Clients(ep, plans[start].region), plans, ep)
        except DorcError:
            raise
        except Exception as exc:
            raise LocalStackRunError(f"deploying to LocalStack at {ep} failed: {type(exc).__name__}: {exc}",
                                     hint="fix the cause and run again; a re-run completes a half-done deployment") from None
        c = Clients(ep, plans[start].region)
        return execute(c, plans, start, event_json, observer, timeout)


def invoke_function(plan: LayerPlan, function: str, event_json: bytes, *, project, observer=None,
                    endpoint: str | None = None, deploy_first: bool = True) -> StepResult:
    """One function of the deployed layer invoked directly (deployed first unless
    ``deploy_first`` is False), with the layer's fixtures running as in ``run``."""
    from dorc_sim.fixtures import Fixtures

    from .history import invoke

    ep = require_ready(endpoint)
    plan.function(function)  # KeyError before anything is deployed
    with Fixtures.for_plans([plan], stable_ports=True) as fixtures:
        if deploy_first:
            plans = {plan.key: plan}
            deploy(plans, project=project, endpoint=ep, environments=function_environments(plans, fixtures),
                   progress=(observer or NullObserver()).progress)
        return invoke(Clients(ep, plan.region), plan, function, event_json)


def _require_deployed(c: Clients, plans: dict[str, LayerPlan], endpoint: str) -> None:
    """``--no-deploy`` trusts dorc's deployment records; a LocalStack restarted since (without
    persistence) has forgotten what they say it holds: say so before starting anything."""
    def absent(missing_code: str, call, **params) -> bool:
        try:
            call(**params)
        except Exception as exc:
            if error_code(exc) != missing_code:
                raise
            return True
        return False

    for key, plan in plans.items():
        gone = [f"state machine {plan.state_machine_name}"] if absent(
            "StateMachineDoesNotExist", c.states.describe_state_machine, stateMachineArn=plan.state_machine_arn) else []
        gone += [f"function {fn.name}" for fn in plan.functions
                 if absent("ResourceNotFoundException", c.awslambda.get_function_configuration, FunctionName=fn.name)]
        if gone:
            raise LocalStackError(
                f"{key} is recorded as deployed but LocalStack at {endpoint} does not have it (restarted?): "
                f"missing {', '.join(gone)}",
                hint="run without --no-deploy: dorc deploys it again, then runs")


def _delete_role(c: Clients, name: str) -> None:
    """IAM deletes a role only once nothing is attached to it or inlined in it."""
    for p in c.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        c.iam.detach_role_policy(RoleName=name, PolicyArn=p["PolicyArn"])
    for policy in c.iam.list_role_policies(RoleName=name)["PolicyNames"]:
        c.iam.delete_role_policy(RoleName=name, PolicyName=policy)
    c.iam.delete_role(RoleName=name)


def destroy(plan: LayerPlan, *, project, endpoint: str | None, progress: Progress) -> None:
    """Removes the layer's functions and their roles, state machine and rules (shared buckets and
    the shared states/events roles stay)."""
    ep = require_ready(endpoint)
    c = Clients(ep, plan.region)

    def delete(what: str, missing_code: str, *calls) -> None:
        """Already gone is fine: destroy must finish what an earlier destroy started."""
        try:
            for call in calls:
                call()
            progress(f"deleted {what}")
        except Exception as exc:
            if error_code(exc) != missing_code:
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
        delete(f"role {fn.role_name}", "NoSuchEntity", lambda: _delete_role(c, fn.role_name))
    deployment_file(project.state_dir, stack_name(plan)).unlink(missing_ok=True)
