"""Lambda's Python runtime, emulated in this process: context, environment, timeout, logs, errors.

Standard library only, on purpose: the same module runs handlers for the in-process target and,
as a subprocess, for dorc's LocalStack executor plugin, whose Python is not the user's.

What it reproduces, because handlers can observe it:
- the module is imported once per function ("cold start") from the function's own folder, so
  same-named ``lambda.py`` and helper modules of different functions never see each other;
- Lambda's environment variables plus the function's own are set around each call and restored;
- the event is the JSON text the caller sent, the result must survive ``json.dumps``;
- a call running past its timeout fails as "RequestId: <id> Error: Task timed out after N.NN seconds";
- ``TZ=:UTC`` is applied (``time.tzset()``) during the call and dorc's zone restored after;
- the context is built attribute for attribute as awslambdaric builds it (``identity`` an object);
- the result is sent as awslambdaric sends it, UTF-8 JSON without ASCII escapes, so its size is
  the one Step Functions counts;
- any BaseException the handler lets out fails the call (Runtime.ExitError, as the end of Lambda's
  runtime process), never dorc; a KeyboardInterrupt is dorc's only when SIGINT reached dorc;
- stdout/stderr have file descriptors (pipes drained into the log), stdin is at EOF; the root
  logger's first handler is the runtime's, its formatter replaceable, JSON format and level from
  AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL;
- ``sys.exit()`` fails the call (Runtime.ExitError) instead of ending the host process, and so
  does ``os._exit()`` when the process is shared with dorc (in-process runs); the next call is
  then a cold start, as after a crashed Lambda runtime;
- output is framed as in CloudWatch: START, the handler's own lines, END, REPORT;
- writing a log line costs the function next to nothing, as in Lambda: the time the sink spends
  on a line (rendering it on a terminal) is not the handler's, neither for its timeout nor for
  its Duration nor for ``get_remaining_time_in_millis()``.
"""

from __future__ import annotations

import codecs
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

RUNTIME_API = "127.0.0.1:9001"  # what Lambda's runtime API address looks like inside the sandbox


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
    log_lines: list[str] | None = field(default=None, repr=False, compare=False)  # instead of the [ERROR] lines

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
        self.sigint = False  # SIGINT (Ctrl-C) reached dorc during the call
        self.sigint_watched = False  # whether ``sigint`` can be trusted (SIGINT's handler was ours)

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

    def on_sigint(self, signum, frame) -> None:
        """SIGINT's handler during the call: Ctrl-C of dorc, not the handler's own KeyboardInterrupt."""
        self.sigint = True
        raise KeyboardInterrupt

    def interrupt_is_dorcs(self) -> bool:
        """A KeyboardInterrupt came out of the handler: dorc's Ctrl-C (stop the run), or one the
        handler raised itself (a failed call)? When SIGINT could not be watched, dorc's."""
        return self.sigint or not self.sigint_watched


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
        self.tenant_id = None
        self.client_context = None  # set only when the caller passes a client context (mobile SDKs)
        self.identity = CognitoIdentity()  # an object with None fields, never None itself
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._clock.remaining() * 1000))

    def log(self, msg: Any) -> None:
        """Writes ``str(msg)`` to the function's log as it is (no newline added), as Lambda's does."""
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


