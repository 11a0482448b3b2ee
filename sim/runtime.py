"""Lambda's Python runtime inside a sandbox worker: context, environment, logs, errors.

One process runs one function (``dorc_sim.sandbox.worker`` for local runs,
``dorc_sim.localstack.worker`` for host-mode LocalStack); the process that started it enforces
the timeout and the memory size by killing it, so nothing here watches the clock or guards the
process. Standard library only, and lean: every sandbox pays for these imports when it starts.

What it reproduces, because handlers can observe it:
- the handler's module is imported once ("cold start") from the task root, which stays first on
  ``sys.path``, as ``/var/task`` does;
- Lambda's environment variables plus the function's own are the process's, ``TZ=:UTC`` applied;
- the event is the JSON text the caller sent, the result must survive ``json.dumps``;
- the context is built attribute for attribute as awslambdaric builds it (``identity`` an object);
  ``get_remaining_time_in_millis()`` counts from the end of Init, as Lambda's invoke phase does;
- the result is sent as awslambdaric sends it, UTF-8 JSON without ASCII escapes, so its size is
  the one Step Functions counts;
- any BaseException the handler lets out fails the call (Runtime.ExitError, as the end of Lambda's
  runtime process); the worker then ends, and the next call is a cold start;
- stdout/stderr are the process's file descriptors 1 and 2, which the worker drains into the log;
  the root logger's first handler is the runtime's, its formatter replaceable, JSON format and
  level from AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL;
- output is framed as in CloudWatch: START, the handler's own lines, END, REPORT.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import sys
import time

RUNTIME_API = "127.0.0.1:9001"  # what Lambda's runtime API address looks like inside the sandbox


class _Fields:
    """Named fields compared and shown as a dataclass's (``dataclasses`` costs a sandbox ~15 ms
    of start-up: it imports ``inspect``)."""

    _fields: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self._fields}


class FunctionSpec(_Fields):
    """What the runtime needs of a deployed function (a subset of dorc's FunctionPlan)."""

    _fields = ("name", "source_dir", "handler", "runtime", "memory", "timeout", "environment", "region",
               "account_id")

    def __init__(self, name: str, source_dir: str, handler: str = "lambda.handler", runtime: str = "python3.12",
                 memory: int = 128, timeout: float = 3.0, environment: dict[str, str] | None = None,
                 region: str = "us-east-1", account_id: str = "000000000000"):
        self.name, self.source_dir, self.handler, self.runtime = name, source_dir, handler, runtime
        self.memory, self.timeout, self.environment = memory, timeout, dict(environment or {})
        self.region, self.account_id = region, account_id

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.name}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


class InvocationError(_Fields):
    _fields = ("type", "message", "stack_trace")

    def __init__(self, type: str, message: str, stack_trace: list[str] | None = None,
                 log_lines: list[str] | None = None):
        self.type, self.message, self.stack_trace = type, message, list(stack_trace or [])
        self.log_lines = log_lines  # instead of the [ERROR] lines

    def to_lambda(self) -> dict:
        """The shape Lambda returns for a function error."""
        return {"errorMessage": self.message, "errorType": self.type, "stackTrace": self.stack_trace}


class InvocationResult(_Fields):
    _fields = ("request_id", "payload", "error", "duration_ms", "init_duration_ms", "max_memory_mb", "logs")

    def __init__(self, request_id: str, payload: bytes | None, error: InvocationError | None, duration_ms: float,
                 init_duration_ms: float | None, max_memory_mb: int, logs: str):
        self.request_id = request_id
        self.payload = payload  # the JSON the function returned, as Lambda would send it on
        self.error, self.duration_ms, self.init_duration_ms = error, duration_ms, init_duration_ms
        self.max_memory_mb, self.logs = max_memory_mb, logs

    @property
    def ok(self) -> bool:
        return self.error is None


class _Clock:
    """The invocation's clock, for ``get_remaining_time_in_millis()``: restarted when Init ends."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.timeout - self.elapsed()


class LambdaContext:
    """The ``context`` argument, with the attributes and method Lambda's runtime provides."""

    def __init__(self, spec: FunctionSpec, request_id: str, clock: _Clock, log_stream: str):
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

    def log(self, msg) -> None:
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




class _LineWriter(io.TextIOBase):
    """Replaces stdout/stderr during a call: whole lines go straight to the log, in order with
    ``logging``'s. ``fileno()`` is the process's own 1 or 2 (for ``subprocess.run(...,
    stdout=sys.stdout)``, ``os.write``, C code), which the worker drains into the same log."""

    encoding = "utf-8"
    errors = "backslashreplace"

    def __init__(self, emit, fd: int):
        self._emit = emit
        self._buf = ""
        self._fd = fd

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

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
        import traceback

        level = min(50, max(0, record.levelno)) // 10 * 10
        created = time.gmtime(record.created)
        exc = record.exc_info
        doc: dict[str, object] = {
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

    def __init__(self, emit, request_id: str, json_format: bool = False):
        super().__init__()
        self._emit = emit
        self._request_id = request_id
        self.setFormatter(_JsonFormatter() if json_format else _TextFormatter())
        self.addFilter(self._tag)

    def bind(self, emit, request_id: str) -> None:
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


def _json_default(obj: object) -> object:
    # Lambda's runtime serialises Decimal (common with DynamoDB) as a number. A Decimal means the
    # handler imported decimal: this runtime does not (a sandbox's start-up pays for each import).
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
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
        "LAMBDA_RUNTIME_DIR": os.path.dirname(__file__),
        "AWS_LAMBDA_RUNTIME_API": RUNTIME_API,
        "_HANDLER": spec.handler,
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        **spec.environment,
    }


