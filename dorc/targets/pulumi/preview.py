"""What one of dorc's stacks would hold, worked out offline (``dorc plan``, tests).

The stack's own program runs in-process under Pulumi's mocks (``mocks``): no Pulumi CLI, no
engine, no plugins, no AWS credentials. Stack references are answered from the plans of
``universal`` and ``infra-<env>``. The document shows the resources the program registers with
the inputs that matter and each package's sha256; values of environment variables are never
included, since they may come from ``secure:`` settings.

Heavy: imports ``pulumi``.
"""

from __future__ import annotations

from typing import Any, Optional

from ...errors import DorcError
from ...plan import LOCAL_ACCOUNT_ID, SHARED_STACKS, pulumi_project_name, stack_name
from ...project import LOCAL_ENVS, Project
from .mocks import PlanMocks, ProgramRun, is_secret, plain, redact, run_program, unwrap_secrets
from .stacks import shared_config, stack_spec

# Display order: what a stack reads, then what it creates, roughly in dependency order.
_TYPE_ORDER = [
    "pulumi:pulumi:StackReference",
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:s3/bucketObjectv2:BucketObjectv2",
    "aws:lambda/function:Function",
    "aws:sfn/stateMachine:StateMachine",
    "aws:cloudwatch/eventRule:EventRule",
    "aws:cloudwatch/eventTarget:EventTarget",
]


def planned_stack_outputs(project: Project, env: Optional[str], *, account_id: str = LOCAL_ACCOUNT_ID) -> dict[str, dict]:
    """What ``universal`` and ``infra-<env>`` would export, from their plans: the answers
    to a layer's stack references, keyed ``"<pulumi project>/<stack>"``."""
    from .program import infra_outputs, infra_plan_for, universal_outputs, universal_plan_for

    settings = project.settings
    out = {}
    universal = universal_plan_for(settings, shared_config(project, "universal", None))
    out[f"{pulumi_project_name(settings.project, 'universal')}/{stack_name('universal', None, None)}"] = \
        universal_outputs(universal)
    if env:
        infra = infra_plan_for(settings, env, shared_config(project, "infra", env), account_id)
        out[f"{pulumi_project_name(settings.project, 'infra')}/{stack_name('infra', None, env)}"] = infra_outputs(infra)
    return out


def run_stack(project: Project, instance: str, layer: Optional[str] = None, env: Optional[str] = None, *,
              account_id: str = LOCAL_ACCOUNT_ID, preview: bool = True) -> ProgramRun:
    """Run the program of one of dorc's stacks offline; its stack references are served from
    the plans of ``universal`` and ``infra-<env>``."""
    if env in LOCAL_ENVS and instance not in SHARED_STACKS:
        raise DorcError(f"{env!r} is a machine-local environment and is never deployed with Pulumi",
                        hint="plan a deployed environment, e.g. --env preprod")
    spec = stack_spec(project, instance, layer, env)
    mocks = PlanMocks(planned_stack_outputs(project, spec.env, account_id=account_id),
                      account=account_id, region=spec.region)
    org = str(spec.config.get("dorc:org") or "organization")
    return run_program(spec.program, project=spec.pulumi_project, stack=spec.stack, config=spec.config,
                       mocks=mocks, preview=preview, organization=org, label=spec.label)


def preview_layer(project: Project, instance: str, layer: str, env: str, *,
                  account_id: str = LOCAL_ACCOUNT_ID) -> list[dict]:
    """The resources ``<instance>-<layer>-<env>`` would hold (secrets redacted)."""
    return run_stack(project, instance, layer, env, account_id=account_id).resources()


def preview_infra(project: Project, env: str, *, account_id: str = LOCAL_ACCOUNT_ID) -> list[dict]:
    """The resources ``infra-<env>`` would hold."""
    return run_stack(project, "infra", None, env, account_id=account_id).resources()


def preview_universal(project: Project, *, account_id: str = LOCAL_ACCOUNT_ID) -> list[dict]:
    """The resources ``universal`` would hold."""
    return run_stack(project, "universal", account_id=account_id).resources()


# -- one stack as data (the --json document of `dorc plan`) ----------------------------------

def sanitized_inputs(reg) -> dict[str, Any]:
    """Inputs safe to show: secrets redacted, environment variables reduced to their names."""
    inputs = plain(redact(reg.inputs))
    env = reg.inputs.get("environment")
    if env is not None:
        variables = (unwrap_secrets(env) or {}).get("variables") or {}
        inputs["environment"] = {"variables": sorted(variables),
                                 "secret": is_secret(env) or any(is_secret(v) for v in variables.values())}
    return inputs


def _physical_name(reg, inputs: dict) -> str:
    if reg.type == "pulumi:pulumi:StackReference":
        return str(inputs.get("name") or reg.resource_id)
    if reg.type == "aws:s3/bucketObjectv2:BucketObjectv2":
        return f"s3://{inputs.get('bucket')}/{inputs.get('key')}"
    for key in ("name", "bucket"):
        if isinstance(inputs.get(key), str):
            return inputs[key]
    return reg.name


def stack_document(project, run, instance: str, layer: Optional[str], env: Optional[str], seconds: float) -> dict:
    regs = sorted((r for r in run.registrations if r.custom is not False),
                  key=lambda r: (_TYPE_ORDER.index(r.type) if r.type in _TYPE_ORDER else len(_TYPE_ORDER), r.name))
    resources = []
    for r in regs:
        inputs = sanitized_inputs(r)
        resources.append({"type": r.type, "name": r.name, "physical_name": _physical_name(r, inputs),
                          "parent": run.parent_of(r), "read": r.read, "inputs": inputs})
    packages = {}
    uploads = {res["inputs"].get("key"): res["inputs"].get("source") for res in resources
               if res["type"] == "aws:s3/bucketObjectv2:BucketObjectv2"}
    for key, digest in (run.exports.get("packages") or {}).items():
        lam = next((res for res in resources if res["type"] == "aws:lambda/function:Function"
                    and str(res["inputs"].get("s3Key", "")).endswith(f"{digest}.zip")), None)
        s3_key = lam["inputs"].get("s3Key") if lam else None
        source = uploads.get(s3_key)
        packages[key] = {"sha256": digest, "key": s3_key, "uploaded": source is not None,
                         "zip": source.get("path") if isinstance(source, dict) else None}
    return {
        "instance": instance, "layer": layer, "env": env, "stack": run.stack, "pulumi_project": run.project,
        "stack_references": run.stack_references(),
        "resources": [r for r in resources if not r["read"]],
        "packages": packages, "outputs": run.exports, "seconds": round(seconds, 3),
    }
