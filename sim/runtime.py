"""Lambda's Python runtime, emulated in this process: context, environment, timeout, logs, errors.

Standard library only, on purpose: the same module runs handlers for the in-process target and,
as a subprocess, for dorc's LocalStack executor plugin, whose Python is not the user's.

What it reproduces, because handlers can observe it:
- the module is imported once per function ("cold start") from the function's own folder, so
  same-named ``lambda.py`` and helper modules of different functions never see each other;
- Lambda's environment variables plus the function's own are set around each call and restored;
- the event is the JSON text the caller sent, the result must survive ``json.dumps``;
- a call running past its timeout fails as "Task timed out after N.NN seconds";
- ``sys.exit()`` fails the call (Runtime.ExitError) instead of ending the host process, and so
  does ``os._exit()`` when the process is shared with dorc (in-process runs); the next call is
  then a cold start, as after a crashed Lambda runtime;
- output is framed as in CloudWatch: START, the handler's own lines, END, REPORT;
- writing a log line costs the function next to nothing, as in Lambda: the time the sink spends
  on a line (rendering it on a terminal) is not the handler's, neither for its timeout nor for
  its Duration nor for ``get_remaining_time_in_millis()``.
"""

from __future__ import annotations

import contextlib
import decimal
import importlib.util
import io
import json
import logging
import operator
import os
import resource
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

LogSink = Callable[[str], None]


@dataclass(frozen=True)
class FunctionSpec:
    """What the runtime needs of a deployed function (a subset of dorc's FunctionPlan)."""

    name: str
    source_dir: str
    handler: str = "lambda.handler"
    runtime: str = "python3.12"
    memory: int = 128
    timeout: float = 3.0
    environment: dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    account_id: str = "000000000000"

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.name}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


@dataclass
class InvocationError:
    type: str
    message: str
    stack_trace: list[str] = field(default_factory=list)

    def to_lambda(self) -> dict[str, Any]:
        """The shape Lambda returns for a function error."""
        return {"errorMessage": self.message, "errorType": self.type, "stackTrace": self.stack_trace}


@dataclass
class InvocationResult:
    request_id: str
    payload: bytes | None  # the JSON the function returned, as Lambda would send it on
    error: InvocationError | None
    duration_ms: float
    init_duration_ms: float | None
    max_memory_mb: int
    logs: str

    @property
    def ok(self) -> bool:
        return self.error is None


