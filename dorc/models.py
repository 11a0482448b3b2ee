"""The user's vocabulary: what a pipeline *is*, with no behaviour and no knowledge of files or AWS.

Field-level rules (ranges, name shapes) live here so a bad ``__main__.py`` fails the moment it
builds the definition; rules that need the whole graph or the file system live in
``dorc.validate``.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from enum import Enum
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

#: Lambda's own defaults are 3 s / 128 MB; the original dorc used 600 s, kept for compatibility.
DEFAULT_TIMEOUT_S = 600
DEFAULT_MEMORY_MB = 512
DEFAULT_RUNTIME = "python3.12"
SUPPORTED_RUNTIMES = ("python3.11", "python3.12", "python3.13")
DEFAULT_EPHEMERAL_STORAGE_MB = 512  # Lambda's default size of /tmp

# A function name becomes a folder name and part of a deployed Lambda name, so it must be a
# plain identifier: never a path. ``fullmatch`` (not ``$``, which also matches before a final
# newline): ``"f1\n"`` is not a name.
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
NAME_MAX = 64  # a Lambda name's limit, so a name alone always fits in one
# Lambda's own pattern for variable names, ``[a-zA-Z]([a-zA-Z0-9_])+``: two characters at least.
_ENV_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
DESCRIPTION_MAX = 256  # Lambda's limit on a function's description
# Lambda refuses to let a function set these itself.
RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
        # set by Lambda from the function's logging configuration (``log_format``, ``log_level``)
        "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL",
    }
)


def shown(value: str, limit: int = 60) -> str:
    """``repr`` of a user's value, cut short: a 100,000-character name must not fill the screen."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def _check_name(value: str, what: str) -> str:
    if len(value) > NAME_MAX:
        raise ValueError(
            f"{what} {shown(value)} is {len(value)} characters; use at most {NAME_MAX} (it becomes part "
            "of the deployed AWS names, which AWS limits to 64): shorten it"
        )
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"{what} {shown(value)} is not a plain name: use letters, digits, '-' and '_', starting "
            "with a letter (it becomes a folder name and part of the deployed AWS name)"
        )
    return value


class InvalidFunction(Exception):
    """A ``Function(...)`` with invalid fields, carrying its name (not a ValueError on purpose:
    pydantic must not swallow it into an anonymous error of the enclosing definition)."""

    def __init__(self, name: str | None, error: ValidationError):
        if name is not None and len(name) > NAME_MAX:
            name = f"{name[:NAME_MAX]}..."  # named, not echoed whole
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
    # The seed's spelling (``NextFunctionTypes.FUNCTION``): aliases of the same members.
    FUNCTION = "Function"
    PIPELINE = "Pipeline"


