"""LocalStack RuntimeExecutor "dorc": one execution environment = one sandbox running
``dorc_sim/localstack/worker.py`` on the function's runtime's Python, as dorc's local runs run
handlers (``dorc_sim.sandbox``), instead of a Docker container with LocalStack's init:

    [unshare ...] <python of cfg.runtime> -I -S <runtime dir>/dorc_sim/localstack/worker.py
        --channel FD --lifeline FD

- the interpreter: ``dorc_sim.sandbox.interpreters.find_interpreter(runtime)``; when the runtime's
  Python is not on this machine, the nearest one, and the function's log says so;
- the runtime dir (dorc_sim and the AWS SDK Lambda ships, ``$DORC_RUNTIME_DIR``) and the standard
  library are the handler's ``sys.path``: nothing of LocalStack's or dorc's site-packages;
- where Linux namespaces work (``isolation.probe()``), the worker runs under ``unshare`` and makes
  the file system Lambda's before the handler is imported (read-only task root, private ``/tmp``
  capped at the function's ephemeral storage, no ``/dev/shm``, no ``~/.aws``);
- the TIMEOUT is enforced from here: at the deadline, counted from the end of Init (the worker
  reports it on its channel), the sandbox is killed with every process it started, and the call
  fails as Lambda reports it (Sandbox.Timedout, "RequestId: <id> Error: Task timed out after
  N.NN seconds"); the next call starts a fresh sandbox.

Protocol, the one LocalStack's init speaks with the Docker executor:
  LocalStack -> worker : POST http://127.0.0.1:<worker port>/invoke
                         {"invoke-id", "invoked-function-arn", "payload" (JSON text), "trace-id"}
  worker -> LocalStack : POST {LOCALSTACK_RUNTIME_ENDPOINT}/status/{runtime id}/ready   {"port": N}
                         POST {LOCALSTACK_RUNTIME_ENDPOINT}/status/{runtime id}/error   (init error JSON)
                         POST {LOCALSTACK_RUNTIME_ENDPOINT}/invocations/{request id}/logs  {"logs": "..."}
                         POST {LOCALSTACK_RUNTIME_ENDPOINT}/invocations/{request id}/response (result JSON)
                         POST {LOCALSTACK_RUNTIME_ENDPOINT}/invocations/{request id}/error    (error JSON)
The callbacks reach LocalStack's executor router, where this executor registers its own endpoint.
Besides, the worker's CHANNEL pipe tells this executor when Init ended, each log line as written
and how the runtime ended; its LIFELINE pipe closes when LocalStack ends, which ends the sandbox.

Settings (LocalStack's environment, set by ``dorc localstack start``):
  DORC_WORKER_PYTHON      dorc's interpreter: the fallback when the runtime's Python cannot be found
  DORC_WORKER_PYTHONPATH  the folder that contains dorc's ``sim`` package (as ``dorc_sim``)
  DORC_RUNTIME_DIR        the runtime dir (``dorc_sim.sandbox.sdk.runtime_dir()``)
  DORC_EXECUTOR_MARKER    optional file written when LocalStack loads this executor (dorc checks it)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from http import HTTPStatus
from pathlib import Path

import requests
from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.http import Response
from localstack.services.lambda_.invocation.executor_endpoint import (
    Endpoint,
    StatusErrorException,
    executor_router,
)
from localstack.services.lambda_.invocation.lambda_models import (
    FunctionVersion,
    InvocationResult,
)
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)
from localstack.utils.strings import to_bytes, to_str
from werkzeug import Request

LOG = logging.getLogger(__name__)

NAMESPACE = "/_localstack_lambda"
WORKER_SCRIPT = ("dorc_sim", "localstack", "worker.py")  # under the runtime dir
READY_TIMEOUT = 15.0  # seconds; LocalStack's own limit is LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT (20 s)
KILL_WAIT = 5.0
EXIT_WAIT = 1.0  # a failed hand-over: how long to wait for the worker's exit before calling it a fault


def _worker_python() -> str:
    return os.environ.get("DORC_WORKER_PYTHON", "")


def _worker_pythonpath() -> str:
    return os.environ.get("DORC_WORKER_PYTHONPATH", "")


def _runtime_dir() -> str:
    return os.environ.get("DORC_RUNTIME_DIR", "")


def _worker_script() -> str:
    return os.path.join(_runtime_dir(), *WORKER_SCRIPT)


def _dorc_sim() -> None:
    """Make dorc's simulator importable here (LocalStack's venv): its sandbox modules are stdlib-only.
    Appended, so that nothing of LocalStack's is shadowed."""
    path = _worker_pythonpath()
    if path and path not in sys.path:
        sys.path.append(path)