class CognitoIdentity:
    """``context.identity``: Lambda always builds one; both fields are None unless the call came
    through the AWS Mobile SDK with a Cognito identity."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None

    def __repr__(self) -> str:
        return (f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
                f"cognito_identity_pool_id={self.cognito_identity_pool_id}])")


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
    """Replaces stdout/stderr during a call: whole lines go to the sink and into the log.

    Python's writes go straight to the log, in order with ``logging``'s lines. ``fileno()`` gives
    a real file descriptor (for ``subprocess.run(..., stdout=sys.stdout)``, ``os.write``, C code):
    the write end of a pipe whose read end a thread drains into the same log, until ``finish()``.
    """

    encoding = "utf-8"
    errors = "backslashreplace"

    def __init__(self, emit: LogSink, fd: int | None = None):
        """``fd``: the process's own descriptor (1 or 2), when something else drains it into the
        log already (a sandbox's worker); ``fileno()`` then is that, as in Lambda."""
        self._emit = emit
        self._buf = ""
        self._fixed_fd = fd
        self._fd: int | None = None
        self._drain: threading.Thread | None = None

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self._fixed_fd is not None:
            return self._fixed_fd
        if self._fd is None:
            read_fd, self._fd = os.pipe()
            self._drain = threading.Thread(target=self._drain_pipe, args=(read_fd,), daemon=True,
                                           name="dorc-log-pipe")
            self._drain.start()
        return self._fd

    def _drain_pipe(self, read_fd: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        try:
            while True:
                chunk = os.read(read_fd, 65536)
                pending += decoder.decode(chunk, final=not chunk)
                *whole, pending = pending.split("\n")
                for line in whole:
                    self._emit(line)
                if not chunk:
                    break
            if pending:
                self._emit(pending)
        except Exception:  # noqa: BLE001 - a sink failure must not leave the pipe undrained silently
            pass
        finally:
            os.close(read_fd)

    def finish(self) -> None:
        """The call is over: what the handler (and the children it waited for) wrote to the file
        descriptor reaches the log before END. A child still holding it open is not waited for."""
        self.flush()
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)
        if self._drain is not None:
            self._drain.join(2.0)

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


class _TextFormatter(logging.Formatter):
    """Lambda's text format: ``[LEVEL]\\ttimestamp\\trequest id\\tmessage``, times in UTC."""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                         "%Y-%m-%dT%H:%M:%S")


# LogRecord attributes that are not a caller's ``extra=`` fields (JSON logs add those as keys)
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "aws_request_id", "tenant_id"}


class _JsonFormatter(logging.Formatter):
    """``AWS_LAMBDA_LOG_FORMAT=JSON``: one JSON object a line, with Lambda's keys."""

    def format(self, record: logging.LogRecord) -> str:
        level = min(50, max(0, record.levelno)) // 10 * 10
        created = time.gmtime(record.created)
        exc = record.exc_info
        doc: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": logging.getLevelName(level),
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc[2]) if exc else None,
            "errorType": exc[0].__name__ if exc and exc[0] else None,
            "errorMessage": _safe_str(exc[1]) if exc else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if exc else None,
        }
        doc.update((k, v) for k, v in record.__dict__.items() if k not in _RECORD_FIELDS and k not in doc)
        return json.dumps({k: v for k, v in doc.items() if v is not None}, ensure_ascii=False, default=str)


def _log_settings(env: dict[str, str]) -> tuple[bool, int | None]:
    """(JSON format?, the root logger's level) from AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL.
    Lambda's JSON format comes with an application log level, INFO unless set."""
    json_format = env.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
    name = {"TRACE": "DEBUG"}.get(env.get("AWS_LAMBDA_LOG_LEVEL", "").upper(), env.get("AWS_LAMBDA_LOG_LEVEL", "").upper())
    level = logging.getLevelName(name) if name else None
    if not isinstance(level, int):
        level = logging.INFO if json_format else None
    return json_format, level


