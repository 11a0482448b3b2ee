"""``dorc plan``: what a Pulumi stack would hold, worked out offline.

The stack's own program runs in-process under Pulumi's mocks (``dorc.pulumi_mocks``): no
Pulumi CLI, no engine, no plugins, no AWS credentials. It shows the resources the program
registers with the inputs that matter (names, runtime, memory, timeout, the *names* of the
environment variables, the state machine definition, the triggers) and each package's sha256.
Values of environment variables are never printed: they may come from ``secure:`` settings.

This module is imported by ``dorc.cli`` for every command, so it must stay light: ``pulumi``
is imported only when ``dorc plan`` runs.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional

import typer

from .cli_options import ConfigRepo
from .errors import ToolMissingError

PULUMI_EXTRA_HINT = "pip install 'dorc[pulumi]'"

# Display order: what a stack reads, then what it creates, roughly in dependency order.
_TYPE_ORDER = [
    "pulumi:pulumi:StackReference",
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
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


def require_pulumi() -> None:
    """A clear error, not an ImportError, when the optional Pulumi packages are missing."""
    try:
        import pulumi  # noqa: F401
        import pulumi_aws  # noqa: F401
    except ImportError as exc:
        raise ToolMissingError(f"dorc plan needs the Pulumi Python packages (pulumi, pulumi-aws): {exc}",
                               hint=PULUMI_EXTRA_HINT) from None


def register(app: typer.Typer) -> None:
    """Add ``dorc plan`` to the CLI (called at the end of ``dorc.cli``)."""
    app.command("plan")(plan)


def plan(
    instance: str = typer.Argument(..., help="Pipeline instance (e.g. census), or the shared stacks infra / universal."),
    layer: Optional[str] = typer.Argument(None, help="Layer, e.g. raw. Omitted: every layer of the instance."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment, e.g. prod (not needed for universal)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    account_id: Optional[str] = typer.Option(None, "--account-id", help="AWS account shown in ARNs (default 000000000000; nothing is asked from AWS)."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Show what a Pulumi stack would hold, offline: resources, key settings, package digests. Secrets are never shown."""
    require_pulumi()
    from .plan import LOCAL_ACCOUNT_ID
    from .project import find_project

    project = find_project(config_repo)
    layers = [layer] if layer or instance in ("infra", "universal") else None
    if layers is None:
        layers = project.layers(instance)
    from . import pulumi_mocks

    docs = []
    for lay in layers:
        started = time.perf_counter()
        run = pulumi_mocks.run_stack(project, instance, lay, env, account_id=account_id or LOCAL_ACCOUNT_ID)
        docs.append(stack_document(project, run, instance, lay, env, time.perf_counter() - started))
        for level, text in run.messages:
            if level in ("warning", "error"):
                sys.stderr.write(f"{level}: {text}\n")
    if as_json:
        sys.stdout.write(json.dumps({"stacks": docs}, indent=2) + "\n")
        return
    for i, doc in enumerate(docs):
        if i:
            print()
        print_stack(doc)


# -- one stack as data (the --json document), then as text ----------------------------------------

def sanitized_inputs(reg) -> dict[str, Any]:
    """Inputs safe to show: secrets redacted, environment variables reduced to their names."""
    from .pulumi_mocks import is_secret, plain, redact, unwrap_secrets

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


def _short_path(path: Any) -> str:
    """Relative to the working directory when below it: the paths are this machine's."""
    import os

    try:
        rel = os.path.relpath(str(path))
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _fmt_number(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _details(res: dict) -> list[str]:
    """The few inputs worth reading per resource type; others print every input."""
    t, i = res["type"], res["inputs"]
    if t == "aws:lambda/function:Function":
        env = i.get("environment") or {}
        names = ", ".join(env.get("variables", [])) or "(none)"
        return [
            f"runtime {i.get('runtime')} · handler {i.get('handler')} · memory {_fmt_number(i.get('memorySize'))} MB"
            f" · timeout {_fmt_number(i.get('timeout'))} s · {', '.join(i.get('architectures') or [])}",
            f"role         {i.get('role')}",
            f"code         s3://{i.get('s3Bucket')}/{i.get('s3Key')}  (sourceCodeHash {i.get('sourceCodeHash')})",
            f"environment  {names}" + ("  (values include secrets)" if env.get("secret") else "  (values not shown)"),
        ]
    if t == "aws:cloudwatch/logGroup:LogGroup":
        return [f"retention    {_fmt_number(i.get('retentionInDays'))} days"]
    if t == "aws:s3/bucketObjectv2:BucketObjectv2":
        src = i.get("source") or {}
        return [f"upload       {_short_path(src.get('path', src))}  (retained when the stack is destroyed)"]
    if t == "aws:sfn/stateMachine:StateMachine":
        lines = [f"role         {i.get('roleArn')}", "definition"]
        try:
            asl = json.loads(i.get("definition"))
            lines += ["  " + line for line in json.dumps(asl, indent=2).splitlines()]
        except (TypeError, ValueError):
            lines.append(f"  {i.get('definition')}")
        return lines
    if t == "aws:cloudwatch/eventRule:EventRule":
        if i.get("scheduleExpression"):
            return [f"schedule     {i['scheduleExpression']}"]
        return [f"event        {i.get('eventPattern')}"]
    if t == "aws:cloudwatch/eventTarget:EventTarget":
        return [f"starts       {i.get('arn')}", f"role         {i.get('roleArn')}", f"rule         {i.get('rule')}"]
    if t == "aws:iam/role:Role":
        return [f"trust        {i.get('assumeRolePolicy')}"]
    if t == "aws:iam/rolePolicy:RolePolicy":
        return [f"role         {i.get('role')}", f"policy       {i.get('policy')}"]
    skip = {"name", "bucket", "tags"}
    return [f"{k:<12} {json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(i.items()) if k not in skip]


def print_stack(doc: dict) -> None:
    what = f"{doc['instance']}/{doc['layer']}" if doc["layer"] else doc["instance"]
    env = f" ({doc['env']})" if doc["env"] and doc["layer"] else ""
    print(f"{what}{env}: stack {doc['stack']} in Pulumi project {doc['pulumi_project']}")
    print("  offline preview: resources the program registers under mocks; nothing was asked from AWS or Pulumi")
    for ref in doc["stack_references"]:
        print(f"  reads stack {ref}")
    for res in doc["resources"]:
        print(f"  + {res['type']}  {res['physical_name']}")
        for line in _details(res):
            print(f"      {line}")
    if doc["packages"]:
        print("  packages")
        for key, pkg in doc["packages"].items():
            how = ("built here; a deploy uploads it" if pkg["uploaded"]
                   else "promoted build: a deploy reuses the one in the artifact bucket")
            print(f"    {key:<12} sha256 {pkg['sha256']}  ({how})")
    if doc["outputs"]:
        print("  outputs")
        for key, value in doc["outputs"].items():
            if key == "plan_settings":  # the whole plan again; --json has it
                print(f"    {key}: (every deployed setting; see --json)")
                continue
            print(f"    {key}: {value if isinstance(value, str) else json.dumps(value)}")
    print(f"  {len(doc['resources'])} resources · {doc['seconds']:.2f} s")


def _register_on_cli() -> None:
    from .cli import app

    register(app)


_register_on_cli()  # imported at the end of dorc.cli, like dorc.cli_deploy