_isolation_lock = threading.Lock()
_isolation = None


def _sandbox_isolation():
    """This machine's sandbox (``dorc_sim.sandbox.isolation.probe()``), probed once."""
    global _isolation
    with _isolation_lock:
        if _isolation is None:
            _dorc_sim()
            from dorc_sim.sandbox import isolation

            _isolation = isolation.probe()
        return _isolation


_compiled_lock = threading.Lock()
_compiled: set[str] = set()  # the interpreters this process byte-compiled the runtime dir for


def _sdk_bytecode(python: str, runtime: str) -> str | None:
    """Byte-compile the runtime dir's AWS SDK for ``python``, once per process (and per SDK version
    across processes: ``compile_for``'s stamp): the sandbox cannot write .pyc files, so without them
    every cold start compiles boto3 and botocore. The note for the function's log when that failed."""
    with _compiled_lock:
        if python in _compiled:
            return None
        _compiled.add(python)
        _dorc_sim()
        try:
            from dorc_sim.sandbox.sdk import compile_for

            outcome = compile_for(python, _runtime_dir(), label=runtime, on_compile=LOG.info)
        except Exception as exc:  # noqa: BLE001 - an older dorc_sim, an unreadable folder: never fatal
            LOG.warning("dorc executor: the AWS SDK is not byte-compiled for %s: %s", python, exc)
            return None
        if outcome.warning:
            LOG.warning("dorc executor: %s", outcome.warning)
        return outcome.warning if outcome.fresh else None


def _interpreter(runtime: str) -> tuple[str, str | None]:
    """The Python for ``runtime`` as local runs find it, and the note to log when it is not exact.
    Discovery failing (a bad ``$DORC_PYTHON3_N``): dorc's own interpreter, said in the note too."""
    _dorc_sim()
    try:
        from dorc_sim.sandbox.interpreters import OWN, find_interpreter

        found = find_interpreter(runtime)
    except Exception as exc:  # noqa: BLE001 - InterpreterError, an unreadable folder: never fatal
        message = getattr(exc, "message", None) or str(exc)
        return _worker_python(), f"{runtime}: {message}; running on dorc's interpreter ({_worker_python()}) instead"
    executable, note = found.executable, found.note
    if found.source == OWN:  # LocalStack's venv Python: run its base interpreter, outside the venv
        executable = os.path.realpath(executable)
        note = note and note.replace(f"({OWN})", f"({executable})")
    return executable, note


def _host_aws_folders() -> list[str]:
    """The host's AWS credentials and config: not Lambda's (LocalStack runs with a HOME of its own,
    so the user's is looked up too)."""
    homes = {os.path.expanduser("~")}
    try:
        import pwd

        homes.add(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError):
        pass
    return sorted(os.path.join(home, ".aws") for home in homes if home)


LOG_VARIABLES = ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL")


