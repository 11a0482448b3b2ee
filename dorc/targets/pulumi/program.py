"""The Pulumi target: the plan's resources, registered with the Pulumi engine.

Three kinds of stack, each a Pulumi project of its own:

* ``universal`` (project ``<project>-universal``): the artifact bucket that holds every
  function package, shared by all environments (``CreateUniversal``).
* ``infra-<env>`` (project ``<project>-infra``): the IAM roles and the holding bucket of one
  environment (``CreateInfra``).
* ``<instance>-<layer>-<env>`` (project ``<project>-<instance>-<layer>``): one layer's log
  groups, Lambdas, packages, state machine and triggers. Its program is the layer's own
  ``__main__.py``; ``CreatePipeline(config, definition).apply()`` lands in ``apply_pipeline``.

Nothing deployed is decided here. Names, ARNs, limits, environment variables, the ASL, trust
and access policies all come from ``dorc.plan`` (the same plan the local and LocalStack targets
run); this module only translates plan fields into resource arguments. The layer stacks find the
roles and the artifact bucket through stack references, which also orders the deployments:
a layer cannot be deployed before ``universal`` and its ``infra-<env>``.

This module imports ``pulumi`` and ``pulumi_aws``; only Pulumi programs and ``dorc plan`` load it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import pulumi
import pulumi_aws as aws

from ...errors import DefinitionError, DorcError
from ...package import ARCHITECTURE, code_sha256, package_plan
from ..deployments import deployment_stamp
from .stacks import PROMOTED_PACKAGES_ENV
from ...plan import (
    InfraPlan,
    LayerPlan,
    UniversalPlan,
    artifact_key,
    build_infra_plan,
    build_plan,
    build_universal_plan,
    function_policy,
    plan_problems,
    pulumi_project_name,
    stack_name,
    stack_reference_name,
    trust_policy,
)

DEFAULT_ORG = "organization"  # Pulumi's name for "the current user's org" in stack references
CONFIG_NAMESPACE = "dorc"  # dorc:org, dorc:promoted_packages, dorc:holding_bucket
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PulumiTargetError(DorcError):
    """A stack's configuration does not fit its plan (region, promoted packages, stack name)."""


# -- what each shared stack exports: one function per stack, used by the component (real values)
# -- and by dorc's offline mocks (values from the plan), so both always agree on the keys.

def universal_outputs(plan: UniversalPlan) -> dict[str, Any]:
    return {"artifact_bucket": plan.artifact_bucket}


def infra_outputs(plan: InfraPlan) -> dict[str, Any]:
    out: dict[str, Any] = {"holding_bucket": plan.holding_bucket}
    for kind, role in plan.roles.items():
        out[f"{kind}_role_arn"] = role.arn
    out["role_names"] = {kind: role.name for kind, role in plan.roles.items()}
    return out


def infra_plan_for(settings, env: str, stack_config: Mapping[str, Any], account_id: str) -> InfraPlan:
    """The infra plan of ``infra-<env>`` from its stack config (``aws:region``,
    ``dorc:holding_bucket``). The infra program and the offline mocks both call this."""
    return build_infra_plan(settings, env, stack_config.get("aws:region") or settings.region,
                            account_id=account_id, holding_bucket=stack_config.get("dorc:holding_bucket") or None)


def universal_plan_for(settings, stack_config: Mapping[str, Any]) -> UniversalPlan:
    return build_universal_plan(settings, stack_config.get("aws:region") or settings.region)


def organization(values: Mapping[str, Any] | None = None) -> str:
    """``dorc:org`` from the Pulumi config (or the layer's stack file), else ``organization``."""
    org = pulumi.Config(CONFIG_NAMESPACE).get("org")
    if not org and values:
        org = values.get("dorc:org")
    return str(org or DEFAULT_ORG)


def _tags(tags: Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(tags.items()))


def _child(parent: pulumi.Resource, **kw) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kw)


def _require_running_program() -> None:
    """Importing pulumi is not running a program: with no engine (or mocks) attached, a
    ``__main__.py`` run as a script must fail with the same advice as when pulumi is absent."""
    if pulumi.runtime.settings.get_monitor() is None:
        raise DorcError(
            "this is a dorc pipeline definition and no Pulumi program is running",
            hint="run it with `dorc run <instance> <layer> --local`, preview it with `dorc plan`, "
                 "or deploy it with `dorc deploy`",
        )


