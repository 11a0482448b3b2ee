"""Run dorc's Pulumi programs offline, in-process, under ``pulumi.runtime`` mocks.

``dorc plan`` and the tests need to know what a stack *would* register without the Pulumi CLI,
its engine, provider plugins or AWS credentials. Pulumi's mocks replace the engine and the
providers; this module adds what a whole-program run needs on top of them:

* every registration is recorded with its type, logical name, inputs and parent;
* ARNs are fabricated the way AWS forms them (``arn:aws:lambda:<region>:<account>:function:<name>``)
  so a program's outputs can be compared with the plan's ARNs;
* stack references are answered from the *plans* of the referenced stacks (``infra_outputs`` /
  ``universal_outputs``), so an offline plan shows the real role ARNs and bucket names;
* secrets are redacted in everything meant to be shown.

The pitfalls of running a program more than once in one process are handled in
``install_mocks`` and ``run_program``: Pulumi keeps its root Stack, settings and config in
process-wide context variables, runs RPCs in executor threads that create event loops of
their own, and leaves futures behind when a program fails.

Heavy: imports ``pulumi``. Only ``dorc plan`` and tests load this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import json
import logging
import os
import runpy
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pulumi
from pulumi.output import Unknown as _Unknown
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc as _rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.sync_await import _sync_await

from ...errors import DorcError, ProjectError
from ...plan import LOCAL_ACCOUNT_ID

STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
REDACTED = "[secret]"
UNKNOWN_TEXT = "(known after apply)"


class PulumiProgramError(DorcError):
    """A Pulumi program failed while dorc ran it offline (the message names the program)."""


# -- values as the mock monitor sees them ------------------------------------------------------

def _map_secrets(value: Any, on_secret) -> Any:
    if _rpc.is_rpc_secret(value):
        return on_secret(value)
    if isinstance(value, dict):
        return {k: _map_secrets(v, on_secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_secrets(v, on_secret) for v in value]
    return value


def redact(value: Any) -> Any:
    """Replace wire-format secrets (``{<sig>: <secret-sig>, "value": ...}``) with ``[secret]``."""
    return _map_secrets(value, lambda secret: REDACTED)


def unwrap_secrets(value: Any) -> Any:
    """The values inside secrets: for tests and for listing *names* (never for printing values)."""
    return _map_secrets(value, lambda secret: unwrap_secrets(secret["value"]))


def is_secret(value: Any) -> bool:
    return _rpc.is_rpc_secret(value)


def plain(value: Any) -> Any:
    """JSON-friendly: assets and archives become descriptive dicts, unknowns a marker text."""
    if isinstance(value, _Unknown) or value == _rpc.UNKNOWN:
        return UNKNOWN_TEXT
    if isinstance(value, pulumi.FileArchive):
        return {"$archive": "file", "path": value.path}
    if isinstance(value, pulumi.FileAsset):
        return {"$asset": "file", "path": value.path}
    if isinstance(value, pulumi.StringAsset):
        return {"$asset": "string", "text": value.text}
    if isinstance(value, pulumi.RemoteArchive):
        return {"$archive": "remote", "uri": value.uri}
    if isinstance(value, pulumi.AssetArchive):
        return {"$archive": "assets", "assets": {k: plain(v) for k, v in value.assets.items()}}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass
class Registration:
    """One resource the program registered (or read: stack references)."""

    type: str
    name: str  # the logical (Pulumi) name
    inputs: dict  # wire format: secrets still wrapped
    custom: Optional[bool]
    provider: Optional[str]
    resource_id: Optional[str]
    read: bool  # ReadResource: StackReference, Resource.get
    parent: Optional[str] = None  # parent URN; None = the stack
    urn: Optional[str] = None
    # Resource options the engine would honour (mocks do not see them in ``new_resource``):
    # retain_on_delete, protect, dependencies (URNs).
    options: dict = field(default_factory=dict)


# RPCs run in executor threads and call the mocks synchronously there: a thread-local carries
# the request's parent and URN from the monitor to ``new_resource``.
_REQ = threading.local()


class RecordingMonitor(_mocks.MockMonitor):
    """A MockMonitor that tells the mocks each request's parent and resulting URN."""

    def _with_req(self, method, request):
        _REQ.parent = getattr(request, "parent", "") or None
        _REQ.urn = self.make_urn(request.parent, request.type, request.name)
        _REQ.options = {
            "retain_on_delete": bool(getattr(request, "retainOnDelete", False)),
            "protect": bool(getattr(request, "protect", False)),
            "dependencies": sorted(getattr(request, "dependencies", []) or []),
        }
        try:
            return method(request)
        finally:
            _REQ.parent = _REQ.urn = _REQ.options = None

    def RegisterResource(self, request):
        return self._with_req(super().RegisterResource, request)

    def ReadResource(self, request):
        return self._with_req(super().ReadResource, request)


