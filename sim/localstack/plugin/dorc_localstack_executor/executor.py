"""LocalStack RuntimeExecutor "dorc": one execution environment = one host process running
``$DORC_WORKER_PYTHON -m dorc_sim.localstack.worker`` (dorc's interpreter and runtime), instead of a
Docker container with LocalStack's init.

Protocol, the one LocalStack's init speaks with the Docker executor:
  LocalStack -> worker : POST http://127.0.0.1:<worker port>/invoke
                         {"invoke-id", "invoked-function-arn", "payload" (JSON text), "trace-id"}
  worker -> LocalStack : POST {LOCALSTACK_RUNTIME_ENDPOINT}/status/{runtime id}/ready   {"port": N}
                         POST {LOCALSTACK_RUNTIME_ENDPOINT}/status/{runtime id}/error   (init error JSON)
                         POST {LOCALSTACK_RUNTIME_ENDPOINT}/invocations/{request id}/logs  {"logs": "..."}
                         POST {LOCALSTACK_RUNTIME_ENDPOINT}/invocations/{request id}/response (result JSON)
                         POST {LOCALSTACK_RUNTIME_ENDPOINT}/invocations/{request id}/error    (error JSON)
The callbacks reach LocalStack's executor router, where this executor registers its own endpoint.

The worker enforces the function's timeout itself (as dorc's in-process runtime does). This side
is the fallback: a worker still busy ``TIMEOUT_GRACE`` seconds after the timeout (counted from the
worker's acknowledgement of the call), or one that died, is killed (its whole process group) and
the call fails as Lambda reports it, with the error keys the worker itself sends (errorMessage,
errorType, stackTrace, requestId); the next call starts a fresh worker.

Settings (LocalStack's environment, set by ``dorc localstack start``):
  DORC_WORKER_PYTHON      the interpreter that runs dorc (the worker needs dorc's ``sim`` package)
  DORC_WORKER_PYTHONPATH  the folder that contains dorc's ``sim`` package
  DORC_WORKER_PATH        PATH for the functions (default /usr/local/bin:/usr/bin:/bin)
  DORC_EXECUTOR_MARKER    optional file written when LocalStack loads this executor (dorc checks it)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path

import requests
from werkzeug import Request

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.http import Response
from localstack.services.lambda_.invocation.executor_endpoint import (
    Endpoint,
    StatusErrorException,
    executor_router,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)
from localstack.utils.strings import to_bytes, to_str

LOG = logging.getLogger(__name__)

NAMESPACE = "/_localstack_lambda"
WORKER_MODULE = "dorc_sim.localstack.worker"
READY_TIMEOUT = 15.0  # seconds; LocalStack's own limit is LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT (20 s)
# the worker times calls out itself; this is only for a worker stuck in C code (or with SIGALRM
# blocked). Generous: a busy machine must not see the fallback fire before the worker's own timeout
TIMEOUT_GRACE = 5.0
KILL_WAIT = 5.0
EXIT_WAIT = 1.0  # a failed hand-over: how long to wait for the worker's exit before calling it a fault


def _worker_python() -> str:
    return os.environ.get("DORC_WORKER_PYTHON", "")


def _worker_pythonpath() -> str:
    return os.environ.get("DORC_WORKER_PYTHONPATH", "")


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
    if not path or not os.path.isfile(os.path.join(path, "dorc_sim", "localstack", "worker.py")):
        problems.append(f"DORC_WORKER_PYTHONPATH={path!r} does not contain dorc_sim/localstack/worker.py")
    return problems


def _exit_status(code: int) -> str:
    """As Lambda words it: "exit status 3" or "signal: killed"."""
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name.lower().removeprefix("sig")
    except ValueError:
        name = str(-code)
    return "signal: " + {"kill": "killed", "segv": "segmentation fault", "term": "terminated"}.get(name, name)


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


class _WorkerEndpoint(Endpoint):
    """The callbacks of one worker process (one incarnation of an execution environment)."""

    def __init__(self) -> None:
        self.ready: Future = Future()
        self.invocation: Future | None = None
        self.request_id: str | None = None
        self.logs: str | None = None
        self.port: int | None = None

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
            proc, fut = self.process, ep.invocation
        timeout = float(self.function_version.config.timeout)
        started = time.monotonic()
        try:
            resp = requests.post(f"http://127.0.0.1:{ep.port}/invoke", json=payload,
                                 proxies={"http": "", "https": ""}, timeout=10)
            resp.raise_for_status()
        except Exception as exc:  # noqa: BLE001
            # a worker that died meanwhile is a crash of this call (reported below), not a fault here
            if not _exits_within(proc, EXIT_WAIT):
                raise LambdaRuntimeException(f"Could not send the invocation to the dorc worker: {exc}") from exc

        # the worker has the call (it acknowledged it, or died with it): its own timer starts no
        # earlier than now, so the fallback's does not either
        deadline = time.monotonic() + timeout + TIMEOUT_GRACE
        while True:
            try:
                return fut.result(timeout=0.05)
            except FutureTimeoutError:
                pass
            if proc.poll() is not None:
                try:  # the result may have raced the exit
                    return fut.result(timeout=0.2)
                except FutureTimeoutError:
                    pass
                msg = f"RequestId: {req_id} Error: Runtime exited with error: {_exit_status(proc.returncode)}"
                return self._synthetic_error(req_id, _lambda_error("Runtime.ExitError", msg), msg, started)
            if time.monotonic() >= deadline:
                self._kill()
                # the same wording as dorc's runtime (and AWS): errorType Sandbox.Timedout
                message = f"Task timed out after {timeout:.2f} seconds"
                ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                return self._synthetic_error(
                    req_id, _lambda_error("Sandbox.Timedout", f"RequestId: {req_id} Error: {message}"),
                    f"{ts} {req_id} {message}", started)

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
        tmp_dir = self.work_dir / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        dorc_path = _worker_pythonpath()
        user_env = cfg.environment or {}
        user_pythonpath = self.env_vars.get("PYTHONPATH")
        env = {
            # a minimal base: LocalStack's own environment does not leak into the function. PATH
            # starts like Lambda's (/var/lang/bin): the worker's interpreter, not LocalStack's venv
            "PATH": os.environ.get("DORC_WORKER_PATH") or "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(tmp_dir),
            "TMPDIR": str(tmp_dir),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.env_vars,
            # LocalStack hands over container paths (/var/task); the code is on this host
            "LAMBDA_TASK_ROOT": code_dir,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{cfg.runtime}",
            "PYTHONPATH": dorc_path + (os.pathsep + user_pythonpath if user_pythonpath else ""),
            # read (and removed from the environment) by the worker
            "DORC_WORKER_PYTHONPATH": dorc_path,
            "DORC_LAMBDA_RUNTIME": str(cfg.runtime),
            "DORC_USER_ENV_KEYS": ",".join(sorted(user_env)),
            "DORC_INVOCATION_LOG_DIR": str(self.work_dir),  # not the handler's TMPDIR
        }
        for key in LOG_VARIABLES:  # as Lambda sets them, not as LocalStack spells them
            env.pop(key, None)
        env.update(_logging_environment(getattr(cfg, "logging_config", None)))
        log_fd = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                # -P: the code folder (cwd) is not put first on sys.path before dorc's sim is found;
                # the worker puts it there itself once sim.runtime is imported
                [_worker_python(), "-P", "-u", "-m", WORKER_MODULE, "--owner", str(os.getpid())],
                cwd=code_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: a kill reaches the handler's children too
            )
        except OSError as exc:
            raise LambdaRuntimeException(f"cannot start the dorc worker ({_worker_python()}): {exc}") from exc
        finally:
            log_fd.close()
        LOG.debug("dorc executor %s: worker pid %s for %s", self.id, self.process.pid, cfg.handler)
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
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=KILL_WAIT)
        except subprocess.TimeoutExpired:
            LOG.warning("dorc executor: worker %s did not die", proc.pid)

    def _synthetic_error(self, req_id: str, error: dict, log_line: str, started: float) -> InvocationResult:
        """The result of a call the worker could not finish: what it logged so far, then Lambda's lines."""
        error = {**error, "requestId": req_id}
        try:
            partial = (self.work_dir / f".inv-{req_id}.log").read_text(errors="replace")
        except OSError:
            partial = ""
        if not partial.startswith("START "):
            partial = f"START RequestId: {req_id} Version: $LATEST\n" + partial
        if not partial.endswith("\n"):
            partial += "\n"
        ms = (time.monotonic() - started) * 1000
        logs = (partial + f"{log_line}\nEND RequestId: {req_id}\n"
                + f"REPORT RequestId: {req_id}\tDuration: {ms:.2f} ms\tBilled Duration: {max(1, int(ms + 0.999))} ms\t"
                + f"Memory Size: {self.function_version.config.memory_size} MB\tMax Memory Used: 0 MB\n")
        return InvocationResult(req_id, to_bytes(json.dumps(error)), is_error=True, logs=logs)