def _settings_for(program_file: str | os.PathLike | None):
    """``dorc.toml`` above the program's folder. The file is passed (``__file__``) because the
    working directory is not the program's: dorc's Automation workspace runs it from
    ``.dorc/pulumi/<stack>/``; the Pulumi CLI from the program folder."""
    from ...project import project_of

    return project_of(Path(program_file).resolve().parent if program_file else Path.cwd()).settings


def _stack_config(namespace_keys: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for full in namespace_keys:
        ns, key = full.split(":", 1)
        value = pulumi.Config(ns).get(key)
        if value is not None:
            out[full] = value
    return out


class _Exporting(pulumi.ComponentResource):
    """A component whose ``outputs`` become stack outputs with ``export()``."""

    outputs: dict[str, Any]

    def export(self) -> "_Exporting":
        for key, value in self.outputs.items():
            pulumi.export(key, value)
        return self


class CreateUniversal(_Exporting):
    """The ``universal`` stack: the artifact bucket every environment's Lambdas load from.

    Packages are stored under their sha256 (``artifact_key``) and never overwritten, so
    versioning stays off; the bucket survives ``pulumi destroy`` attempts while it holds
    objects (``force_destroy=False``) because deployed functions point into it.
    """

    TYPE = "dorc:index:CreateUniversal"

    def __init__(self, name: str, plan: UniversalPlan, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        self.plan = plan
        self.bucket = aws.s3.Bucket(
            "artifacts", bucket=plan.artifact_bucket, force_destroy=False, tags=_tags(plan.tags),
            opts=_child(self))
        self.versioning = aws.s3.BucketVersioning(
            "artifacts-versioning", bucket=self.bucket.id,
            versioning_configuration={"status": "Disabled"}, opts=_child(self))
        self.public_access = _block_public_access("artifacts", self.bucket, self)
        self.outputs = {"artifact_bucket": self.bucket.bucket}
        self.register_outputs(self.outputs)

    @classmethod
    def for_stack(cls, program_file: str | os.PathLike | None = None, name: str = "universal") -> "CreateUniversal":
        """The component for the running ``universal`` stack, planned from the ``dorc.toml``
        above ``program_file`` (the program's ``__file__``)."""
        _require_running_program()
        if pulumi.get_stack() != stack_name("universal", None, None):
            raise PulumiTargetError(f"the universal program runs as stack {pulumi.get_stack()!r}",
                                    hint="select the stack named 'universal'")
        return cls(name, universal_plan_for(_settings_for(program_file), _stack_config(("aws:region",))))


class CreateInfra(_Exporting):
    """The ``infra-<env>`` stack: one role per service (trust and access policy from the plan)
    and the holding bucket the layers hand data over through."""

    TYPE = "dorc:index:CreateInfra"

    def __init__(self, name: str, plan: InfraPlan, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        self.plan = plan
        self.roles: dict[str, aws.iam.Role] = {}
        self.policies: dict[str, aws.iam.RolePolicy] = {}
        for kind, role in plan.roles.items():
            r = aws.iam.Role(
                f"{kind}-role", name=role.name, assume_role_policy=json.dumps(role.trust_policy),
                tags=_tags(plan.tags), opts=_child(self))
            # The inline policy carries its role's name: one policy per role, nothing to invent.
            self.policies[kind] = aws.iam.RolePolicy(
                f"{kind}-policy", role=r.name, name=role.name, policy=json.dumps(role.policy),
                opts=_child(self))
            self.roles[kind] = r
        self.holding_bucket = aws.s3.Bucket(
            "holding", bucket=plan.holding_bucket, force_destroy=False, tags=_tags(plan.tags),
            opts=_child(self))
        self.public_access = _block_public_access("holding", self.holding_bucket, self)
        # S3Triggers on the holding store (a layer started by what the previous one wrote) are
        # EventBridge rules: the bucket must send its events there.
        self.holding_events = aws.s3.BucketNotification(
            "holding-events", bucket=self.holding_bucket.id, eventbridge=True, opts=_child(self))
        # Keys as in ``infra_outputs``: the offline mocks serve that function's values.
        self.outputs = {"holding_bucket": self.holding_bucket.bucket}
        for kind, r in self.roles.items():
            self.outputs[f"{kind}_role_arn"] = r.arn
        self.outputs["role_names"] = {kind: r.name for kind, r in self.roles.items()}
        self.register_outputs(self.outputs)

    @classmethod
    def for_stack(cls, program_file: str | os.PathLike | None = None, name: str = "infra") -> "CreateInfra":
        """The component for the running ``infra-<env>`` stack: env from the stack name,
        account from the credentials, region and holding bucket from the stack config."""
        _require_running_program()
        stack = pulumi.get_stack()
        if not stack.startswith("infra-") or stack == "infra-":
            raise PulumiTargetError(f"the infra program runs as stack {stack!r}",
                                    hint="name infra stacks infra-<env>, e.g. infra-prod")
        env = stack.removeprefix("infra-")
        account = aws.get_caller_identity().account_id
        config = _stack_config(("aws:region", "dorc:holding_bucket"))
        return cls(name, infra_plan_for(_settings_for(program_file), env, config, account))


def _block_public_access(name: str, bucket: aws.s3.Bucket, parent: pulumi.Resource) -> aws.s3.BucketPublicAccessBlock:
    return aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True, opts=_child(parent))


def _logging_config(fn) -> aws.lambda_.FunctionLoggingConfigArgs:
    """Lambda's logging configuration: levels with the JSON format only (Lambda refuses them with
    Text), the system level Lambda's default INFO, the log group Lambda's default (created above)."""
    if fn.log_format != "JSON":
        return aws.lambda_.FunctionLoggingConfigArgs(log_format="Text")
    return aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", application_log_level=fn.log_level or "INFO",
                                                 system_log_level="INFO")


def _attachment_name(fn_key: str, arn: str) -> str:
    """A stable resource name per attached policy: its name and a digest of the whole ARN."""
    import hashlib

    return f"{fn_key}-managed-{arn.rsplit('/', 1)[-1]}-{hashlib.sha256(arn.encode()).hexdigest()[:6]}"


class CreateLayer(_Exporting):
    """One layer in one environment, from its ``LayerPlan``.

    Each function gets its own role (``fn.role_name``) holding exactly the plan's
    ``function_policy(fn)`` inline and ``fn.managed_policies`` attached: the layer's stack owns
    them, so they come and go with the function. The ``states`` and ``events`` roles stay shared.

    ``roles`` (``states``/``events`` -> role ARN) and ``artifact_bucket`` are inputs rather than stack references
    so the component can be built in a unit test; ``apply_pipeline`` wires the references.
    ``secret_environment`` maps an environment value that came from a ``secure:`` setting to
    the Pulumi secret that replaces it, so the deployed value is the decrypted one and Pulumi
    keeps it encrypted in state and out of previews.
    """

    TYPE = "dorc:index:CreatePipeline"

    def __init__(self, name: str, plan: LayerPlan, *, roles: Mapping[str, pulumi.Input[str]],
                 artifact_bucket: pulumi.Input[str], upload_packages: bool = True,
                 secret_environment: Mapping[str, pulumi.Input[str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        self.plan = plan
        secrets = dict(secret_environment or {})
        tags = _tags(plan.tags)
        self.log_groups: dict[str, aws.cloudwatch.LogGroup] = {}
        self.packages: dict[str, aws.s3.BucketObjectv2] = {}
        self.functions: dict[str, aws.lambda_.Function] = {}
        self.roles: dict[str, aws.iam.Role] = {}
        self.role_policies: dict[str, aws.iam.RolePolicy] = {}
        self.attachments: dict[str, list[aws.iam.RolePolicyAttachment]] = {}
        for fn in plan.functions:
            key = artifact_key(fn)
            # Created before the function, so Lambda does not create it without a retention.
            log_group = aws.cloudwatch.LogGroup(
                f"{fn.key}-logs", name=fn.log_group, retention_in_days=plan.log_retention_days, tags=tags,
                opts=_child(self))
            role = aws.iam.Role(
                f"{fn.key}-role", name=fn.role_name, assume_role_policy=json.dumps(trust_policy("lambda.amazonaws.com")),
                description=f"dorc: what {plan.key} {fn.key} may do ({plan.env})", tags=tags, opts=_child(self))
            policy = aws.iam.RolePolicy(
                f"{fn.key}-policy", role=role.name, name="dorc", policy=json.dumps(function_policy(fn)),
                opts=_child(self))
            attached = [aws.iam.RolePolicyAttachment(_attachment_name(fn.key, arn), role=role.name, policy_arn=arn,
                                                     opts=_child(self)) for arn in fn.managed_policies]
            self.roles[fn.key], self.role_policies[fn.key], self.attachments[fn.key] = role, policy, attached
            # the function's first run must find its permissions in place
            depends: list[pulumi.Resource] = [log_group, policy, *attached]
            if upload_packages:
                if not fn.package_path:
                    raise PulumiTargetError(f"{plan.key}: function {fn.key} has no package to upload")
                # Content-addressed key: every stack that uploads it uploads the same bytes, and
                # removing one stack must not delete what another environment still runs.
                package = aws.s3.BucketObjectv2(
                    f"{fn.key}-package", bucket=artifact_bucket, key=key,
                    source=pulumi.FileAsset(fn.package_path), content_type="application/zip", tags=tags,
                    opts=_child(self, retain_on_delete=True))
                self.packages[fn.key] = package
                depends.append(package)
            variables = {name: secrets.get(value, value) for name, value in fn.environment.items()}
            self.functions[fn.key] = aws.lambda_.Function(
                fn.key, name=fn.name, description=fn.description or None, role=role.arn,
                runtime=fn.runtime, handler=fn.handler, architectures=[ARCHITECTURE],
                memory_size=fn.memory, timeout=fn.timeout,
                environment=aws.lambda_.FunctionEnvironmentArgs(variables=variables),
                ephemeral_storage=aws.lambda_.FunctionEphemeralStorageArgs(size=fn.ephemeral_storage),
                logging_config=_logging_config(fn),
                s3_bucket=artifact_bucket, s3_key=key, source_code_hash=code_sha256(fn.package_sha256),
                tags=tags, opts=_child(self, depends_on=depends))
        # The ASL names the functions by their planned ARNs; depending on them makes Pulumi
        # create the functions before the state machine that invokes them.
        self.state_machine = aws.sfn.StateMachine(
            "state-machine", name=plan.state_machine_name, role_arn=roles["states"],
            definition=json.dumps(plan.asl), tags=tags,
            opts=_child(self, depends_on=list(self.functions.values())))
        self.rules: dict[str, aws.cloudwatch.EventRule] = {}
        self.targets: dict[str, aws.cloudwatch.EventTarget] = {}
        for trig in plan.triggers:
            rule = aws.cloudwatch.EventRule(
                f"{trig.key}-rule", name=trig.rule_name, description=f"starts {plan.state_machine_name}",
                schedule_expression=trig.schedule_expression,
                event_pattern=json.dumps(trig.event_pattern) if trig.event_pattern is not None else None,
                tags=tags, opts=_child(self))
            self.rules[trig.key] = rule
            self.targets[trig.key] = aws.cloudwatch.EventTarget(
                f"{trig.key}-target", rule=rule.name, arn=self.state_machine.arn, role_arn=roles["events"],
                opts=_child(self))
        self.outputs = {
            "state_machine_arn": self.state_machine.arn,
            "state_machine_name": plan.state_machine_name,
            "function_names": {fn.key: fn.name for fn in plan.functions},
            "packages": {fn.key: fn.package_sha256 for fn in plan.functions},
            "plan_digest": plan.digest(),
            # What promotion compares and shows (``dorc.promote``): settings without secrets.
            "plan_settings": plan.snapshot(),
        }
        if not pulumi.runtime.is_dry_run():
            # When this update ran: promotion only counts executions started after it.
            self.outputs["deployed_at"] = deployment_stamp()
        self.register_outputs(self.outputs)


# -- the layer program: what CreatePipeline(config, definition).apply() runs under Pulumi ------

def promoted_packages(config, plan: LayerPlan) -> dict[str, str] | None:
    """``promoted_packages`` (function key -> sha256), set by promotion: deploy the packages
    another environment already uploaded instead of building new ones. ``None`` when absent.

    ``dorc promote`` passes it in the program's environment (``DORC_PROMOTED_PACKAGES``), not in
    the stack's settings, which are the user's file: a later plain deploy must build again."""
    raw = os.environ.get(PROMOTED_PACKAGES_ENV) or pulumi.Config(CONFIG_NAMESPACE).get("promoted_packages")
    if raw is None:
        raw = config.get("promoted_packages")
    if raw is None or raw == "":
        return None
    where = f"{plan.key} ({plan.env}): promoted_packages"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise PulumiTargetError(f"{where} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PulumiTargetError(f"{where} must map function names to sha256 digests")
    expected = {fn.key for fn in plan.functions}
    if set(raw) != expected:
        raise PulumiTargetError(
            f"{where} names {', '.join(sorted(raw)) or 'no functions'}; the layer has {', '.join(sorted(expected))}",
            hint="promote again: the definition changed since the packages were promoted")
    bad = [k for k, v in raw.items() if not (isinstance(v, str) and _SHA256.match(v))]
    if bad:
        raise PulumiTargetError(f"{where}: {', '.join(sorted(bad))} is not a sha256 digest (64 hex digits)")
    return {k: str(v) for k, v in raw.items()}


def _check_region(plan: LayerPlan) -> None:
    """The ASL holds ARNs in ``plan.region``; a provider in another region would deploy
    functions the state machine cannot find."""
    region = pulumi.Config("aws").get("region")
    if region and region != plan.region:
        raise PulumiTargetError(f"{plan.key}: the stack's aws:region is {region} but the plan's region is {plan.region}",
                                hint=f"set aws:region in Pulumi.{plan.env}.yaml")


def _secret_environment(config) -> dict[str, pulumi.Output]:
    """``secure:`` settings as dorc read them (ciphertext) -> the decrypted Pulumi secret."""
    from ...project import Secret

    out: dict[str, pulumi.Output] = {}
    for full, value in config.values.items():
        if ":" not in full or not isinstance(value, Secret):
            continue
        ns, key = full.split(":", 1)
        secret = pulumi.Config(ns).get_secret(key)
        if secret is None:
            raise PulumiTargetError(
                f"{config.instance}/{config.layer}: {full} is a secure setting in Pulumi.{config.env}.yaml "
                "but the Pulumi stack has no such config", hint="deploy with `dorc deploy`, which passes the stack config")
        out[str(value)] = secret
    return out


def apply_pipeline(config, definition) -> CreateLayer:
    """Register one layer: definition -> checks -> ``LayerPlan`` -> packages -> resources."""
    _require_running_program()
    from ...loader import LoadedPipeline
    from ...validate import check_definition

    loaded = LoadedPipeline(config.instance, config.layer, Path(definition.file_path).resolve(), config, definition)
    problems = check_definition(loaded, config.project.known_layers())
    if problems:
        raise DefinitionError(problems)
    account = aws.get_caller_identity().account_id
    plan = build_plan(loaded, account_id=account)
    problems = plan_problems(plan)
    if problems:
        raise DefinitionError(problems)
    _check_region(plan)
    promoted = promoted_packages(config, plan)
    if promoted is None:
        state = config.project.state_dir
        plan = package_plan(plan, state / "build", state / "cache")
    else:
        plan = plan.with_packages(promoted)
    settings = config.project.settings
    org = organization(config.values)
    infra = pulumi.StackReference(stack_reference_name(
        org, pulumi_project_name(settings.project, "infra"), stack_name("infra", None, plan.env)))
    universal = pulumi.StackReference(stack_reference_name(
        org, pulumi_project_name(settings.project, "universal"), stack_name("universal", None, None)))
    layer = CreateLayer(
        f"{plan.instance}-{plan.layer}", plan,
        roles={kind: infra.require_output(f"{kind}_role_arn") for kind in ("states", "events")},
        artifact_bucket=universal.require_output("artifact_bucket"),
        upload_packages=promoted is None,
        secret_environment=_secret_environment(config),
    )
    return layer.export()


__all__ = [
    "CreateInfra", "CreateLayer", "CreateUniversal", "apply_pipeline", "infra_outputs", "universal_outputs",
    "infra_plan_for", "universal_plan_for", "promoted_packages",
]
