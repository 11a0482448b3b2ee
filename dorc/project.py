"""Finding the pipeline-config folder and reading its settings.

Layout (the seed's, kept)::

    pipeline-config/
      dorc.toml                        project settings
      src/<instance>/<layer>/__main__.py
      src/<instance>/<layer>/Pulumi.<env>.yaml
      src/<instance>/<layer>/src/<function>/lambda.py
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ProjectError

SETTINGS_FILE = "dorc.toml"
LOCAL_ENVS = ("local", "localstack")


@dataclass(frozen=True)
class Settings:
    """``dorc.toml``. Templates may use ``{project}``, ``{env}`` and ``{region}``."""

    project: str
    region: str = "eu-west-2"
    source: str = "src"
    tags: dict[str, str] = field(default_factory=dict)
    holding_bucket: str = "{project}-holding-{env}"
    artifact_bucket: str = "{project}-artifacts"
    log_retention_days: int = 14
    # Environment variables replaced when functions run on this machine (local, LocalStack):
    # values may name a sim fixture, e.g. "{sim.census_api}".
    local_environment: dict[str, str] = field(default_factory=dict)

    def render(self, template: str, env: str) -> str:
        return template.format(project=self.project, env=env, region=self.region)


@dataclass(frozen=True)
class Project:
    root: Path
    settings: Settings
    state_root: Path | None = None  # tests point this at a temporary folder

    @property
    def source_dir(self) -> Path:
        return self.root / self.settings.source

    @property
    def state_dir(self) -> Path:
        """``.dorc/`` beside the settings: run records and the local holding store."""
        return self.state_root or (self.root / ".dorc")

    def layer_dir(self, instance: str, layer: str) -> Path:
        return self.source_dir / instance / layer

    def display_path(self, path: Path) -> str:
        """A path as the user sees it in messages: from the folder that holds pipeline-config."""
        try:
            return str(Path(path).relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def instances(self) -> list[str]:
        if not self.source_dir.is_dir():
            return []
        return sorted(p.name for p in self.source_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

    def layers(self, instance: str) -> list[str]:
        inst = self.source_dir / instance
        if not inst.is_dir():
            known = ", ".join(self.instances()) or "none"
            raise ProjectError(
                f"no pipeline instance {instance!r} in {self.source_dir}",
                hint=f"known instances: {known}; create {inst}/<layer>/__main__.py",
            )
        return sorted(p.name for p in inst.iterdir() if (p / "__main__.py").is_file())

    def known_layers(self) -> set[str]:
        """Every ``instance/layer`` of the project: what a hand-over may name."""
        return {f"{i}/{lay}" for i in self.instances() for lay in self.layers(i)}

    def main_file(self, instance: str, layer: str) -> Path:
        path = self.layer_dir(instance, layer) / "__main__.py"
        if not path.is_file():
            known = ", ".join(self.layers(instance)) or "none"
            raise ProjectError(
                f"no pipeline {instance}/{layer}: {path} does not exist",
                hint=f"layers of {instance}: {known}",
            )
        return path

    def stack_config(self, instance: str, layer: str, env: str) -> dict[str, Any]:
        """The ``config:`` of ``Pulumi.<env>.yaml`` with namespaces stripped (``census:x`` -> ``x``).

        Local environments have no stack file; they use the defaults of the definition.
        """
        path = self.layer_dir(instance, layer) / f"Pulumi.{env}.yaml"
        if not path.is_file():
            if env in LOCAL_ENVS:
                return {}
            raise ProjectError(
                f"no settings for environment {env!r}: {path} does not exist",
                hint=_missing_stack_hint(path, self.settings.region),
            )
        return read_stack_config(path)


def _missing_stack_hint(path: Path, region: str) -> str:
    """Name a stack file that exists beside the missing one to copy, or give the smallest one."""
    siblings = sorted(p.name for p in path.parent.glob("Pulumi.*.yaml") if p.name != path.name)
    if siblings:
        source = "Pulumi.preprod.yaml" if "Pulumi.preprod.yaml" in siblings else siblings[0]
        return f"create it: copy {source} from the same folder to {path.name} and adjust its values, or pick another --env"
    return (f"create it, e.g. with the one line `config: {{aws:region: {region}}}` plus the settings this "
            "layer reads, or pick another --env")


def read_stack_config(path: Path) -> dict[str, Any]:
    import yaml  # only when a stack file exists

    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path} is not valid YAML: {exc}") from None
    raw = doc.get("config", {}) or {}
    if not isinstance(raw, dict):
        raise ProjectError(f"{path}: 'config' must be a mapping of 'namespace:key: value'")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        short = key.split(":", 1)[1] if ":" in key else key
        if isinstance(value, dict) and "secure" in value:
            value = Secret(value["secure"])
        out[short] = value
        out[key] = value
    return out


class Secret(str):
    """A Pulumi ``secure:`` value: never printed, never written to a run record."""

    def __repr__(self) -> str:
        return "Secret('***')"


def find_project(config_repo: str | os.PathLike | None = None) -> Project:
    """``--config-repo``, else ``$CONFIG_REPO_PATH``, else ``./pipeline-config``, else the nearest
    folder at or above the current one that holds a ``dorc.toml`` (the config repo is often its own
    checkout, and users work inside it, as git finds its root)."""
    if config_repo is None:
        config_repo = os.environ.get("CONFIG_REPO_PATH")
    if config_repo is None:
        root = _discover_root(Path.cwd())
        if root is None:
            raise ProjectError(
                f"no pipeline-config found: neither ./pipeline-config nor {Path.cwd()} or a folder above it "
                f"holds a {SETTINGS_FILE}",
                hint="pass --config-repo PATH, set CONFIG_REPO_PATH, or run dorc inside the pipeline-config "
                     "folder or the folder that holds it",
            )
    else:
        root = Path(config_repo).expanduser().resolve()
    settings_path = root / SETTINGS_FILE
    if not settings_path.is_file():
        raise ProjectError(
            f"no pipeline-config found at {root} ({SETTINGS_FILE} missing)",
            hint="pass --config-repo PATH, set CONFIG_REPO_PATH, or run dorc inside the pipeline-config folder "
                 "or the folder that holds it",
        )
    return Project(root=root, settings=load_settings(settings_path))


def _discover_root(cwd: Path) -> Path | None:
    candidate = (cwd / "pipeline-config").resolve()
    if (candidate / SETTINGS_FILE).is_file():
        return candidate
    return config_root_above(cwd)


def config_root_above(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding a ``dorc.toml``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / SETTINGS_FILE).is_file():
            return folder
    return None


def project_of(path: Path) -> "Project":
    """The project a file or folder belongs to: the nearest ``dorc.toml`` at or above it
    (a program run by the Pulumi engine knows only its own path)."""
    root = config_root_above(path)
    if root is None:
        raise ProjectError(f"no {SETTINGS_FILE} above {path}", hint="run inside a pipeline-config folder")
    return find_project(root)


def load_settings(path: Path) -> Settings:
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{path} is not valid TOML: {exc}") from None
    proj = doc.get("project", {})
    if "name" not in proj:
        raise ProjectError(f"{path}: [project] name is required", hint='add  [project]\\nname = "my-data"')
    stores = doc.get("buckets", {})
    try:
        return Settings(
            project=str(proj["name"]),
            region=str(proj.get("region", "eu-west-2")),
            source=str(proj.get("source", "src")),
            tags={str(k): str(v) for k, v in doc.get("tags", {}).items()},
            holding_bucket=str(stores.get("holding", "{project}-holding-{env}")),
            artifact_bucket=str(stores.get("artifacts", "{project}-artifacts")),
            log_retention_days=int(doc.get("logs", {}).get("retention_days", 14)),
            local_environment={str(k): str(v) for k, v in doc.get("local", {}).get("environment", {}).items()},
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ProjectError(f"{path}: {exc}") from None
