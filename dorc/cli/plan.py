"""``dorc plan``: what a Pulumi stack would hold, worked out offline (``dorc.api.plan_stacks``),
shown as text or JSON. Values of environment variables are never printed."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

from .options import ConfigRepo


def plan(
    instance: str = typer.Argument(..., help="Pipeline instance (e.g. census), or the shared stacks infra / universal."),
    layer: Optional[str] = typer.Argument(None, help="Layer, e.g. raw. Omitted: every layer of the instance."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment, e.g. prod (not needed for universal)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    asl: bool = typer.Option(False, "--asl", help="Print each state machine's definition (ASL) in full, not its one-line summary."),
    account_id: Optional[str] = typer.Option(None, "--account-id", help="AWS account shown in ARNs (default 000000000000; nothing is asked from AWS)."),
    config_repo: Optional[str] = ConfigRepo,
):
    """Show what a Pulumi stack would hold, offline: resources, key settings, package digests. Secrets are never shown."""
    from .. import api

    docs = api.plan_stacks(instance, layer, env=env, account_id=account_id, config_repo=config_repo)
    for doc in docs:
        for message in doc.pop("messages", []):
            sys.stderr.write(f"{message['level']}: {message['text']}\n")
    if as_json:
        sys.stdout.write(json.dumps({"stacks": docs}, indent=2) + "\n")
        return
    for i, doc in enumerate(docs):
        if i:
            print()
        print_stack(doc, asl=asl)


# -- one stack as text ------------------------------------------------------------------------

def _fmt_number(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _details(res: dict, asl: bool = False) -> list[str]:
    """The few inputs worth reading per resource type; others print every input. A state
    machine's definition as one line ("7 states: function1 → function2, ...") unless ``asl``."""
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
        from ..render import shown_path

        src = i.get("source") or {}
        return [f"upload       {shown_path(src.get('path', src))}  (retained when the stack is destroyed)"]
    if t == "aws:sfn/stateMachine:StateMachine":
        lines = [f"role         {i.get('roleArn')}"]
        try:
            definition = json.loads(i.get("definition"))
        except (TypeError, ValueError):
            return lines + ["definition", f"  {i.get('definition')}"]
        if not asl:
            from ..describe import asl_summary

            return lines + [f"definition   {asl_summary(definition)}  (--asl shows it in full)"]
        return lines + ["definition"] + ["  " + line for line in json.dumps(definition, indent=2).splitlines()]
    if t == "aws:cloudwatch/eventRule:EventRule":
        if i.get("scheduleExpression"):
            return [f"schedule     {i['scheduleExpression']}"]
        return [f"event        {i.get('eventPattern')}"]
    if t == "aws:cloudwatch/eventTarget:EventTarget":
        return [f"starts       {i.get('arn')}", f"role         {i.get('roleArn')}", f"rule         {i.get('rule')}"]
    if t == "aws:iam/role:Role":
        return [f"trust        {i.get('assumeRolePolicy')}"]
    if t == "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
        return [f"role         {i.get('role')}", f"policy       {i.get('policyArn')}"]
    if t == "aws:iam/rolePolicy:RolePolicy":
        return [f"role         {i.get('role')}", f"policy       {i.get('policy')}"]
    skip = {"name", "bucket", "tags"}
    return [f"{k:<12} {json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(i.items()) if k not in skip]


def permission_lines(fn: dict) -> list[str]:
    """A planned function's effective permissions (``FunctionPlan`` as data): its role, one line
    per statement with its source, the managed policies attached. ``dorc list`` shows the same."""
    from ..permissions import Grant

    lines = [f"{fn['key']}  role {fn['role_name']}"]
    lines += [f"  {Grant(**g).line()}" for g in fn.get("grants") or []]
    lines += [f"  managed policy {arn}" for arn in fn.get("managed_policies") or []]
    return lines


def list_permission_lines(fn, holding_bucket: str) -> list[str]:
    """``dorc list``'s shorter form: the defaults every function has in one line, then one line per
    other statement and managed policy (``dorc plan`` shows the defaults in full)."""
    from ..permissions import DEFAULT

    lines = [f"role {fn.role_name}: default logs + read/write s3://{holding_bucket}"]
    lines += [g.line() for g in fn.grants if g.source != DEFAULT]
    lines += [f"managed policy {arn}" for arn in fn.managed_policies]
    return lines


def print_stack(doc: dict, *, asl: bool = False) -> None:
    what = f"{doc['instance']}/{doc['layer']}" if doc["layer"] else doc["instance"]
    env = f" ({doc['env']})" if doc["env"] and doc["layer"] else ""
    print(f"{what}{env}: stack {doc['stack']} in Pulumi project {doc['pulumi_project']}")
    print("  offline preview: resources the program registers under mocks; nothing was asked from AWS or Pulumi")
    for ref in doc["stack_references"]:
        print(f"  reads stack {ref}")
    for res in doc["resources"]:
        print(f"  + {res['type']}  {res['physical_name']}")
        for line in _details(res, asl):
            print(f"      {line}")
    functions = (doc["outputs"].get("plan_settings") or {}).get("functions") or []
    if functions:
        print("  permissions (each function's own role: what it may do, and where each grant came from)")
        for fn in functions:
            for line in permission_lines(fn):
                print(f"    {line}")
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
