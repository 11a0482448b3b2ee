"""dorc's Pulumi stacks: for each, the program, its settings, its names and its workspace.

One ``StackSpec`` serves both the engine (``dorc deploy``/``destroy``/``promote``) and the offline
preview (``dorc plan``), so a deploy and a preview of the same stack can never disagree on
which program, which settings file or which names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from ...errors import DorcError, ProjectError
from ...plan import SHARED_STACKS, pulumi_project_name, stack_name
from ...project import Project, Secret, read_stack_config

PROMOTED_PACKAGES_ENV = "DORC_PROMOTED_PACKAGES"
"""Set in the program's environment by ``dorc promote``: function -> sha256 of the packages to
deploy instead of a fresh build. Never written to the user's settings file."""


@dataclass(frozen=True)
class StackSpec:
    """Where one of dorc's stacks comes from and what it is called."""

    kind: str  # "universal" | "infra" | "layer"
    instance: str
    layer: Optional[str]
    env: Optional[str]
    pulumi_project: str
    stack: str
    program: Path  # the user's __main__.py
    settings_file: Optional[Path]  # the user's Pulumi.<stack env>.yaml, when it exists
    config: dict[str, Any]  # its values, Pulumi-style: namespaced keys, {"secure": ...} for secrets
    region: str
    workspace_root: Path  # generated workspaces live in <workspace_root>/<stack>/
    program_env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.kind == "layer":
            return f"{self.instance}/{self.layer} ({self.env})"
        return self.stack

    def promoting(self, packages: dict[str, str] | None) -> "StackSpec":
        """The same stack, deployed with existing packages instead of a fresh build."""
        if not packages:
            return self
        return replace(self, program_env={**self.program_env,
                                          PROMOTED_PACKAGES_ENV: json.dumps(packages, sort_keys=True)})


def _pulumi_style(values: dict[str, Any]) -> dict[str, Any]:
    """dorc's reading of a stack file (short and namespaced keys) -> namespaced keys only,
    with ``secure:`` values marked as Pulumi expects them."""
    out = {}
    for key, value in values.items():
        if ":" in key:
            out[key] = {"secure": str(value)} if isinstance(value, Secret) else value
    return out


def _shared_settings_file(project: Project, kind: str, env: Optional[str]) -> Path:
    """``infra/Pulumi.<env>.yaml`` or ``universal/Pulumi.universal.yaml`` (optional files)."""
    return project.root / kind / f"Pulumi.{env if kind == 'infra' else stack_name('universal', None, None)}.yaml"


def shared_config(project: Project, kind: str, env: Optional[str]) -> dict[str, Any]:
    path = _shared_settings_file(project, kind, env)
    return _pulumi_style(read_stack_config(path)) if path.is_file() else {}


def stack_spec(project: Project, instance: str, layer: Optional[str] = None, env: Optional[str] = None) -> StackSpec:
    """The stack of ``universal``, ``infra --env ENV`` or ``<instance> <layer> --env ENV``."""
    settings = project.settings
    if instance in SHARED_STACKS:
        if layer:
            raise DorcError(f"{instance} is a shared stack and has no layers", hint=f"dorc plan {instance} --env ENV")
        if instance == "infra" and not env:
            raise DorcError("infra needs an environment", hint="dorc plan infra --env prod")
        env = env if instance == "infra" else None
        program = project.root / instance / "__main__.py"
        if not program.is_file():
            raise ProjectError(f"no {instance} program: {program} does not exist",
                               hint=f"create {project.root / instance}/__main__.py (see dorc's pipeline-config)")
        settings_file = _shared_settings_file(project, instance, env)
        config = shared_config(project, instance, env)
        kind = instance
    else:
        if not layer:
            raise DorcError(f"which layer of {instance}?", hint=f"layers: {', '.join(project.layers(instance))}")
        if not env:
            raise DorcError("a pipeline layer needs an environment", hint=f"dorc plan {instance} {layer} --env prod")
        program = project.main_file(instance, layer)
        settings_file = program.parent / f"Pulumi.{env}.yaml"
        config = _pulumi_style(project.stack_config(instance, layer, env))
        kind = "layer"
    spec = StackSpec(kind=kind, instance=instance, layer=layer, env=env,
                     pulumi_project=pulumi_project_name(settings.project, instance, layer),
                     stack=stack_name(instance, layer, env), program=program,
                     settings_file=settings_file if settings_file.is_file() else None, config=config,
                     region=str(config.get("aws:region") or settings.region),
                     workspace_root=project.state_dir / "pulumi")
    _check_pulumi_yaml(spec)
    return spec


def _check_pulumi_yaml(spec: StackSpec) -> None:
    """The program folder's ``Pulumi.yaml`` must name the project dorc references."""
    path = spec.program.parent / "Pulumi.yaml"
    if not path.is_file():
        return  # offline runs do not need it; deploys do
    import yaml

    try:
        name = (yaml.safe_load(path.read_text()) or {}).get("name")
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path} is not valid YAML: {exc}") from None
    if name != spec.pulumi_project:
        raise ProjectError(f"{path} names the Pulumi project {name!r}; dorc references it as {spec.pulumi_project!r}",
                           hint=f"set `name: {spec.pulumi_project}` in {path}")