class _CallClock:
    """The call's own time: wall time minus the time the handler waited on the log sink.

    The sink is dorc's (a terminal, a file); in Lambda a ``print`` hands its line to a pipe and
    the function goes on. So the clock stops while the thread running the handler (``owner``)
    is in the sink, and the timeout, the REPORT's Duration and ``get_remaining_time_in_millis()``
    read it. Lines from the handler's own threads do not stop it: the handler does not wait for
    them (when it prints meanwhile and waits for the sink, that wait stops the clock).
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.start = time.monotonic()
        self.paused = 0.0
        self.owner = threading.get_ident()
        self.inside = 0  # the owner's sink calls in progress
        self.alarm_pending = False  # SIGALRM came during the owner's sink call: decided when it returns

    def elapsed(self) -> float:
        return time.monotonic() - self.start - self.paused

    def remaining(self) -> float:
        return self.timeout - self.elapsed()

    def check_alarm(self) -> None:
        """The timer expired: time out, or wait again for the time the sink added."""
        remaining = self.remaining()
        if remaining <= 0.0005:
            raise _TimedOut()
        signal.setitimer(signal.ITIMER_REAL, remaining)

    def on_alarm(self, signum, frame) -> None:
        """SIGALRM's handler, in the main thread, which runs the handler: if it is in the sink
        now, the sink call decides when it returns (a timeout there would be the sink's)."""
        if self.inside:
            self.alarm_pending = True
            return
        self.check_alarm()


class LambdaContext:
    """The ``context`` argument, with the attributes and method Lambda's runtime provides."""

    def __init__(self, spec: FunctionSpec, request_id: str, clock: _CallClock, log_stream: str):
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = str(spec.memory)  # a string in Lambda too
        self.aws_request_id = request_id
        self.log_group_name = spec.log_group
        self.log_stream_name = log_stream
        self.identity = None
        self.client_context = None
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._clock.remaining() * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


_NO_EVENT = object()


class _TimedOut(BaseException):
    """BaseException so that a handler's ``except Exception`` cannot swallow the timeout."""


class _ProcessExit(BaseException):
    """What ``os._exit(code)`` raises while an in-process handler runs, instead of ending dorc."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class _ExitGuard:
    """While a handler shares dorc's process, ``os._exit`` fails its call instead of ending the
    process (``sys.exit`` needs no such help: SystemExit is an exception already).

    The guard also remembers the call, so a handler that catches the exception (``except
    BaseException``) still fails: in Lambda its process would be gone. Guards nest (a handler
    running another function in-process); ``os._exit`` is put back when the outermost ends,
    always. Code that took its own reference meanwhile (``from os import _exit`` in lambda.py)
    keeps the replacement: outside any guard it ends the process as the original does.
    """

    _active: list["_ExitGuard"] = []
    _saved: Callable[[int], Any] | None = None

    def __init__(self) -> None:
        self.code: int | None = None

    def __enter__(self) -> "_ExitGuard":
        cls = _ExitGuard
        if not cls._active:
            cls._saved = os._exit
            os._exit = _guarded_exit
        cls._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        cls = _ExitGuard
        cls._active.remove(self)
        if not cls._active and cls._saved is not None:
            os._exit = cls._saved
            cls._saved = None


_real_os_exit = os._exit


def _guarded_exit(code: int) -> None:
    code = operator.index(code)  # os._exit's own TypeError for anything but an integer
    if _ExitGuard._active:
        guard = _ExitGuard._active[-1]
        if guard.code is None:
            guard.code = code
        raise _ProcessExit(code)
    (_ExitGuard._saved or _real_os_exit)(code)


class _LineWriter(io.TextIOBase):
    """Replaces stdout/stderr during a call: whole lines go to the sink and into the log."""

    def __init__(self, emit: LogSink):
        self._emit = emit
        self._buf = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._emit(line)
        return len(s)

    def flush(self) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf = ""


class _LambdaLogHandler(logging.Handler):
    """Lambda's format for the root logger: ``[LEVEL]\\ttimestamp\\trequest id\\tmessage``."""

    def __init__(self, emit: LogSink, request_id: str):
        super().__init__()
        self._emit = emit
        self._request_id = request_id

    def emit(self, record: logging.LogRecord) -> None:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        try:
            msg = record.getMessage()
            if record.exc_info:
                msg += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        except Exception:  # a bad log call must not fail the handler
            msg = str(record.msg)
        for i, line in enumerate(msg.split("\n")):
            self._emit(f"[{record.levelname}]\t{ts}\t{self._request_id}\t{line}" if i == 0 else line)


def _json_default(obj: Any) -> Any:
    # Lambda's runtime serialises Decimal (common with DynamoDB) as a number.
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def lambda_environment(spec: FunctionSpec, log_stream: str) -> dict[str, str]:
    """The variables Lambda sets for every function, before the function's own."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "LAMBDA_TASK_ROOT": spec.source_dir,
        "LAMBDA_RUNTIME_DIR": str(Path(__file__).parent),
        "_HANDLER": spec.handler,
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        **spec.environment,
    }


class _Environ:
    """Sets variables for the duration of a call and restores the caller's environment exactly,
    including whatever the handler itself set, changed or removed."""

    def __init__(self, values: dict[str, str]):
        self._values = values
        self._saved: dict[str, str] = {}

    def __enter__(self):
        self._saved = dict(os.environ)
        os.environ.update(self._values)
        return self

    def __exit__(self, *exc):
        current = os.environ
        for k in [k for k in current if k not in self._saved]:
            del current[k]
        for k, v in self._saved.items():
            if current.get(k) != v:
                current[k] = v


class FunctionRuntime:
    """One function's execution environment. ``invoke`` may be called many times (warm starts)."""

    def __init__(self, spec: FunctionSpec, sink: LogSink | None = None, *, isolate: bool = True,
                 log_stream: str | None = None):
        """``isolate``: share the process with other functions (in-process runs). A worker that
        hosts a single function (the LocalStack executor) keeps its code folder on ``sys.path``
        for good, as Lambda does with ``/var/task``."""
        self.spec = spec
        self._isolate = isolate
        self._sink = sink or (lambda line: None)
        self._handler: Callable[[Any, Any], Any] | None = None
        self._folder = os.path.realpath(spec.source_dir)
        # This function's own modules (lambda.py, its helpers) between calls: kept warm as in a
        # Lambda container, but out of sys.modules so another function's same names resolve to
        # that function's files.
        self._own_modules: dict[str, Any] = {}
        self._log_stream = log_stream or time.strftime("%Y/%m/%d", time.gmtime()) + f"/[$LATEST]{uuid.uuid4().hex}"

    # -- one call ---------------------------------------------------------------------------
    def invoke(self, event_json: str | bytes, request_id: str | None = None, *, event: Any = _NO_EVENT) -> InvocationResult:
        """``event``: the already-parsed ``event_json``, handed over by a caller that parsed it
        anyway and keeps no reference to it (saves a second ``json.loads`` per hop)."""
        request_id = request_id or str(uuid.uuid4())
        lines: list[str] = []
        sink, monotonic, get_ident = self._sink, time.monotonic, threading.get_ident
        clock: _CallClock | None = None  # while the function runs: sink time is not its time

        def emit(line: str) -> None:
            lines.append(line)
            c = clock
            if c is None or get_ident() != c.owner:
                sink(line)
                return
            # in this order: an alarm between any two of these lines is either decided by the
            # signal handler on the updated clock or left pending for the check below
            c.inside += 1
            t0 = monotonic()
            try:
                sink(line)
            finally:
                c.paused += monotonic() - t0
                c.inside -= 1
                if c.alarm_pending and not c.inside:
                    c.alarm_pending = False
                    c.check_alarm()

        emit(f"START RequestId: {request_id} Version: $LATEST")
        clock = _CallClock(self.spec.timeout)
        init_ms = None
        payload: bytes | None = None
        error: InvocationError | None = None
        env = lambda_environment(self.spec, self._log_stream)
        out, err = _LineWriter(emit), _LineWriter(emit)
        log_handler = _LambdaLogHandler(emit, request_id)
        saved_streams = sys.stdout, sys.stderr
        root = logging.getLogger()
        guard = _ExitGuard() if self._isolate else contextlib.nullcontext()
        with _Environ(env), guard:
            sys.stdout, sys.stderr = out, err
            root.addHandler(log_handler)
            try:
                if self._handler is None:
                    t0 = clock.elapsed()
                    error = self._load(request_id)
                    init_ms = (clock.elapsed() - t0) * 1000
                if error is None:
                    payload, error = self._call(event_json, event, request_id, clock)
            finally:
                out.flush()
                err.flush()
                root.removeHandler(log_handler)
                sys.stdout, sys.stderr = saved_streams
        duration = clock.elapsed() * 1000
        clock = None
        if isinstance(guard, _ExitGuard) and guard.code is not None:
            # os._exit, even if the handler caught what it raised: the process would be gone
            payload, error = None, _exit_error(guard.code, request_id)
        if error is not None and error.type == "Runtime.ExitError":
            self._reset()  # the runtime exited: the next call starts a new environment
        if error is not None and error.type == "Sandbox.Timedout":
            emit(f"{_iso_now()} {request_id} {error.message}")
        elif error is not None:  # as Lambda's runtime logs an unhandled error
            emit(f"[ERROR] {error.type}: {error.message}")
            if error.stack_trace:
                emit("Traceback (most recent call last):")
                for frame in error.stack_trace:
                    for line in frame.rstrip("\n").split("\n"):
                        emit(line)
        max_mem = _max_rss_mb(own_process=not self._isolate)
        emit(f"END RequestId: {request_id}")
        report = (f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tBilled Duration: "
                  f"{max(1, int(duration + 0.999))} ms\tMemory Size: {self.spec.memory} MB\tMax Memory Used: {max_mem} MB")
        if init_ms is not None:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        emit(report)
        return InvocationResult(request_id, payload, error, duration, init_ms, max_mem, "\n".join(lines) + "\n")

    def _reset(self) -> None:
        self._handler = None
        self._own_modules = {}
        sys.path_importer_cache.pop(self._folder, None)

    # -- init: import the handler module from the function's folder ------------------------
    def _load(self, request_id: str) -> InvocationError | None:
        module_name, _, func_name = self.spec.handler.rpartition(".")
        path = Path(self._folder) / (module_name.replace(".", "/") + ".py")
        sys.path_importer_cache.pop(self._folder, None)  # files may have changed since a last run
        entered = self._enter_code()
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or not path.is_file():
                return InvocationError("Runtime.ImportModuleError",
                                       f"Unable to import module '{module_name}': No module named '{module_name}'")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except SyntaxError as exc:
            return InvocationError("Runtime.UserCodeSyntaxError",
                                   f"Syntax error in module '{module_name}': {exc.msg} ({Path(exc.filename or path).name}, line {exc.lineno})",
                                   _user_frames(exc))
        except ImportError as exc:
            return InvocationError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}",
                                   _user_frames(exc))
        except SystemExit as exc:
            return _exit_error(_system_exit_status(exc), request_id)
        except _ProcessExit as exc:
            return _exit_error(exc.code, request_id)
        except Exception as exc:
            return InvocationError(type(exc).__name__, str(exc), _user_frames(exc))
        finally:
            self._exit_code(entered, module_name)
        handler = getattr(module, func_name, None)
        if not callable(handler):
            return InvocationError("Runtime.HandlerNotFound",
                                   f"Handler '{func_name}' missing on module '{module_name}'")
        self._handler = handler
        return None

    def _call(self, event_json: str | bytes, event: Any, request_id: str, clock: _CallClock) -> tuple[bytes | None, InvocationError | None]:
        if event is _NO_EVENT:
            try:
                event = json.loads(event_json)
            except ValueError as exc:
                return None, InvocationError("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}")
        context = LambdaContext(self.spec, request_id, clock, self._log_stream)
        assert self._handler is not None
        entered = self._enter_code()  # imports made inside the handler resolve in its own folder too
        try:
            result = _with_timeout(lambda: self._handler(event, context), clock)
        except _TimedOut:
            return None, InvocationError("Sandbox.Timedout", f"Task timed out after {self.spec.timeout:.2f} seconds")
        except SystemExit as exc:
            return None, _exit_error(_system_exit_status(exc), request_id)
        except _ProcessExit as exc:
            return None, _exit_error(exc.code, request_id)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            frames = _user_frames(exc)
            return None, InvocationError(type(exc).__name__, str(exc), frames)
        finally:
            self._exit_code(entered, "")
        try:
            return json.dumps(result, default=_json_default).encode(), None
        except (TypeError, ValueError) as exc:
            return None, InvocationError("Runtime.MarshalError", f"Unable to marshal response: {exc}")

    # -- sharing the process: this function's folder and modules only while it runs ----------
    def _enter_code(self):
        if not self._isolate:
            if self._folder not in sys.path:
                sys.path.insert(0, self._folder)  # for good, like /var/task
            return None
        saved_path = list(sys.path)
        sys.path.insert(0, self._folder)
        sys.modules.update(self._own_modules)
        return saved_path, set(sys.modules)

    def _exit_code(self, entered, module_name: str) -> None:
        if entered is None:
            return
        saved_path, before = entered
        sys.path[:] = saved_path
        prefix = self._folder + os.sep
        for name in (set(sys.modules) - before) | set(self._own_modules):
            mod = sys.modules.get(name)
            if mod is None:
                continue
            file = getattr(mod, "__file__", None) or ""
            if name == module_name or name in self._own_modules or (file and os.path.realpath(file).startswith(prefix)):
                self._own_modules[name] = mod
                del sys.modules[name]