class FunctionRuntime:
    """One function's execution environment, in the worker process that hosts it. ``invoke`` may be
    called many times (warm starts); after a Runtime.ExitError the worker ends (a cold start next)."""

    def __init__(self, spec: FunctionSpec, sink=None, *, log_stream: str | None = None, attached: bool = False,
                 on_init=None, flush=None, keep_logs: bool = True):
        """``sink``: hears each log line. ``attached``: stdin, stdout and stderr stay the terminal's
        (``dorc run --debug``, so that ``breakpoint()`` works). ``on_init``: told the Init Duration
        (ms) once the module is imported, before the handler is called (the invoke phase, and its
        timeout, start then). ``flush``: called when the handler has returned, before END, so that
        everything the worker drains from file descriptors 1 and 2 is in the log by then.
        ``keep_logs=False``: the sink keeps the lines (a sandbox's dorc), not this process, whose
        memory is the handler's."""
        self.spec = spec
        self._attached = attached
        self._on_init = on_init
        self._flush = flush
        self._keep_logs = keep_logs
        self._sink = sink or (lambda line: None)
        self._handler = None
        self._folder = os.path.realpath(spec.source_dir)
        self._log_handler: _LambdaLogHandler | None = None  # the runtime's root handler, kept while warm
        if log_stream is None:
            import uuid

            log_stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[$LATEST]{uuid.uuid4().hex}"
        self._log_stream = log_stream
        # Lambda's variables are the process's from its start, as the handler may change them
        os.environ.update(lambda_environment(spec, log_stream))
        time.tzset()  # TZ=:UTC applies: datetime.now() is UTC, as in Lambda
        self._json_logs, self._log_level = _log_settings(os.environ)

    def invoke(self, event_json: str | bytes, request_id: str | None = None) -> InvocationResult:
        if request_id is None:
            import uuid

            request_id = str(uuid.uuid4())
        lines: list[str] = []
        sink = self._sink
        if self._keep_logs:
            def emit(line: str) -> None:
                lines.append(line)
                sink(line)
        else:
            emit = sink

        emit(f"START RequestId: {request_id} Version: $LATEST")
        clock = _Clock(self.spec.timeout)
        init_ms = None
        payload: bytes | None = None
        error: InvocationError | None = None
        out, err = _LineWriter(emit, 1), _LineWriter(emit, 2)
        log_handler = self._log_handler
        if log_handler is None:
            log_handler = self._log_handler = _LambdaLogHandler(emit, request_id, self._json_logs)
        log_handler.bind(emit, request_id)
        saved_streams = sys.stdout, sys.stderr
        root = logging.getLogger()
        if not self._attached:
            sys.stdout, sys.stderr = out, err
        with logging._lock:  # type: ignore[attr-defined]
            root.handlers.insert(0, log_handler)  # first, as Lambda's runtime installs it
        if self._log_level is not None:
            root.setLevel(self._log_level)
        try:
            if self._handler is None:
                clock.start = time.monotonic()
                error = self._load(request_id)
                init_ms = clock.elapsed() * 1000
                # Lambda's Init phase is not the invocation's: its timeout and
                # get_remaining_time_in_millis() start when the handler is called
                clock.start = time.monotonic()
                if self._on_init is not None:
                    self._on_init(init_ms)
            if error is None:
                payload, error = self._call(event_json, request_id, clock)
        finally:
            out.flush()
            err.flush()
            if self._flush is not None:
                self._flush()
            root.removeHandler(log_handler)
            sys.stdout, sys.stderr = saved_streams
        duration = clock.elapsed() * 1000
        if error is not None and error.log_lines is not None:
            for line in error.log_lines:
                emit(line)
        elif error is not None and self._json_logs:  # JSON format: the unhandled error as one JSON line
            emit(json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "log_level": "ERROR",
                             **error.to_lambda(), "requestId": request_id}, ensure_ascii=False))
        elif error is not None:  # as Lambda's runtime logs an unhandled error
            emit(f"[ERROR] {error.type}: {error.message}")
            if error.stack_trace:
                emit("Traceback (most recent call last):")
                for frame in error.stack_trace:
                    for line in frame.rstrip("\n").split("\n"):
                        emit(line)
        max_mem = _max_rss_mb()
        emit(f"END RequestId: {request_id}")
        emit(report_line(request_id, duration, self.spec.memory, max_mem, init_ms))
        return InvocationResult(request_id, payload, error, duration, init_ms, max_mem, "\n".join(lines) + "\n")

    # -- init: import the handler module from the task root ----------------------------------
    def _load(self, request_id: str) -> InvocationError | None:
        module_name, _, func_name = self.spec.handler.rpartition(".")
        path = os.path.join(self._folder, module_name.replace(".", "/") + ".py")
        if self._folder not in sys.path:
            sys.path.insert(0, self._folder)  # for good, like /var/task
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or not os.path.isfile(path):
                return InvocationError("Runtime.ImportModuleError",
                                       f"Unable to import module '{module_name}': No module named '{module_name}'")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except SyntaxError as exc:
            return InvocationError("Runtime.UserCodeSyntaxError",
                                   f"Syntax error in module '{module_name}': {exc.msg} ({os.path.basename(exc.filename or path)}, line {exc.lineno})",
                                   _user_frames(exc))
        except ImportError as exc:
            return InvocationError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {_safe_str(exc)}",
                                   _user_frames(exc))
        except SystemExit as exc:
            return exit_error(f"exit status {_system_exit_status(exc)}", request_id)
        except KeyboardInterrupt as exc:  # a worker gets no Ctrl-C: the module's own
            return _crash_error(exc, "signal: interrupt", request_id)
        except Exception as exc:
            return InvocationError(type(exc).__name__, _safe_str(exc), _user_frames(exc))
        except BaseException as exc:  # noqa: BLE001 - CancelledError, GeneratorExit, ...: ends Lambda's runtime
            return _crash_error(exc, "exit status 1", request_id)
        handler = getattr(module, func_name, None)
        if not callable(handler):
            return InvocationError("Runtime.HandlerNotFound",
                                   f"Handler '{func_name}' missing on module '{module_name}'")
        self._handler = handler
        return None

    def _call(self, event_json: str | bytes, request_id: str, clock: _Clock) -> tuple[bytes | None, InvocationError | None]:
        try:
            event = json.loads(event_json)
        except ValueError as exc:
            return None, InvocationError("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}")
        context = LambdaContext(self.spec, request_id, clock, self._log_stream)
        try:
            result = self._handler(event, context)
        except SystemExit as exc:
            return None, exit_error(f"exit status {_system_exit_status(exc)}", request_id)
        except KeyboardInterrupt as exc:  # the handler's own: uncaught, it ends Lambda's runtime by SIGINT
            return None, _crash_error(exc, "signal: interrupt", request_id)
        except Exception as exc:
            return None, InvocationError(type(exc).__name__, _safe_str(exc), _user_frames(exc))
        except BaseException as exc:  # noqa: BLE001 - CancelledError, GeneratorExit, ...: ends Lambda's runtime
            return None, _crash_error(exc, "exit status 1", request_id)
        try:
            return marshal(result), None
        except Exception as exc:  # noqa: BLE001 - TypeError, ValueError, RecursionError (nested too deep), ...
            return None, InvocationError("Runtime.MarshalError", f"Unable to marshal response: {_safe_str(exc)}")