#: The seed's name for ``FunctionType``.
NextFunctionTypes = FunctionType


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
    ephemeral_storage: Annotated[int, Field(ge=512, le=10240, description="MB of /tmp")] = DEFAULT_EPHEMERAL_STORAGE_MB
    log_format: Literal["Text", "JSON"] = "Text"
    # Lambda's ApplicationLogLevel values (JSON only); None: Lambda's default, INFO
    log_level: Optional[Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]] = None
    # granted to this function's role on top of the defaults and the pipeline's grants
    permissions: list[Permission] = Field(default_factory=list)
    managed_policies: list[str] = Field(default_factory=list)  # policy ARNs attached to its role

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

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        if len(v) > DESCRIPTION_MAX:
            raise ValueError(f"description is {len(v)} characters; AWS Lambda allows {DESCRIPTION_MAX}: shorten it")
        return v

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, v: list[Permission]) -> list[Permission]:
        return _check_permissions(v)

    @field_validator("managed_policies", mode="before")
    @classmethod
    def _policies_one_or_many(cls, v):
        return _as_list(v)

    @field_validator("managed_policies")
    @classmethod
    def _policies(cls, v: list[str]) -> list[str]:
        return _policy_arns(v)

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
            if not _ENV_KEY_RE.fullmatch(key):
                raise ValueError(f"environment variable name {shown(key)} is invalid: AWS Lambda takes two or more "
                                 "letters, digits and '_', starting with a letter; rename it")
            if key in RESERVED_ENV_KEYS:
                raise ValueError(f"environment variable {key!r} is reserved by AWS Lambda and cannot be set")
        return v

    @field_validator("log_level")
    @classmethod
    def _level_needs_json(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Lambda refuses a log level with the Text format ("LogLevel is not supported when
        # LogFormat is set to Text"): say it here, not at deploy time.
        if v is not None and info.data.get("log_format", "JSON") != "JSON":  # absent: log_format itself was wrong
            raise ValueError(f"{v!r} needs log_format='JSON' (AWS Lambda refuses a log level with the Text "
                             "format): add log_format='JSON' or remove log_level")
        return v

    @property
    def next(self) -> NextFunction | None:
        return self.next_function  # type: ignore[return-value]


# -- permissions: what a function's role may do beyond the defaults ---------------------------

#: Keys a permission's resources and managed policy ARNs may use; dorc fills them in per environment.
PERMISSION_KEYS = ("project", "env", "region", "account_id")
PERMISSION_TEMPLATE_HINT = ("templates may use {project}, {env}, {region} and {account_id}; write {{ and }} for a "
                            "literal brace (an IAM policy variable is '${{aws:username}}')")
# IAM: "service:Action", the action may use * and ? wildcards; service prefixes are letters, digits, '-'.
_ACTION_RE = re.compile(r"[A-Za-z0-9-]+:[A-Za-z0-9*?]+")
_ARN_RE = re.compile(r"arn:[a-z-]+:[a-z0-9-]+:[a-z0-9-]*:[0-9*]*:.+")
_POLICY_ARN_RE = re.compile(r"arn:aws(-[a-z]+)*:iam::(aws|\d{12}):policy/[\w+=,.@/-]{1,512}")
_SAMPLE = {"project": "p", "env": "e", "region": "eu-west-2", "account_id": "123456789012"}


def fill_template(template: str, values: dict[str, str]) -> str:
    """``template`` with ``{project}``-style keys filled in; ValueError saying which key is wrong."""
    try:
        return template.format(**values)
    except KeyError as exc:
        raise ValueError(f"{shown(template)} uses unknown key {{{exc.args[0]}}}: {PERMISSION_TEMPLATE_HINT}") from None
    except (IndexError, ValueError, AttributeError) as exc:
        raise ValueError(f"{shown(template)} cannot be filled in ({exc or 'positional field'}): "
                         f"{PERMISSION_TEMPLATE_HINT}") from None


def _as_list(v):
    return [v] if isinstance(v, str) else v


class Permission(_Model):
    """One IAM statement granted to a function's role, e.g. read on a source bucket:
    ``Permission(actions=["s3:GetObject"], resources=["arn:aws:s3:::{project}-landing-{env}/*"])``.
    Effect is always Allow: dorc grants, the role denies everything else.

    Checked by the ``Function`` or ``PipelineDefinition`` that holds it (``permission_problems``),
    so a mistake is reported with the function it belongs to."""

    actions: list[str]
    resources: list[str]
    effect: str = "Allow"
    # IAM's Condition block, e.g. {"StringLike": {"s3:prefix": ["incoming/*"]}}
    conditions: Optional[dict[str, dict[str, Union[str, bool, int, list[str]]]]] = None

    @field_validator("actions", "resources", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return _as_list(v)

    def statement(self, values: dict[str, str]) -> dict:
        """The IAM statement, templates filled in with ``values`` (``PERMISSION_KEYS``)."""
        doc = {"Effect": self.effect, "Action": list(self.actions),
               "Resource": [fill_template(r, values) for r in self.resources]}
        if self.conditions:
            doc["Condition"] = self.conditions
        return doc


def permission_problems(p: Permission) -> list[str]:
    """What IAM (or dorc's templating) would refuse in ``p``, each with the fix."""
    out = []
    if p.effect != "Allow":
        out.append(f"effect {shown(p.effect)}: dorc grants only (effect='Allow'); whatever is not granted is "
                   "denied, so remove the statement instead of denying")
    if not p.actions:
        out.append("actions is empty: name what the function may do, e.g. actions=['s3:GetObject']")
    for action in p.actions:
        if action != "*" and not _ACTION_RE.fullmatch(action):
            out.append(f"action {shown(action)} is not an IAM action: write 'service:Action', e.g. "
                       "'s3:GetObject' or 'dynamodb:Query' (wildcards * and ? allowed)")
    if not p.resources:
        out.append("resources is empty: name the ARNs the actions apply to, e.g. "
                   "resources=['arn:aws:s3:::{project}-landing-{env}/*'] ('*' for all)")
    for resource in p.resources:
        try:
            filled = fill_template(resource, _SAMPLE)
        except ValueError as exc:
            out.append(f"resource {exc}")
            continue
        if filled != "*" and not _ARN_RE.fullmatch(filled):
            out.append(f"resource {shown(resource)} is not an ARN: write 'arn:aws:<service>:<region>:<account>:"
                       "<resource>', e.g. 'arn:aws:dynamodb:{region}:{account_id}:table/{project}-jobs-{env}', or '*'")
    return out


def _check_permissions(v: list[Permission]) -> list[Permission]:
    problems = [f"permission {i}: {msg}" for i, p in enumerate(v, 1) for msg in permission_problems(p)]
    if problems:
        raise ValueError("; ".join(problems))
    return v


def _policy_arns(v: list[str]) -> list[str]:
    for arn in v:
        if not _POLICY_ARN_RE.fullmatch(fill_template(arn, _SAMPLE)):  # ValueError: a bad template, said
            raise ValueError(f"{shown(arn)} is not a managed policy ARN: write 'arn:aws:iam::aws:policy/<name>' "
                             "(AWS managed) or 'arn:aws:iam::{account_id}:policy/<name>' (your own)")
    return list(dict.fromkeys(v))


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
                f"cron {shown(v)} must have 6 fields as EventBridge expects "
                "(minutes hours day-of-month month day-of-week year), e.g. '0 6 * * ? *'"
            )
        problems = cron_problems(expr)
        if len(f"cron({expr})") > 256:
            problems.append(f"cron({expr[:40]}...) is {len(expr) + 6} characters; EventBridge allows 256")
        if problems:
            raise ValueError(f"cron {shown(v)}: {'; '.join(problems)} (EventBridge refuses it; e.g. '0 6 * * ? *')")
        return expr


_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split(), 1)}
# EventBridge's fields: name, lowest, highest, names allowed for values
_CRON_FIELDS = (("minutes", 0, 59, {}), ("hours", 0, 23, {}), ("day-of-month", 1, 31, {}),
                ("month", 1, 12, _MONTHS), ("day-of-week", 1, 7, _DAYS), ("year", 1970, 2199, {}))