def _with_timeout(fn: Callable[[], Any], clock: _CallClock) -> Any:
    """SIGALRM interrupts the handler where it is (sleeps, loops); off the main thread, fall back
    to waiting for a worker thread, which cannot be killed and is left to finish in the background.

    Either way the limit is on ``clock``, which stops while the handler waits on the log sink:
    an alarm that comes then is decided when the sink returns, one that comes early is set
    again for the time the sink added."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        previous = signal.signal(signal.SIGALRM, clock.on_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, max(clock.remaining(), 0.0001))
            return fn()
        finally:
            clock.alarm_pending = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box: dict[str, Any] = {}

    caller = clock.owner

    def run():
        clock.owner = threading.get_ident()
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="dorc-handler")
    worker.start()
    try:
        while True:
            worker.join(max(clock.remaining(), 0.01))
            if not worker.is_alive():
                break
            if clock.remaining() <= 0 and not clock.inside:
                raise _TimedOut()
    finally:
        clock.owner = caller  # a handler left running in the background no longer stops the clock
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _system_exit_status(exc: SystemExit) -> int:
    """The process's exit status for ``sys.exit(code)``: None is 0, a message is 1."""
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def _exit_error(status: int, request_id: str) -> InvocationError:
    """Lambda's error when the runtime process ends during a call (sys.exit, os._exit)."""
    return InvocationError("Runtime.ExitError",
                           f"RequestId: {request_id} Error: Runtime exited with error: exit status {status}")


def _user_frames(exc: BaseException) -> list[str]:
    """The traceback as Lambda shows it: the user's frames, not the runtime's."""
    here = os.path.realpath(__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.realpath(f.filename) != here and "importlib" not in f.filename]
    return traceback.format_list(frames)


def _max_rss_mb(own_process: bool = False) -> int:
    """The process's peak. In a worker started by another process (LocalStack's executor) read
    VmHWM: ru_maxrss survives fork+exec and would report the parent's peak."""
    if not own_process:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss / 1024) if sys.platform != "darwin" else int(rss / 1024 / 1024)
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss / 1024) if sys.platform != "darwin" else int(rss / 1024 / 1024)


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