def _arn(typ: str, name: str, state: dict, region: str, account: str) -> str:
    """ARNs in AWS's own formats for the types dorc deploys (others get a generic form)."""
    physical = state.get("name") or name
    formats = {
        "aws:iam/role:Role": f"arn:aws:iam::{account}:role/{physical}",
        "aws:lambda/function:Function": f"arn:aws:lambda:{region}:{account}:function:{physical}",
        "aws:sfn/stateMachine:StateMachine": f"arn:aws:states:{region}:{account}:stateMachine:{physical}",
        "aws:cloudwatch/eventRule:EventRule": f"arn:aws:events:{region}:{account}:rule/{physical}",
        "aws:cloudwatch/logGroup:LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{physical}",
    }
    if typ in formats:
        return formats[typ]
    svc = typ.split(":")[1].split("/")[0] if typ.count(":") >= 2 else "x"
    return f"arn:aws:{svc}:{region}:{account}:{physical}"


class PlanMocks(pulumi.runtime.Mocks):
    """Records registrations, fabricates ids and ARNs, serves stack references.

    ``stack_outputs`` is keyed ``"<pulumi project>/<stack>"``; the organization part of a
    reference is ignored so ``dorc:org`` does not have to be known offline.
    """

    def __init__(self, stack_outputs: Optional[dict[str, dict]] = None, *, account: str = LOCAL_ACCOUNT_ID,
                 region: str = "eu-west-2", call_results: Optional[dict[str, dict]] = None):
        self.stack_outputs = stack_outputs or {}
        self.account = account
        self.region = region
        self.call_results = call_results or {}
        self.registrations: list[Registration] = []
        self.calls: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        is_read = args.custom is None  # a StackReference is a read; custom is None there
        self.registrations.append(Registration(
            args.typ, args.name, copy.deepcopy(args.inputs), args.custom, args.provider or None,
            args.resource_id or None, is_read, getattr(_REQ, "parent", None), getattr(_REQ, "urn", None),
            dict(getattr(_REQ, "options", None) or {})))
        if args.typ == STACK_REFERENCE_TYPE:
            ref = args.inputs.get("name") or args.resource_id
            key = "/".join(str(ref).split("/")[-2:])
            if key not in self.stack_outputs:
                known = ", ".join(sorted(self.stack_outputs)) or "none"
                raise PulumiProgramError(f"stack reference {ref!r} is not a stack dorc plans (offline it knows: {known})")
            outs = self.stack_outputs[key]
            secret_names = sorted(k for k, v in outs.items() if _rpc.is_rpc_secret(v))
            return ref, {"name": ref, "outputs": outs, "secretOutputNames": secret_names}
        state = dict(args.inputs)
        if args.custom is False:
            return f"{args.name}_id", state  # component resources have no provider state
        if args.typ in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            state.setdefault("bucket", args.name)
            state["arn"] = f"arn:aws:s3:::{state['bucket']}"
            return args.resource_id or state["bucket"], state
        state.setdefault("arn", _arn(args.typ, args.name, state, self.region, self.account))
        state.setdefault("name", args.name)
        return args.resource_id or f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token in self.call_results:
            return self.call_results[args.token]
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": self.account, "arn": f"arn:aws:iam::{self.account}:user/dorc-plan",
                    "userId": "DORCPLAN", "id": self.account}
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        return {}


# -- running a program -------------------------------------------------------------------------