def marshal(result: object) -> bytes:
    """The response as Lambda's runtime sends it: JSON with non-ASCII characters as themselves
    (``ensure_ascii=False``), in UTF-8, so its size is what Step Functions counts; a lone
    surrogate, which UTF-8 cannot carry, is written as its ``\\u`` escape instead."""
    text = json.dumps(result, default=_json_default, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(result, default=_json_default).encode()


def report_line(request_id: str, duration_ms: float, memory_mb: int, max_memory_mb: int,
                init_ms: float | None) -> str:
    """The REPORT line that ends every call's log, as Lambda writes it."""
    line = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: "
            f"{max(1, int(duration_ms + 0.999))} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {max_memory_mb} MB")
    return line if init_ms is None else line + f"\tInit Duration: {init_ms:.2f} ms"


def exit_error(status_words: str, request_id: str, log_lines: list[str] | None = None) -> InvocationError:
    """Lambda's error when the runtime process ends during a call ("exit status 1", "signal: killed")."""
    return InvocationError("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: {status_words}",
                           log_lines=log_lines)


def timeout_text(timeout: float) -> str:
    return f"Task timed out after {timeout:.2f} seconds"


def _safe_str(exc: object) -> str:
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
    error = exit_error(status, request_id, log)
    error.stack_trace = frames
    return error


def _system_exit_status(exc: SystemExit) -> int:
    """The process's exit status for ``sys.exit(code)``: None is 0, a message is 1."""
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def _user_frames(exc: BaseException) -> list[str]:
    """The traceback as Lambda shows it: the user's frames, not the runtime's."""
    import traceback

    here = os.path.realpath(__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.realpath(f.filename) != here and "importlib" not in f.filename]
    return traceback.format_list(frames)


def _max_rss_mb() -> int:
    """The process's peak: VmHWM (ru_maxrss survives fork+exec and could report the parent's)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss / 1024) if sys.platform != "darwin" else int(rss / 1024 / 1024)


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