def _logging_environment(logging_config: dict | None) -> dict[str, str]:
    """The variables Lambda sets from the function's ``LoggingConfig``: with the JSON format only,
    the level in capitals as the Lambda runtime reads it (LocalStack hands over ``Info``, which the
    runtime would take for ``INFO`` but ``Trace`` not for ``TRACE``)."""
    logging_config = logging_config or {}
    if str(logging_config.get("LogFormat") or "").upper() != "JSON":
        return {}
    level = str(logging_config.get("ApplicationLogLevel") or "INFO").upper()
    return {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": level}


def _setup_problems() -> list[str]:
    problems = []
    python = _worker_python()
    if not python:
        problems.append("DORC_WORKER_PYTHON is not set (start LocalStack with `dorc localstack start`)")
    elif not (os.path.isfile(python) and os.access(python, os.X_OK)):
        problems.append(f"DORC_WORKER_PYTHON={python} is not an executable file")
    path = _worker_pythonpath()
    if not path or not os.path.isfile(os.path.join(path, "dorc_sim", "sandbox", "interpreters.py")):
        problems.append(f"DORC_WORKER_PYTHONPATH={path!r} does not contain dorc_sim/sandbox/interpreters.py")
    if not _runtime_dir() or not os.path.isfile(_worker_script()):
        problems.append(f"DORC_RUNTIME_DIR={_runtime_dir()!r} does not contain {'/'.join(WORKER_SCRIPT)} "
                        f"(start LocalStack with `dorc localstack start`)")
    return problems


def _ended_how(exit_msg: dict | None, returncode: int) -> str:
    """The runtime's end as its sandbox's first process saw it; else the sandbox's exit status
    (a signal as a negative code). Worded as Lambda words it: "exit status 3", "signal: killed"."""
    _dorc_sim()
    from dorc_sim.sandbox.outside import exit_words

    if exit_msg is not None and (exit_msg.get("signal") or exit_msg.get("status") is not None):
        return exit_words(exit_msg.get("status"), exit_msg.get("signal"))
    return exit_words(returncode, -returncode if returncode < 0 else None)


def _lambda_error(error_type: str, message: str) -> dict:
    """Lambda's error shape, key for key as the worker sends it (``sim.runtime``'s
    ``InvocationError.to_lambda()``; the request id is added with it): a call the fallback ends must
    look the same as one the worker ended itself. Timeouts and exits have no stack trace."""
    return {"errorMessage": message, "errorType": error_type, "stackTrace": []}


def _exits_within(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def _localstack_host() -> str:
    if config.HOSTNAME_FROM_LAMBDA:
        return config.HOSTNAME_FROM_LAMBDA
    host = config.GATEWAY_LISTEN[0].host
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class _Channel:
    """What one worker says on its channel pipe (JSON lines), read on a thread of its own: when Init
    ended, the current call's log lines as written, how the runtime ended."""

    def __init__(self, fd: int) -> None:
        self.lock = threading.Lock()
        self.init_at: float | None = None  # monotonic time the Init phase ended (the handler's clock starts)
        self.init_ms: float | None = None
        self.lines: list[str] = []
        self.exit: dict | None = None
        self.closed = threading.Event()
        threading.Thread(target=self._read, args=(fd,), daemon=True, name="dorc-worker-channel").start()

    def _read(self, fd: int) -> None:
        from dorc_sim.sandbox.outside import messages

        for msg in messages(fd):
            kind = msg.get("t")
            with self.lock:
                if kind == "log":
                    self.lines.append(str(msg.get("l", "")))
                elif kind == "init":
                    self.init_at, self.init_ms = time.monotonic(), float(msg.get("ms") or 0.0)
                elif kind == "exit":
                    self.exit = msg
        self.closed.set()

    def new_call(self) -> None:
        with self.lock:
            self.lines = []

    def said(self) -> list[str]:
        with self.lock:
            return list(self.lines)


class _WorkerEndpoint(Endpoint):
    """The callbacks of one worker process (one incarnation of an execution environment)."""

    def __init__(self) -> None:
        self.ready: Future = Future()
        self.invocation: Future | None = None
        self.request_id: str | None = None
        self.logs: str | None = None
        self.port: int | None = None
        self.channel: _Channel | None = None

    # called on LocalStack's gateway threads
    def status_ready(self, request: Request, executor_id: str) -> Response:
        try:
            self.port = int((request.get_json(silent=True) or {})["port"])
            self.ready.set_result(True)
        except Exception as exc:  # noqa: BLE001 - a malformed ready call fails the start
            if not self.ready.done():
                self.ready.set_exception(exc)
        return Response(status=HTTPStatus.ACCEPTED)

    def status_error(self, request: Request, executor_id: str) -> Response:
        if not self.ready.done():
            self.ready.set_exception(StatusErrorException("Environment startup failed", request.data))
        return Response(status=HTTPStatus.ACCEPTED)

    def invocation_logs(self, request: Request, invoke_id: str) -> Response:
        if invoke_id == self.request_id:
            body = request.get_json(silent=True)
            if isinstance(body, dict):
                self.logs = body.get("logs")
        return Response(status=HTTPStatus.ACCEPTED)

    def invocation_response(self, request: Request, req_id: str) -> Response:
        self._finish(req_id, request.data, is_error=False)
        return Response(status=HTTPStatus.ACCEPTED)

    def invocation_error(self, request: Request, req_id: str) -> Response:
        self._finish(req_id, request.data, is_error=True)
        return Response(status=HTTPStatus.ACCEPTED)

    def _finish(self, req_id: str, payload: bytes, is_error: bool) -> None:
        fut = self.invocation
        if req_id != self.request_id or fut is None or fut.done():
            LOG.debug("dorc executor: ignoring a late result for %s", req_id)
            return
        fut.set_result(InvocationResult(req_id, payload, is_error=is_error, logs=self.logs))


class _DelegatingEndpoint(Endpoint):
    """Registered once per executor; forwards to the current worker's endpoint (survives respawns)."""

    def __init__(self, executor: "DorcRuntimeExecutor"):
        self.executor = executor

    def _ep(self) -> _WorkerEndpoint:
        return self.executor.endpoint

    def invocation_response(self, request, req_id):
        return self._ep().invocation_response(request, req_id)

    def invocation_error(self, request, req_id):
        return self._ep().invocation_error(request, req_id)

    def invocation_logs(self, request, invoke_id):
        return self._ep().invocation_logs(request, invoke_id)

    def status_ready(self, request, executor_id):
        return self._ep().status_ready(request, executor_id)

    def status_error(self, request, executor_id):
        LOG.warning("dorc executor %s: init error: %s", executor_id, to_str(request.data))
        return self._ep().status_error(request, executor_id)


class DorcRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.endpoint: _WorkerEndpoint | None = None
        self.process: subprocess.Popen | None = None
        self.env_vars: dict[str, str] = {}
        os.makedirs(config.dirs.tmp, exist_ok=True)
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"dorc-lambda-{id[:8]}-", dir=config.dirs.tmp))
        self.log_path = self.work_dir / "worker.log"
        self.lock = threading.RLock()
        self.lifeline: int | None = None  # our end of the worker's lifeline pipe (closed: it ends)
        self.python: tuple[str, str | None] | None = None  # the interpreter and its note, found once

    # -- RuntimeExecutor API ------------------------------------------------------------------
    def start(self, env_vars: dict[str, str]) -> None:
        # LocalStack hands some values over as ints (memory size, timeout): the environment wants str
        self.env_vars = {k: str(v) for k, v in env_vars.items() if v is not None}
        executor_router().register_endpoint(self.id, _DelegatingEndpoint(self))
        with self.lock:
            self._spawn_and_wait()

    def stop(self) -> None:
        with self.lock:
            self._kill()
            try:
                executor_router().unregister_endpoint(self.id)
            except KeyError:
                pass
            ep = self.endpoint
            if ep is not None:
                if not ep.ready.done():
                    ep.ready.cancel()
                if ep.invocation is not None and not ep.invocation.done():
                    ep.invocation.cancel()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return _localstack_host()

    def get_runtime_endpoint(self) -> str:
        return f"http://{_localstack_host()}:{config.GATEWAY_LISTEN[0].port}{NAMESPACE}/{self.id}"

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        req_id = payload["invoke-id"]
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                # the last call timed out or the worker died: a fresh sandbox, as Lambda does
                self._spawn_and_wait()
            ep = self.endpoint
            ep.request_id, ep.logs, ep.invocation = req_id, None, Future()
            proc, fut, channel = self.process, ep.invocation, ep.channel
        channel.new_call()
        warm = channel.init_at is not None  # the module was imported by an earlier call: no Init
        timeout = float(self.function_version.config.timeout)
        try:
            resp = requests.post(f"http://127.0.0.1:{ep.port}/invoke", json=payload,
                                 proxies={"http": "", "https": ""}, timeout=10)
            resp.raise_for_status()
        except Exception as exc:  # noqa: BLE001
            # a worker that died meanwhile is a crash of this call (reported below), not a fault here
            if not _exits_within(proc, EXIT_WAIT):
                raise LambdaRuntimeException(f"Could not send the invocation to the dorc worker: {exc}") from exc
        # the worker has the call (it acknowledged it, or died with it). THE timeout: from now when
        # warm, else from the end of Init (reported on the channel), Init being allowed INIT_LIMIT
        sent = time.monotonic()
        from dorc_sim.sandbox.outside import INIT_LIMIT

        while True:
            try:
                result = fut.result(timeout=0.05)
            except FutureTimeoutError:
                result = None
            if result is not None:
                if _error_type(result) == "Runtime.ExitError":
                    with self.lock:  # the runtime ended itself (sys.exit): a new one next call
                        if self.process is proc:
                            self._kill()
                return result
            now = time.monotonic()
            started = sent if warm else channel.init_at
            if started is None and now - sent >= INIT_LIMIT:
                started = sent + INIT_LIMIT
            init_ms = None if warm else channel.init_ms
            if proc.poll() is not None:
                try:  # the result may have raced the exit
                    return fut.result(timeout=0.2)
                except FutureTimeoutError:
                    pass
                channel.closed.wait(0.5)  # the exit message, and the last lines
                msg = f"RequestId: {req_id} Error: Runtime exited with error: {_ended_how(channel.exit, proc.returncode)}"
                ms = (now - started) * 1000 if started is not None else 0.0
                return self._synthetic_error(req_id, _lambda_error("Runtime.ExitError", msg), [msg, "Runtime.ExitError"],
                                             ms, init_ms)
            if started is not None and now >= started + timeout:
                with self.lock:
                    if self.process is proc:
                        self._kill()
                # the same type and wording as local runs (and AWS): errorType Sandbox.Timedout
                text = _timeout_text(timeout)
                return self._synthetic_error(
                    req_id, _lambda_error("Sandbox.Timedout", f"RequestId: {req_id} Error: {text}"),
                    [f"{_iso_now()} {req_id} {text}"], timeout * 1000, init_ms)

    def get_logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip or not (cfg.runtime or "").startswith("python"):
            raise LambdaRuntimeException(
                f"dorc's LocalStack executor runs Python zip functions only, not {cfg.package_type}/{cfg.runtime}")
        problems = _setup_problems()
        if problems:
            raise LambdaRuntimeException("dorc executor misconfigured: " + "; ".join(problems))
        if cfg.code:
            cfg.code.prepare_for_execution()  # unzips into config.dirs.tmp, cached per code digest

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        """Called once when the Lambda service starts: tell dorc this executor (not Docker's) is in use."""
        problems = _setup_problems()
        for p in problems:
            LOG.error("dorc executor: %s", p)
        marker = os.environ.get("DORC_EXECUTOR_MARKER")
        if marker:
            try:
                with open(marker, "w") as fh:
                    json.dump({"executor": "dorc", "pid": os.getpid(), "problems": problems}, fh)
            except OSError as exc:
                LOG.warning("dorc executor: cannot write %s: %s", marker, exc)
        return not problems

    # -- internals ----------------------------------------------------------------------------
    def _spawn_and_wait(self) -> None:
        self._kill()
        self.endpoint = _WorkerEndpoint()
        cfg = self.function_version.config
        code_dir = str(cfg.code.get_unzipped_code_location())
        if self.python is None:
            self.python = _interpreter(str(cfg.runtime))
        python, note = self.python
        bytecode_note = _sdk_bytecode(python, str(cfg.runtime))
        isolation = _sandbox_isolation()
        runtime_dir = _runtime_dir()
        user_env = cfg.environment or {}
        storage = getattr(cfg, "ephemeral_storage", None)
        sandbox = {
            "namespaces": isolation.namespaces,
            "tmp_mb": int(getattr(storage, "size", None) or 512),
            "hide": _host_aws_folders(),
            "notes": [n for n in (note, bytecode_note, None if isolation.namespaces else isolation.line) if n],
        }
        env = {
            # Lambda's variables (LocalStack's) and the function's own: nothing of LocalStack's
            # environment. PATH starts like Lambda's (/var/lang/bin): the runtime's interpreter
            "PATH": f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin:/bin:/opt/bin",
            **self.env_vars,
            # LocalStack hands over container paths (/var/task, /var/runtime); these are this host's
            "LAMBDA_TASK_ROOT": code_dir,
            "LAMBDA_RUNTIME_DIR": runtime_dir,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{cfg.runtime}",
            # read (and removed from the environment) by the worker
            "DORC_RUNTIME_DIR": runtime_dir,
            "DORC_LAMBDA_RUNTIME": str(cfg.runtime),
            "DORC_USER_ENV_KEYS": ",".join(sorted(user_env)),
            "DORC_WORKER_SANDBOX": json.dumps(sandbox),
        }
        if not isolation.namespaces:  # no private /tmp: at least Python's tempfile is private
            tmp_dir = self.work_dir / "tmp"
            tmp_dir.mkdir(parents=True, exist_ok=True)
            env["TMPDIR"] = str(tmp_dir)
        for key in LOG_VARIABLES:  # as Lambda sets them, not as LocalStack spells them
            env.pop(key, None)
        env.update(_logging_environment(getattr(cfg, "logging_config", None)))
        from dorc_sim.sandbox.isolation import command_prefix

        channel_r, channel_w = os.pipe()
        life_r, life_w = os.pipe()
        cmd = [*command_prefix(isolation), python, "-I", "-S", _worker_script(),
               "--channel", str(channel_w), "--lifeline", str(life_r)]
        log_fd = open(self.log_path, "ab")
        try:
            if note:
                log_fd.write(f"dorc: {note}\n".encode())
                log_fd.flush()
            self.process = subprocess.Popen(
                cmd, cwd=code_dir, env=env, pass_fds=(channel_w, life_r),
                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: a kill reaches the handler's children too
            )
        except OSError as exc:
            for fd in (channel_r, life_w):
                os.close(fd)
            raise LambdaRuntimeException(f"cannot start the dorc worker ({python}): {exc}") from exc
        finally:
            log_fd.close()
            os.close(channel_w)
            os.close(life_r)
        self.lifeline = life_w
        self.endpoint.channel = _Channel(channel_r)
        LOG.debug("dorc executor %s: worker pid %s for %s on %s", self.id, self.process.pid, cfg.handler, python)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                self.endpoint.ready.result(timeout=0.1)
                return
            except FutureTimeoutError:
                pass
            except Exception:
                self._kill()
                raise
            if self.process.poll() is not None:
                raise LambdaRuntimeException(
                    f"the dorc worker exited with status {self.process.returncode} before it was ready. "
                    f"Logs:\n{self.get_logs()}")
            if time.monotonic() >= deadline:
                self._kill()
                raise LambdaRuntimeException(f"the dorc worker was not ready after {READY_TIMEOUT:.0f} s. "
                                             f"Logs:\n{self.get_logs()}")

    def _kill(self) -> None:
        """End the sandbox and everything it started: its session's process group, and with
        ``unshare`` its PID namespace (the namespace dies with its first process)."""
        lifeline, self.lifeline = self.lifeline, None
        if lifeline is not None:
            try:
                os.close(lifeline)
            except OSError:
                pass
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        from dorc_sim.sandbox.outside import kill

        if not kill(proc, KILL_WAIT):
            LOG.warning("dorc executor: worker %s did not die", proc.pid)

    def _synthetic_error(self, req_id: str, error: dict, lambda_lines: list[str], ms: float,
                         init_ms: float | None) -> InvocationResult:
        """The result of a call the sandbox could not finish: what it logged so far (from the
        channel), then Lambda's lines, as local runs end such a call."""
        error = {**error, "requestId": req_id}
        said = self.endpoint.channel.said() if self.endpoint and self.endpoint.channel else []
        lines = [line for line in said]
        if not any(line.startswith("START RequestId:") for line in lines):
            lines.insert(0, f"START RequestId: {req_id} Version: $LATEST")
        from dorc_sim.runtime import report_line

        report = report_line(req_id, ms, self.function_version.config.memory_size, 0, init_ms)
        logs = "\n".join([*lines, *lambda_lines, f"END RequestId: {req_id}", report]) + "\n"
        return InvocationResult(req_id, to_bytes(json.dumps(error)), is_error=True, logs=logs)


def _error_type(result: InvocationResult) -> str | None:
    if not result.is_error:
        return None
    try:
        return json.loads(result.payload or b"{}").get("errorType")
    except (ValueError, AttributeError):
        return None


def _timeout_text(timeout: float) -> str:
    _dorc_sim()
    from dorc_sim.runtime import timeout_text

    return timeout_text(timeout)


def _iso_now() -> str:
    _dorc_sim()
    from dorc_sim.runtime import iso_now

    return iso_now()