class _LambdaLogHandler(logging.Handler):
    """The runtime's handler on the root logger, as Lambda installs it: first of the root's
    handlers, Lambda's text (or JSON) format, ``aws_request_id`` on every record; a formatter the
    handler sets (``logging.getLogger().handlers[0].setFormatter(...)``) is honoured."""

    def __init__(self, emit: LogSink, request_id: str, json_format: bool = False):
        super().__init__()
        self._emit = emit
        self._request_id = request_id
        self.setFormatter(_JsonFormatter() if json_format else _TextFormatter())
        self.addFilter(self._tag)

    def bind(self, emit: LogSink, request_id: str) -> None:
        """The next call of the same environment: the same handler (a formatter the function set
        stays, as in a warm Lambda), this call's log and request id."""
        self._emit = emit
        self._request_id = request_id

    def _tag(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self._request_id
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
        except Exception:  # a bad log call (or formatter) must not fail the handler
            msg = f"[{record.levelname}]\t{self._request_id}\t{_safe_str(record.msg)}"
        for line in msg.rstrip("\n").split("\n"):
            self._emit(line)


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
        "AWS_LAMBDA_RUNTIME_API": RUNTIME_API,
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
                 log_stream: str | None = None, timeout_outside: bool = False, attached: bool = False,
                 on_init: Callable[[float], None] | None = None, flush: Callable[[], None] | None = None,
                 keep_logs: bool = True):
        """``isolate``: share the process with other functions (in-process runs). A worker that
        hosts a single function (a sandbox, the LocalStack executor) keeps its code folder on
        ``sys.path`` for good, as Lambda does with ``/var/task``.

        ``timeout_outside``: the process that started this worker kills it at the deadline, so no
        signal is taken from the handler (SIGALRM, SIGINT are its own, as in Lambda).
        ``attached``: stdin, stdout and stderr stay the terminal's (``dorc run --debug``, so that
        ``breakpoint()`` works). ``on_init``: told the Init Duration (ms) once the module is
        imported, before the handler is called (the invoke phase, and its timeout, start then).
        ``flush``: given by a worker that drains its own file descriptors 1 and 2 into the log
        (``sys.stdout.fileno()`` is then 1, as in Lambda); called when the handler has returned,
        before END, so that everything written to them so far is in the log. ``keep_logs=False``: the
        sink keeps the lines (a sandbox's dorc), not this process, whose memory is the handler's."""
        self.spec = spec
        self._isolate = isolate
        self._timeout_outside = timeout_outside
        self._attached = attached
        self._on_init = on_init
        self._flush = flush
        self._keep_logs = keep_logs
        self._sink = sink or (lambda line: None)
        self._handler: Callable[[Any, Any], Any] | None = None
        self._folder = os.path.realpath(spec.source_dir)
        # This function's own modules (lambda.py, its helpers) between calls: kept warm as in a
        # Lambda container, but out of sys.modules so another function's same names resolve to
        # that function's files.
        self._own_modules: dict[str, Any] = {}
        self._log_handler: _LambdaLogHandler | None = None  # the runtime's root handler, kept while warm
        self._log_stream = log_stream or time.strftime("%Y/%m/%d", time.gmtime()) + f"/[$LATEST]{uuid.uuid4().hex}"

    # -- one call ---------------------------------------------------------------------------
    def invoke(self, event_json: str | bytes, request_id: str | None = None, *, event: Any = _NO_EVENT) -> InvocationResult:
        """``event``: the already-parsed ``event_json``, handed over by a caller that parsed it
        anyway and keeps no reference to it (saves a second ``json.loads`` per hop)."""
        request_id = request_id or str(uuid.uuid4())
        lines: list[str] = []
        sink, monotonic, get_ident = self._sink, time.monotonic, threading.get_ident
        clock: _CallClock | None = None  # while the function runs: sink time is not its time

        keep = self._keep_logs

        def emit(line: str) -> None:
            if keep:
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
        json_logs, log_level = _log_settings(env if self._isolate else {**os.environ, **env})
        fds = (1, 2) if self._flush is not None else (None, None)  # the worker drains its own 1 and 2
        out, err = _LineWriter(emit, fds[0]), _LineWriter(emit, fds[1])
        log_handler = self._log_handler
        if log_handler is None:
            log_handler = self._log_handler = _LambdaLogHandler(emit, request_id, json_logs)
        log_handler.bind(emit, request_id)
        saved_streams = sys.stdin, sys.stdout, sys.stderr
        root = logging.getLogger()
        saved_level = root.level
        guard = _ExitGuard() if self._isolate else contextlib.nullcontext()
        try:
            with (_Environ(env), guard, open(os.devnull, encoding="utf-8") as stdin,
                  contextlib.nullcontext() if self._attached else _fd0_at(stdin.fileno())):
                time.tzset()  # TZ=:UTC applies: datetime.now() is UTC, as in Lambda
                if not self._attached:
                    sys.stdin, sys.stdout, sys.stderr = stdin, out, err  # stdin: EOF, never dorc's
                with getattr(logging, "_lock", None) or contextlib.nullcontext():
                    root.handlers.insert(0, log_handler)  # first, as Lambda's runtime installs it
                if log_level is not None:
                    root.setLevel(log_level)
                try:
                    if self._handler is None:
                        t0 = clock.elapsed()
                        error = self._load(request_id)
                        init_ms = (clock.elapsed() - t0) * 1000
                        # Lambda's Init phase is not the invocation's: its timeout and
                        # get_remaining_time_in_millis() start when the handler is called
                        clock.start, clock.paused = time.monotonic(), 0.0
                        if self._on_init is not None:
                            self._on_init(init_ms)
                    if error is None:
                        payload, error = self._call(event_json, event, request_id, clock)
                finally:
                    out.finish()
                    err.finish()
                    if self._flush is not None:
                        self._flush()
                    root.removeHandler(log_handler)
                    if log_level is not None and self._isolate:
                        root.setLevel(saved_level)
                    sys.stdin, sys.stdout, sys.stderr = saved_streams
        finally:
            time.tzset()  # dorc's own timezone again (the environment is restored)
        duration = clock.elapsed() * 1000
        clock = None
        if isinstance(guard, _ExitGuard) and guard.code is not None:
            # os._exit, even if the handler caught what it raised: the process would be gone
            payload, error = None, exit_error(guard.code, request_id)
        if error is not None and error.type == "Runtime.ExitError":
            self._reset()  # the runtime exited: the next call starts a new environment
        if error is not None and error.type == "Sandbox.Timedout":
            emit(f"{iso_now()} {request_id} {timeout_text(self.spec.timeout)}")
        elif error is not None and error.log_lines is not None:
            for line in error.log_lines:
                emit(line)
        elif error is not None and json_logs:  # JSON format: the unhandled error as one JSON line
            emit(json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "log_level": "ERROR",
                             **error.to_lambda(), "requestId": request_id}, ensure_ascii=False))
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
        self._log_handler = None
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
            return InvocationError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {_safe_str(exc)}",
                                   _user_frames(exc))
        except SystemExit as exc:
            return exit_error(_system_exit_status(exc), request_id)
        except _ProcessExit as exc:
            return exit_error(exc.code, request_id)
        except KeyboardInterrupt as exc:
            if not self._timeout_outside:
                raise  # at import in dorc's process, Ctrl-C is not told apart from the module's own
            return _crash_error(exc, "signal: interrupt", request_id)  # a worker gets no Ctrl-C
        except Exception as exc:
            return InvocationError(type(exc).__name__, _safe_str(exc), _user_frames(exc))
        except BaseException as exc:  # noqa: BLE001 - CancelledError, GeneratorExit, ...: ends Lambda's runtime
            return _crash_error(exc, "exit status 1", request_id)
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
            if self._timeout_outside:
                result = self._handler(event, context)
            else:
                result = _with_timeout(lambda: self._handler(event, context), clock)
        except _TimedOut:
            return None, InvocationError("Sandbox.Timedout",
                                         f"RequestId: {request_id} Error: {timeout_text(self.spec.timeout)}")
        except SystemExit as exc:
            return None, exit_error(_system_exit_status(exc), request_id)
        except _ProcessExit as exc:
            return None, exit_error(exc.code, request_id)
        except KeyboardInterrupt as exc:
            if not self._timeout_outside and clock.interrupt_is_dorcs():
                raise  # Ctrl-C: dorc stops the run
            # the handler's own: uncaught, it ends Lambda's runtime process by SIGINT
            return None, _crash_error(exc, "signal: interrupt", request_id)
        except Exception as exc:
            frames = _user_frames(exc)
            return None, InvocationError(type(exc).__name__, _safe_str(exc), frames)
        except BaseException as exc:  # noqa: BLE001 - CancelledError, GeneratorExit, ...: ends Lambda's runtime
            return None, _crash_error(exc, "exit status 1", request_id)
        finally:
            self._exit_code(entered, "")
        try:
            return marshal(result), None
        except Exception as exc:  # noqa: BLE001 - TypeError, ValueError, RecursionError (nested too deep), ...
            return None, InvocationError("Runtime.MarshalError", f"Unable to marshal response: {_safe_str(exc)}")

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
        # Ctrl-C is told apart from a KeyboardInterrupt the handler raises only when SIGINT's
        # handler is Python's default one (otherwise a KeyboardInterrupt is taken as dorc's)
        previous_int = signal.getsignal(signal.SIGINT)
        clock.sigint_watched = previous_int is signal.default_int_handler
        if clock.sigint_watched:
            signal.signal(signal.SIGINT, clock.on_sigint)
        try:
            signal.setitimer(signal.ITIMER_REAL, max(clock.remaining(), 0.0001))
            return fn()
        finally:
            clock.alarm_pending = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if clock.sigint_watched:
                signal.signal(signal.SIGINT, previous_int)
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
    clock.sigint_watched = True  # the handler runs on ``worker``: Ctrl-C interrupts this wait
    try:
        while True:
            worker.join(max(clock.remaining(), 0.01))
            if not worker.is_alive():
                break
            if clock.remaining() <= 0 and not clock.inside:
                raise _TimedOut()
    except KeyboardInterrupt:
        clock.sigint = True
        raise
    finally:
        clock.owner = caller  # a handler left running in the background no longer stops the clock
    if "error" in box:
        raise box["error"]
    return box.get("value")


