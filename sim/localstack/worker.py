"""One LocalStack Lambda execution environment, run by dorc's executor plugin as
``$DORC_WORKER_PYTHON -P -m dorc_sim.localstack.worker --owner <LocalStack pid>`` in the function's
unzipped code folder.

Standard library plus ``sim.runtime`` only: every call goes through the same ``FunctionRuntime``
as dorc's in-process target, so the context, Lambda's environment variables, the timeout
("RequestId: <id> Error: Task timed out after N.NN seconds", Sandbox.Timedout), Runtime.ExitError for ``sys.exit``,
Runtime.MarshalError, import errors (Runtime.ImportModuleError, reported by the first call, as
Lambda reports init errors with the invocation) and the START/END/REPORT framing are identical.

LocalStack's side of the protocol is described in ``dorc_localstack_executor.executor``. Calls are
run one at a time on the main thread (SIGALRM times them out); a small HTTP server on a daemon
thread queues them.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dorc_sim.runtime import FunctionRuntime, FunctionSpec, InvocationResult

DEFAULT_MAX_PAYLOAD = 6 * 1024 * 1024 + 100  # LocalStack's default (LOCALSTACK_MAX_PAYLOAD_SIZE)

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


class _Settings:
    """What the executor told this worker; removed from the environment the handler sees."""

    def __init__(self) -> None:
        env = os.environ
        self.runtime_endpoint = env["LOCALSTACK_RUNTIME_ENDPOINT"]  # http://host:port/_localstack_lambda/<id>
        self.runtime_id = env["LOCALSTACK_RUNTIME_ID"]
        self.max_payload = int(env.get("LOCALSTACK_MAX_PAYLOAD_SIZE") or DEFAULT_MAX_PAYLOAD)
        self.log_dir = env.pop("DORC_INVOCATION_LOG_DIR", None) or env.get("TMPDIR") or "/tmp"
        self.user_env_keys = [k for k in env.pop("DORC_USER_ENV_KEYS", "").split(",") if k]
        self.runtime = env.pop("DORC_LAMBDA_RUNTIME", "") or _runtime_from(env.get("AWS_EXECUTION_ENV", ""))
        dorc_path = env.pop("DORC_WORKER_PYTHONPATH", "")
        # dorc's folder was only needed to import dorc_sim.runtime: the handler does not see it
        if dorc_path:
            sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.abspath(dorc_path)]
            rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != dorc_path]
            if rest:
                env["PYTHONPATH"] = os.pathsep.join(rest)
            else:
                env.pop("PYTHONPATH", None)


def _runtime_from(execution_env: str) -> str:
    prefix = "AWS_Lambda_"
    if execution_env.startswith(prefix) and execution_env[len(prefix):].startswith("python"):
        return execution_env[len(prefix):]
    return "python3.12"


# Lambda's variables from the function's logging configuration: passed in the spec as the local
# target passes them (dorc.targets.local.function_spec), so the runtime reads them the same way.
LOG_VARIABLES = ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL")


def function_spec(env: dict[str, str] | os._Environ, runtime: str, user_env_keys: list[str]) -> FunctionSpec:
    """The function, described by the variables LocalStack sets for its execution environment."""
    return FunctionSpec(
        name=env.get("AWS_LAMBDA_FUNCTION_NAME", "function"),
        source_dir=env.get("LAMBDA_TASK_ROOT") or os.getcwd(),
        handler=env.get("_HANDLER") or "lambda_function.handler",
        runtime=runtime,
        memory=int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 128),
        timeout=float(env.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 3),
        # the function's own variables are in this process's environment already; naming them here
        # keeps them above Lambda's defaults (TZ, LANG) as in AWS
        environment={k: env[k] for k in (*user_env_keys, *LOG_VARIABLES) if k in env},
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        account_id=env.get("LOCALSTACK_FUNCTION_ACCOUNT_ID") or "000000000000",
    )


class _Client:
    def __init__(self, settings: _Settings):
        self.base = settings.runtime_endpoint.rstrip("/")

    def post(self, path: str, body: bytes) -> None:
        req = urllib.request.Request(self.base + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with _opener.open(req, timeout=30) as resp:
            resp.read()


class _InvokeHandler(BaseHTTPRequestHandler):
    invocations: "queue.Queue[dict]"

    def do_POST(self) -> None:
        if self.path != "/invoke":
            self.send_response(404)
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            invocation = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        # acknowledge before queueing: a handler that kills the process (os._exit) must not cut
        # this reply short, or the executor cannot tell a crash from a worker it never reached
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")
        self.wfile.flush()
        self.invocations.put(invocation)

    def log_message(self, *args) -> None:  # keep worker.log for what matters
        pass


class _Sink:
    """Each log line goes to a file as it is written: after a kill the executor still has them."""

    def __init__(self) -> None:
        self.fh = None

    def __call__(self, line: str) -> None:
        if self.fh is not None:
            self.fh.write(line + "\n")
            self.fh.flush()


def error_body(result: InvocationResult) -> dict:
    """Lambda's error shape (as dorc's runtime builds it) plus the request id."""
    assert result.error is not None
    return {**result.error.to_lambda(), "requestId": result.request_id}


def run_invocation(rt: FunctionRuntime, sink: _Sink, inv: dict, settings: _Settings, client: _Client) -> None:
    req_id = inv["invoke-id"]
    os.environ["_X_AMZN_TRACE_ID"] = inv.get("trace-id") or ""
    log_path = os.path.join(settings.log_dir, f".inv-{req_id}.log")
    with open(log_path, "w", encoding="utf-8") as fh:
        sink.fh = fh
        try:
            result = rt.invoke(inv.get("payload") or "{}", request_id=req_id)
        finally:
            sink.fh = None
    try:
        os.unlink(log_path)
    except OSError:
        pass
    if result.error is not None:
        kind, body = "error", json.dumps(error_body(result)).encode()
    else:
        kind, body = "response", result.payload if result.payload is not None else b"null"
        if len(body) > settings.max_payload:
            kind = "error"
            body = json.dumps({
                "errorMessage": f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload "
                                f"size ({settings.max_payload} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
                "requestId": req_id,
            }).encode()
    # the logs first: LocalStack attaches the last logs it received to the result
    client.post(f"/invocations/{req_id}/logs", json.dumps({"logs": result.logs}).encode())
    client.post(f"/invocations/{req_id}/{kind}", body)


def _exit_when_orphaned(owner: int) -> None:
    # the worker has its own session (so the executor can kill its process group): it must not
    # outlive LocalStack when LocalStack is killed without stopping its environments
    while os.getppid() == owner:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    owner = int(argv[argv.index("--owner") + 1]) if "--owner" in argv else os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(owner,), daemon=True, name="orphan-watch").start()

    settings = _Settings()
    client = _Client(settings)
    spec = function_spec(os.environ, settings.runtime, settings.user_env_keys)
    sink = _Sink()
    # the same stream name in the context and the environment as LocalStack gives CloudWatch
    rt = FunctionRuntime(spec, sink, isolate=False, log_stream=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"))

    invocations: "queue.Queue[dict]" = queue.Queue()
    handler_cls = type("InvokeHandler", (_InvokeHandler,), {"invocations": invocations})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True, name="invoke-server").start()
    port = server.server_address[1]
    print(f"dorc worker {os.getpid()}: {spec.name} ({spec.handler}, {spec.runtime}) on port {port}", flush=True)
    try:
        client.post(f"/status/{settings.runtime_id}/ready", json.dumps({"port": port}).encode())
    except Exception as exc:  # noqa: BLE001 - LocalStack is gone or refused us
        print(f"dorc worker: cannot report ready: {exc}", flush=True)
        sys.exit(1)

    while True:
        inv = invocations.get()
        try:
            run_invocation(rt, sink, inv, settings, client)
        except Exception:  # noqa: BLE001 - a protocol failure: report it, keep serving
            traceback.print_exc()
            try:
                req_id = inv.get("invoke-id", "")
                client.post(f"/invocations/{req_id}/error", json.dumps({
                    "errorType": "Runtime.Unknown", "errorMessage": "dorc worker failed; see the worker log",
                    "requestId": req_id}).encode())
            except Exception:  # noqa: BLE001
                pass


if __name__ == "__main__":
    main()