@dataclass
class ProgramRun:
    """What one program registered and exported."""

    project: str
    stack: str
    registrations: list[Registration]
    exports: dict[str, Any]
    calls: list[tuple[str, dict]] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text) the program logged

    def resources(self, *, include_components: bool = True, include_reads: bool = True,
                  redact_secrets: bool = True) -> list[dict]:
        """``{type, name, parent, inputs}`` per registration; secrets become ``[secret]``."""
        out = []
        for r in self.registrations:
            if (not include_components and r.custom is False) or (not include_reads and r.read):
                continue
            inputs = redact(r.inputs) if redact_secrets else unwrap_secrets(r.inputs)
            out.append({"type": r.type, "name": r.name, "parent": self.parent_of(r), "inputs": plain(inputs)})
        return out

    def find(self, type_: str, name: Optional[str] = None) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_ and (name is None or r.name == name)]

    def stack_references(self) -> list[str]:
        return [r.inputs.get("name") or r.resource_id for r in self.registrations if r.type == STACK_REFERENCE_TYPE]

    def duplicate_urns(self) -> list[str]:
        """The real engine rejects duplicate URNs; the mock monitor silently overwrites."""
        seen, dups = set(), []
        for r in self.registrations:
            if r.urn in seen:
                dups.append(r.urn)
            seen.add(r.urn)
        return dups

    @staticmethod
    def parent_of(r: Registration) -> Optional[str]:
        """``type::name`` of the parent resource, or None when parented to the stack."""
        if not r.parent or r.parent.split("::")[2].endswith("pulumi:pulumi:Stack"):
            return None
        return r.parent.split("::")[2].split("$")[-1] + "::" + r.parent.split("::")[3]


class _ListHandler(logging.Handler):
    """Keeps what a program logs (Pulumi's engine log goes through the mocks' logger)."""

    def __init__(self, sink: list):
        super().__init__(logging.INFO)  # the SDK's debug chatter is not the program's
        self.sink = sink

    def emit(self, record):
        self.sink.append((record.levelname.lower(), record.getMessage()))


def pulumi_config(project: str, config: Optional[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """A stack file's ``config:`` -> Pulumi's runtime config map. Keys without ``:`` get the
    project namespace; values become strings (JSON for others), as the CLI passes them.
    ``{"secure": ...}`` values are registered as secret keys."""
    flat: dict[str, str] = {}
    secret: list[str] = []
    for k, v in (config or {}).items():
        key = k if ":" in k else f"{project}:{k}"
        if isinstance(v, dict) and set(v) == {"secure"}:
            v = v["secure"]
            secret.append(key)
        flat[key] = v if isinstance(v, str) else json.dumps(v)
    return flat, secret


def install_mocks(mocks: pulumi.runtime.Mocks, *, project: str, stack: str, config: Optional[dict[str, Any]] = None,
                  preview: bool = False, organization: str = "organization", create_stack: bool = True,
                  logger: Optional[logging.Logger] = None) -> asyncio.AbstractEventLoop:
    """(Re)install mocks, config, a root Stack and a fresh event loop. Also usable from
    pytest fixtures for unit-style tests of the components (``@pulumi.runtime.test``)."""
    flat, secret_keys = pulumi_config(project, config)
    # A fresh loop: tasks left over from a previous (possibly failed) run cannot leak in.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # Pulumi runs each RPC via run_in_executor and the MockMonitor calls
    # asyncio.get_event_loop() in the worker thread, creating a loop per thread that nobody
    # closes (fd leak, "Exception ignored in BaseEventLoop.__del__" at exit). Workers get
    # loops we own, closed in ``_teardown``.
    worker_loops: list[asyncio.AbstractEventLoop] = []

    def _init_worker():
        wl = asyncio.new_event_loop()
        asyncio.set_event_loop(wl)
        worker_loops.append(wl)

    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(thread_name_prefix="dorc-pulumi-mock",
                                                                    initializer=_init_worker))
    loop._dorc_worker_loops = worker_loops  # type: ignore[attr-defined]
    # After a failure, dangling Output futures log "Future exception was never retrieved"
    # when collected; keep those off the user's terminal.
    loop.set_exception_handler(lambda _loop, _ctx: None)
    # Config is a process-wide ContextVar: replace it entirely.
    pulumi.runtime.set_all_config(flat, secret_keys)
    # set_mocks() creates (and at once finishes) a root Stack only if ROOT is None. For a
    # whole-program run, run_in_stack() must create it (as under the CLI) so exports work:
    # park a placeholder in ROOT while set_mocks runs.
    _settings.ROOT.set(None if create_stack else object())
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview,
                             monitor=RecordingMonitor(mocks), organization=organization, logger=logger)
    if not create_stack:
        _settings.ROOT.set(None)
    _settings.SETTINGS.outputs.clear()
    return loop


