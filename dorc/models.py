"""The user's vocabulary: what a pipeline *is*, with no behaviour and no knowledge of files or AWS.

Field-level rules (ranges, name shapes) live here so a bad ``__main__.py`` fails the moment it
builds the definition; rules that need the whole graph or the file system live in
``dorc.validate``.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Lambda's own defaults are 3 s / 128 MB; the original dorc used 600 s, kept for compatibility.
DEFAULT_TIMEOUT_S = 600
DEFAULT_MEMORY_MB = 512
DEFAULT_RUNTIME = "python3.12"
SUPPORTED_RUNTIMES = ("python3.11", "python3.12", "python3.13")

# A function name becomes a folder name and part of a deployed Lambda name, so it must be a
# plain identifier: never a path.
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Lambda refuses to let a function set these itself.
RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
    }
)


def _check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not a plain name: use letters, digits, '-' and '_', starting "
            "with a letter (it becomes a folder name and part of the deployed AWS name)"
        )
    return value


class InvalidFunction(Exception):
    """A ``Function(...)`` with invalid fields, carrying its name (not a ValueError on purpose:
    pydantic must not swallow it into an anonymous error of the enclosing definition)."""

    def __init__(self, name: str | None, error: ValidationError):
        self.name = name
        self.error = error
        msgs = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'function'}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        super().__init__(f"function {name or '?'}: {msgs}")


# Set while dorc reads a definition file; otherwise an invalid Function raises at once.
collected_invalid: ContextVar[list[InvalidFunction] | None] = ContextVar("dorc_invalid_functions", default=None)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class FunctionType(str, Enum):
    """What a ``NextFunction`` points at: a function of this layer or another layer's pipeline."""

    Function = "Function"
    Pipeline = "Pipeline"


class NextFunction(_Model):
    """An edge. ``type=Pipeline`` hands over to another layer (``"processed"`` in the same
    instance, or ``"instance/layer"``), the way Step Functions' ``startExecution.sync`` does."""

    name: str
    type: FunctionType = FunctionType.Function

    @field_validator("type", mode="before")
    @classmethod
    def _type_any_case(cls, v):
        if isinstance(v, str):
            for member in FunctionType:
                if member.value.lower() == v.lower():
                    return member
        return v

    @model_validator(mode="after")
    def _name_shape(self):
        if self.type == FunctionType.Pipeline.value:
            for part in self.name.split("/"):
                _check_name(part, "pipeline")
            if self.name.count("/") > 1:
                raise ValueError(f"pipeline {self.name!r}: use 'layer' or 'instance/layer'")
        else:
            _check_name(self.name, "next_function")
        return self


class Function(_Model):
    """One Lambda function: the folder ``src/<name>/lambda.py`` with ``handler(event, context)``."""

    name: str
    next_function: Union[NextFunction, str, None] = None
    description: str = ""
    timeout: Annotated[int, Field(ge=1, le=900, description="seconds")] = DEFAULT_TIMEOUT_S
    memory: Annotated[int, Field(ge=128, le=10240, description="MB")] = DEFAULT_MEMORY_MB
    runtime: str = DEFAULT_RUNTIME
    environment: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _named_errors(cls, data, handler):
        # pydantic's errors do not say *which* function was wrong; the user needs that.
        try:
            return handler(data)
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else getattr(data, "name", None)
            err = InvalidFunction(name if isinstance(name, str) else None, exc)
            bucket = collected_invalid.get()
            if bucket is None or not isinstance(data, dict):
                raise err from None
            bucket.append(err)  # keep reading the file: every broken function is reported at once
            return handler({"name": f"invalid{len(bucket)}"})  # a stand-in; the loader reports the errors

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "function name")

    @field_validator("next_function", mode="after")
    @classmethod
    def _next(cls, v):
        # A bare string is the common case: another function of the same layer.
        return NextFunction(name=v) if isinstance(v, str) else v

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, v: str) -> str:
        if v not in SUPPORTED_RUNTIMES:
            raise ValueError(f"runtime {v!r} is not supported; use one of {', '.join(SUPPORTED_RUNTIMES)}")
        return v

    @field_validator("environment")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"environment variable name {key!r} is invalid (letters, digits, '_', starting with a letter)")
            if key in RESERVED_ENV_KEYS:
                raise ValueError(f"environment variable {key!r} is reserved by AWS Lambda and cannot be set")
        return v

    @property
    def next(self) -> NextFunction | None:
        return self.next_function  # type: ignore[return-value]


class CronTrigger(_Model):
    """Start the pipeline on a schedule: an EventBridge ``cron(...)`` expression (6 fields)."""

    kind: Literal["cron"] = "cron"
    name: str
    cron: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "trigger name")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        expr = v.strip()
        if expr.startswith("cron(") and expr.endswith(")"):
            expr = expr[5:-1]
        if len(expr.split()) != 6:
            raise ValueError(
                f"cron {v!r} must have 6 fields as EventBridge expects "
                "(minutes hours day-of-month month day-of-week year), e.g. '0 6 * * ? *'"
            )
        return expr


class S3Trigger(_Model):
    """Start the pipeline when an object is created under ``key_prefix`` in ``bucket_name``."""

    kind: Literal["s3"] = "s3"
    name: str
    bucket_name: str
    key_prefix: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "trigger name")


Trigger = Annotated[Union[CronTrigger, S3Trigger], Field(discriminator="kind")]


class PipelineDefinition(_Model):
    """One layer of one instance (e.g. census/raw): its functions and what starts it."""

    file_path: str
    description: str = ""
    functions: list[Function]
    trigger: Union[Trigger, list[Trigger], None] = None

    @field_validator("functions")
    @classmethod
    def _not_empty(cls, v: list[Function]) -> list[Function]:
        if not v:
            raise ValueError("a pipeline needs at least one function")
        return v

    @property
    def triggers(self) -> list[CronTrigger | S3Trigger]:
        if self.trigger is None:
            return []
        return list(self.trigger) if isinstance(self.trigger, list) else [self.trigger]