_CRON_STEP = re.compile(r"(?P<base>[^/]+)(?:/(?P<step>\d+))?")


def cron_problems(expr: str) -> list[str]:
    """EventBridge's rules for the six fields of ``cron(...)``: each value in its range, and exactly
    one of day-of-month and day-of-week is ``?`` (AWS refuses both given, and ``*`` counts)."""
    fields = expr.split()
    out: list[str] = []
    for (name, low, high, names), text in zip(_CRON_FIELDS, fields):
        if text == "?":
            if name not in ("day-of-month", "day-of-week"):
                out.append(f"{name} {text!r}: '?' is only allowed in day-of-month or day-of-week")
            continue
        for item in text.split(","):
            problem = _cron_item(name, low, high, names, item)
            if problem:
                out.append(f"{name} {text!r}: {problem}")
                break
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        out.append(f"day-of-month {dom!r} and day-of-week {dow!r}: exactly one of them must be '?' "
                   "(e.g. '0 6 * * ? *' every day, '0 6 ? * MON *' on Mondays)")
    return out


def _cron_item(name: str, low: int, high: int, names: dict[str, int], item: str) -> str | None:
    special = {"day-of-month": re.compile(r"L|LW|L-\d{1,2}|\d{1,2}W"), "day-of-week": re.compile(r"\w{1,3}L|\w{1,3}#[1-5]|L")}
    if name in special and special[name].fullmatch(item.upper()):
        number = re.match(r"L-(\d+)|(\d+)W|(\w{1,3})[L#]", item.upper())
        value = next((g for g in number.groups() if g), None) if number else None
        if value is None:
            return None
        n = names.get(value, int(value) if value.isdigit() else None)
        return None if n is not None and low <= n <= high else f"{value!r} is outside {low}-{high}"
    m = _CRON_STEP.fullmatch(item)
    if not m or not item:
        return f"{item!r} is not a value, range or increment"
    base, step = m.group("base"), m.group("step")
    if step is not None and int(step) < 1:
        return f"increment {item!r} must be 1 or more"
    if base == "*":
        return None
    for part in base.split("-", 1):
        n = names.get(part.upper(), int(part) if part.isdigit() else None)
        if n is None:
            allowed = f"{low}-{high}" + (f" or {'-'.join((min(names, key=names.get), max(names, key=names.get)))}" if names else "")
            return f"{part!r} is not a number ({allowed})"
        if not low <= n <= high:
            return f"{part!r} is outside {low}-{high}"
    return None


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
    # granted to every function's role of this layer
    permissions: list[Permission] = Field(default_factory=list)
    managed_policies: list[str] = Field(default_factory=list)
    #: The seed's spelling of one (or more) managed policies for every function of the layer.
    additional_lambda_role_policy_arn: Union[str, list[str], None] = None

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, v: list[Permission]) -> list[Permission]:
        return _check_permissions(v)

    @field_validator("managed_policies", "additional_lambda_role_policy_arn", mode="before")
    @classmethod
    def _policies_one_or_many(cls, v):
        return _as_list(v) if v is not None else v

    @field_validator("managed_policies", "additional_lambda_role_policy_arn")
    @classmethod
    def _policies(cls, v):
        return _policy_arns(v) if v is not None else v

    @property
    def all_managed_policies(self) -> list[str]:
        """``managed_policies`` and the seed's ``additional_lambda_role_policy_arn``, once each."""
        return list(dict.fromkeys([*self.managed_policies, *(self.additional_lambda_role_policy_arn or [])]))

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