def _teardown(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the program left running, close every loop, and restore Pulumi's
    import-time settings: code that merely imports pulumi must not see a stale stack."""
    _settings.ROOT.set(None)
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    with contextlib.suppress(Exception):
        loop.run_until_complete(loop.shutdown_default_executor())
    for wl in getattr(loop, "_dorc_worker_loops", []):
        wl.close()
    loop.close()
    asyncio.set_event_loop(None)
    pulumi.runtime.set_all_config({}, [])
    _settings.configure(_settings.Settings(stack="stack", project="project", root_directory="root_directory",
                                           organization="organization"))


def run_program(program: Union[str, os.PathLike, Callable[[], Any]], *, project: str, stack: str,
                config: Optional[dict[str, Any]] = None, mocks: Optional[PlanMocks] = None, preview: bool = True,
                organization: str = "organization", label: Optional[str] = None) -> ProgramRun:
    """Run one Pulumi program (a ``__main__.py``, its folder, or a callable) under mocks.

    As the CLI does: cwd = the program's folder, the folder first on ``sys.path``,
    ``__name__ == "__main__"``. Modules imported from the folder are dropped afterwards so
    the next program's files of the same name load fresh. Safe to call repeatedly.
    A ``DorcError`` from the program passes through; any other failure becomes a
    ``PulumiProgramError`` naming the program (the original is its ``__cause__``).
    """
    from ...loader import install_legacy_imports

    mocks = mocks or PlanMocks()
    messages: list[tuple[str, str]] = []
    logger = logging.getLogger(f"dorc.pulumi.{id(messages)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_ListHandler(messages))
    if callable(program):
        func, workdir = program, None
        label = label or getattr(program, "__name__", "program")
    else:
        path = Path(program).resolve()
        if path.is_dir():
            path = path / "__main__.py"
        if not path.is_file():
            raise ProjectError(f"no Pulumi program at {path}")
        workdir = str(path.parent)
        label = label or str(path)
        func = lambda: runpy.run_path(str(path), run_name="__main__")  # noqa: E731
    # Layers written for the seed import ``infrastructure.core...``: dorc's loader convention.
    install_legacy_imports()
    loop = install_mocks(mocks, project=project, stack=stack, config=config, preview=preview,
                         organization=organization, create_stack=False, logger=logger)
    before = set(sys.modules)
    old_cwd, old_path = os.getcwd(), list(sys.path)
    try:
        if workdir:
            os.chdir(workdir)
            sys.path.insert(0, workdir)
        # run_in_stack is the CLI's own entry: it creates the root Stack, runs the program and
        # waits for every RPC and output. It runs in a Task with a *copied* context, so the
        # Stack it sets as ROOT must be captured from inside.
        holder: dict = {}

        def entry():
            holder["root"] = _settings.get_root_resource()
            return func()

        _sync_await(pulumi.runtime.run_in_stack(entry))
        root = holder.get("root")
        exports = _sync_await(_resolve(root.outputs)) if root is not None else {}
    except DorcError:
        raise
    except Exception as exc:
        raise PulumiProgramError(f"{label} failed under dorc's offline mocks: {type(exc).__name__}: {exc}") from exc
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path
        if workdir:
            for name in set(sys.modules) - before:
                f = getattr(sys.modules.get(name), "__file__", None)
                if f and os.path.abspath(f).startswith(workdir + os.sep):
                    sys.modules.pop(name, None)
        _teardown(loop)
        logger.handlers.clear()
    result = ProgramRun(project, stack, list(mocks.registrations), exports, list(mocks.calls), messages)
    if result.duplicate_urns():
        raise PulumiProgramError(f"{label} registers the same resource twice: {', '.join(result.duplicate_urns())}")
    return result


async def _resolve(outputs: dict) -> dict:
    res = {}
    for k, v in outputs.items():
        o = pulumi.Output.from_input(v)
        if not await o.is_known():
            res[k] = UNKNOWN_TEXT
            continue
        val = await o.future()
        res[k] = REDACTED if await o.is_secret() else plain(val)
    return res
