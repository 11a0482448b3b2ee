"""What a pipeline's ``__main__.py`` calls: ``load_config`` and ``CreatePipeline(...).apply()``.

The same file is read by dorc (which only *captures* the definition) and, later, run by the
Pulumi engine as a program. ``apply()`` therefore decides by context: under dorc's loader it
records and returns; under Pulumi it builds the resources from the plan.
"""

from __future__ import annotations

import contextvars
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DorcError, ProjectError
from .models import PipelineDefinition


@dataclass
class Capture:
    """What dorc's loader collects while it executes a ``__main__.py`` (``dorc.loader``)."""

    env: str
    project: Any  # dorc.project.Project; typed loosely to keep this module import-light
    definitions: list[tuple["PipelineConfig", PipelineDefinition]] = field(default_factory=list)


CAPTURE: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("dorc_capture", default=None)


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of one layer in one environment: the project's ``dorc.toml`` plus the stack's
    ``Pulumi.<env>.yaml``. Read values with ``config.get("key", default)``."""

    project: Any
    instance: str
    layer: str
    env: str
    values: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def require(self, key: str) -> Any:
        if key not in self.values:
            raise ProjectError(
                f"{self.instance}/{self.layer}: setting {key!r} is missing for environment {self.env!r}",
                hint=f"add it under config: in Pulumi.{self.env}.yaml",
            )
        return self.values[key]

    @property
    def region(self) -> str:
        return self.values.get("aws:region") or self.project.settings.region

    @property
    def holding_bucket(self) -> str:
        return self.values.get("holding_bucket") or self.project.settings.render(
            self.project.settings.holding_bucket, self.env
        )


def _under_pulumi() -> bool:
    """True only while the Pulumi engine (or its mocks) runs a program, not merely when imported."""
    if "pulumi" not in sys.modules:
        return False
    try:
        from pulumi.runtime import settings

        return settings.get_monitor() is not None
    except Exception:
        return False


def _current_env() -> str:
    cap = CAPTURE.get()
    if cap is not None:
        return cap.env
    if _under_pulumi():  # running as a Pulumi program: the stack name ends in -<env>
        import pulumi

        return pulumi.get_stack().rsplit("-", 1)[-1]
    return os.environ.get("DORC_ENV", "local")


def load_config(main_file: str | os.PathLike | None = None) -> PipelineConfig:
    """The configuration of the layer whose ``__main__.py`` calls this, for the current env."""
    from .project import project_of

    if main_file is None:
        main_file = inspect.stack()[1].filename
    layer_dir = Path(main_file).resolve().parent
    cap = CAPTURE.get()
    project = cap.project if cap is not None else project_of(layer_dir)
    instance, layer = layer_dir.parent.name, layer_dir.name
    env = _current_env()
    values = project.stack_config(instance, layer, env)
    return PipelineConfig(project=project, instance=instance, layer=layer, env=env, values=values)


class SeedConfig:
    """The seed's ``utils.config`` classes (``Config(universal=UniversalConfig(region=..., project=...),
    vpc_id=..., ...)``, ``LayerConfig``, ``rAPIdConfig``), accepted so that the seed's generated
    ``__main__.py`` loads unchanged. Their values are not used: dorc's settings are ``dorc.toml``
    and ``Pulumi.<env>.yaml``, so ``CreatePipeline`` takes ``load_config`` of the definition's file."""

    def __init__(self, **values: Any):
        self.values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None


class CreatePipeline:
    """Declares one layer. Under dorc, ``apply()`` only records the definition."""

    def __init__(self, config: PipelineConfig, definition: PipelineDefinition):
        if not isinstance(definition, PipelineDefinition):
            raise TypeError("CreatePipeline(config, definition): definition must be a PipelineDefinition")
        if isinstance(config, SeedConfig):
            config = load_config(definition.file_path)
        self.config = config
        self.definition = definition

    def apply(self):
        cap = CAPTURE.get()
        if cap is not None:
            cap.definitions.append((self.config, self.definition))
            return None
        if _under_pulumi():
            from .registry import pulumi_program

            return pulumi_program().apply_pipeline(self.config, self.definition)
        raise DorcError(
            f"{self.definition.file_path} is a dorc pipeline definition, not a script",
            hint="run it with `dorc run <instance> <layer> --local`, or deploy it with `dorc deploy`",
        )