def marshal(result: Any) -> bytes:
    """The response as Lambda's runtime sends it: JSON with non-ASCII characters as themselves
    (``ensure_ascii=False``), in UTF-8, so its size is what Step Functions counts; a lone
    surrogate, which UTF-8 cannot carry, is written as its ``\\u`` escape instead."""
    text = json.dumps(result, default=_json_default, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(result, default=_json_default).encode()


@contextlib.contextmanager
def _fd0_at(fd: int):
    """File descriptor 0 on ``fd`` (``/dev/null``) during the call, so the children a handler
    starts read EOF too, not dorc's terminal; dorc's own stdin is put back after."""
    try:
        saved = os.dup(0)
    except OSError:  # dorc runs with stdin closed: a child then has none either
        yield
        return
    try:
        os.dup2(fd, 0)
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def timeout_text(timeout: float) -> str:
    return f"Task timed out after {timeout:.2f} seconds"


def _safe_str(exc: Any) -> str:
    """``str(exc)``, even for an exception whose ``__str__`` fails (as Python's traceback shows it)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        try:
            return f"<exception str() failed: {type(exc).__name__}>"
        except Exception:  # noqa: BLE001
            return "<exception str() failed>"


def _crash_error(exc: BaseException, status: str, request_id: str) -> InvocationError:
    """An exception Lambda's runtime does not catch (a BaseException that is not SystemExit):
    its process ends, Lambda reports Runtime.ExitError; the log shows the traceback as Python
    prints it."""
    frames = _user_frames(exc)
    name = type(exc).__qualname__
    module = type(exc).__module__
    shown = name if module in ("builtins", "__main__") else f"{module}.{name}"
    text = _safe_str(exc)
    log = ["Traceback (most recent call last):"] if frames else []
    for frame in frames:
        log.extend(frame.rstrip("\n").split("\n"))
    log.append(f"{shown}: {text}" if text else shown)
    return InvocationError("Runtime.ExitError",
                           f"RequestId: {request_id} Error: Runtime exited with error: {status}", frames, log)


def _system_exit_status(exc: SystemExit) -> int:
    """The process's exit status for ``sys.exit(code)``: None is 0, a message is 1."""
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def exit_error(status: int, request_id: str) -> InvocationError:
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


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
