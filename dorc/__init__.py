"""dorc: one pipeline definition, run locally (each function in a Lambda-like sandbox), in LocalStack and in AWS.

The public API is importable from here; attributes load on first use so that ``dorc --help``
and ``dorc run --local`` do not pay for what they do not touch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "PipelineDefinition": "dorc.models",
    "Function": "dorc.models",
    "NextFunction": "dorc.models",
    "FunctionType": "dorc.models",
    "CronTrigger": "dorc.models",
    "S3Trigger": "dorc.models",
    "Permission": "dorc.models",
    "CreatePipeline": "dorc.pipeline",
    "PipelineConfig": "dorc.pipeline",
    "load_config": "dorc.pipeline",
    "run_pipeline": "dorc.api",
    "plan_layer": "dorc.api",
    "validate": "dorc.api",
    "find_project": "dorc.project",
    "RunResult": "dorc.result",
    "StepResult": "dorc.result",
    "RunFailed": "dorc.result",
    "DorcError": "dorc.errors",
    "DefinitionError": "dorc.errors",
    "CreateUniversal": "dorc.targets.pulumi.program",
    "CreateInfra": "dorc.targets.pulumi.program",
}

# `from dorc import *` stays light: the Pulumi components are imported by name only.
__all__ = sorted(k for k, mod in _EXPORTS.items() if not mod.endswith("pulumi.program"))


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dorc' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from .api import plan_layer, run_pipeline, validate
    from .errors import DefinitionError, DorcError
    from .models import CronTrigger, Function, FunctionType, NextFunction, Permission, PipelineDefinition, S3Trigger
    from .pipeline import CreatePipeline, PipelineConfig, load_config
    from .project import find_project
    from .result import RunFailed, RunResult, StepResult
