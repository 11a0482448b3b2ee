"""One LocalStack Lambda execution environment, run by dorc's executor plugin in a sandbox as a
local run's is (``dorc_sim.sandbox``):

    [unshare ...] <the runtime's python> -I -S <runtime dir>/dorc_sim/localstack/worker.py
        --channel FD --lifeline FD

in the function's unzipped code folder, with Lambda's environment only. Before the handler is
imported it makes the file system Lambda's (``dorc_sim.sandbox.inside.enter``: read-only task root, private
``/tmp`` capped at the ephemeral storage, no ``/dev/shm``, no ``~/.aws``), removes the
semaphores Lambda lacks (``no_semaphores``) and sets Lambda's ``sys.path`` (task root, runtime
dir, standard library). Then it forks, as the local sandbox's worker does: the child is the
runtime, the parent the sandbox's first process (it reaps orphans and says how the runtime
ended).

Every call goes through the same ``FunctionRuntime`` as local runs (context, Lambda's variables,
Runtime.ExitError, MarshalError, import errors, START/END/REPORT framing). The TIMEOUT is the
executor's: it kills the sandbox at the deadline, counted from the end of Init, which the
runtime reports here (``on_init``) and this worker passes on.

Two protocols. LocalStack's, over HTTP (``dorc_localstack_executor.executor``):
  executor -> worker : POST http://127.0.0.1:<port>/invoke {"invoke-id", "payload", "trace-id"}
  worker -> executor : POST {LOCALSTACK_RUNTIME_ENDPOINT}/status/{id}/ready {"port": N},
                       /invocations/{req}/logs, /invocations/{req}/response | /error
And dorc's own, JSON lines on the CHANNEL pipe (worker -> executor): ``init`` (the Init Duration:
the call's clock starts now), ``log`` (each line as it is written: a killed call keeps what it
said), ``exit`` (how the runtime ended). The LIFELINE pipe (executor -> worker) ends when
LocalStack does: the sandbox ends with it.

Standard library and ``dorc_sim`` only: it runs on the function's Python, not dorc's.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_MAX_PAYLOAD = 6 * 1024 * 1024 + 100  # LocalStack's default (LOCALSTACK_MAX_PAYLOAD_SIZE)
# Lambda's variables from the function's logging configuration: passed in the spec as the local
# target passes them (dorc.targets.local.function_spec), so the runtime reads them the same way.
LOG_VARIABLES = ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL")

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


class _Settings:
    """What the executor told this worker; removed from the environment the handler sees."""

    def __init__(self) -> None:
        env = os.environ
        self.runtime_endpoint = env["LOCALSTACK_RUNTIME_ENDPOINT"]  # http://host:port/_localstack_lambda/<id>
        self.runtime_id = env["LOCALSTACK_RUNTIME_ID"]
        self.max_payload = int(env.get("LOCALSTACK_MAX_PAYLOAD_SIZE") or DEFAULT_MAX_PAYLOAD)
        self.user_env_keys = [k for k in env.pop("DORC_USER_ENV_KEYS", "").split(",") if k]
        self.runtime = env.pop("DORC_LAMBDA_RUNTIME", "") or _runtime_from(env.get("AWS_EXECUTION_ENV", ""))
        self.runtime_dir = env.pop("DORC_RUNTIME_DIR", "")
        sandbox = json.loads(env.pop("DORC_WORKER_SANDBOX", "") or "{}")
        self.namespaces = bool(sandbox.get("namespaces"))
        self.tmp_mb = int(sandbox.get("tmp_mb") or 512)
        self.hide = list(sandbox.get("hide") or [])
        self.notes = list(sandbox.get("notes") or [])  # said in the first call's log (never silently)
        if "LC_CTYPE" not in self.user_env_keys:
            # Python's own C-locale coercion (PEP 538) where Lambda's en_US.UTF-8 is not installed:
            # not a variable Lambda sets
            env.pop("LC_CTYPE", None)


def _runtime_from(execution_env: str) -> str:
    prefix = "AWS_Lambda_"
    if execution_env.startswith(prefix) and execution_env[len(prefix):].startswith("python"):
        return execution_env[len(prefix):]
    return "python3.12"


def function_spec(env, runtime: str, user_env_keys: list[str]):
    """The function, described by the variables LocalStack sets for its execution environment."""
    from dorc_sim.runtime import FunctionSpec

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
    """Where log lines go: the current call's lines (and, as each is written, the executor, so a
    killed call keeps them); between calls, the worker log."""

    def __init__(self, worker_log: int) -> None:
        from dorc_sim.sandbox.inside import send

        self.send = send
        self.lines: list[str] | None = None
        self.notes: list[str] = []  # said once, after the next START line (never silently)
        self.worker_log = worker_log
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        notes: list[str] = []
        with self.lock:
            lines = self.lines
            if lines is not None:
                lines.append(line)
                if self.notes and line.startswith("START RequestId: "):
                    notes, self.notes = [f"dorc: {note}" for note in self.notes], []
                    lines.extend(notes)
        if lines is not None:
            for text in (line, *notes):
                self.send({"t": "log", "l": text})
        else:
            try:
                os.write(self.worker_log, (line + "\n").encode("utf-8", "replace"))
            except OSError:
                pass


def error_body(result) -> dict:
    """Lambda's error shape (as dorc's runtime builds it) plus the request id."""
    assert result.error is not None
    return {**result.error.to_lambda(), "requestId": result.request_id}


def run_invocation(rt, sink: _Sink, inv: dict, settings: _Settings, client: _Client, notes: list[str]) -> bool:
    """One call, answered over LocalStack's protocol. False when the runtime must end (sys.exit)."""
    req_id = inv["invoke-id"]
    os.environ["_X_AMZN_TRACE_ID"] = inv.get("trace-id") or ""
    with sink.lock:
        sink.lines = []
        sink.notes, notes[:] = list(notes), []
    try:
        result = rt.invoke(inv.get("payload") or "{}", request_id=req_id)
    finally:
        with sink.lock:
            lines, sink.lines = sink.lines or [], None
    logs = "\n".join(lines) + "\n"  # the runtime's lines and what reached fds 1 and 2, in order
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
    client.post(f"/invocations/{req_id}/logs", json.dumps({"logs": logs}).encode())
    client.post(f"/invocations/{req_id}/{kind}", body)
    return not (result.error is not None and result.error.type == "Runtime.ExitError")


def _serve(settings: _Settings, notes: list[str]) -> None:
    """The runtime process: LocalStack's protocol, one call at a time on the main thread."""
    from dorc_sim.runtime import FunctionRuntime
    from dorc_sim.sandbox.inside import FdLog, send

    worker_log = os.dup(1)  # the worker's own diagnostics; fds 1 and 2 become the function's log
    os.set_inheritable(worker_log, False)
    sink = _Sink(worker_log)
    fd_log = FdLog(sink)

    client = _Client(settings)
    spec = function_spec(os.environ, settings.runtime, settings.user_env_keys)
    # the same stream name in the context and the environment as LocalStack gives CloudWatch
    rt = FunctionRuntime(spec, sink, log_stream=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
                         on_init=lambda ms: send({"t": "init", "ms": ms}), flush=fd_log.sync)

    invocations: "queue.Queue[dict]" = queue.Queue()
    handler_cls = type("InvokeHandler", (_InvokeHandler,), {"invocations": invocations})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True, name="invoke-server").start()
    port = server.server_address[1]

    def say(text: str) -> None:
        os.write(worker_log, (text + "\n").encode("utf-8", "replace"))

    say(f"dorc worker {os.getpid()}: {spec.name} ({spec.handler}, {spec.runtime} on Python "
        f"{'.'.join(map(str, sys.version_info[:3]))}) on port {port}")
    try:
        client.post(f"/status/{settings.runtime_id}/ready", json.dumps({"port": port}).encode())
    except Exception as exc:  # noqa: BLE001 - LocalStack is gone or refused us
        say(f"dorc worker: cannot report ready: {exc}")
        os._exit(1)

    while True:
        inv = invocations.get()
        try:
            if not run_invocation(rt, sink, inv, settings, client, notes):
                os._exit(0)  # the runtime process ended (sys.exit): a new environment next time
        except Exception:  # noqa: BLE001 - a protocol failure: report it, keep serving
            say(traceback.format_exc())
            try:
                req_id = inv.get("invoke-id", "")
                client.post(f"/invocations/{req_id}/error", json.dumps({
                    "errorType": "Runtime.Unknown", "errorMessage": "dorc worker failed; see the worker log",
                    "requestId": req_id}).encode())
            except Exception:  # noqa: BLE001
                pass


def _watch_lifeline(fd: int, child: int) -> None:
    """LocalStack (the executor) is gone when its end of the pipe closes: end the sandbox and
    every process of it (in a PID namespace this process's exit does; else its process group)."""
    while True:
        try:
            if not os.read(fd, 64):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    try:
        if os.getpid() != 1 and os.getpgid(0) == os.getpid():
            os.killpg(0, signal.SIGKILL)
        os.kill(child, signal.SIGKILL)
    finally:
        os._exit(0)


def _die_with_parent(parent: int) -> None:
    """The runtime does not outlive the sandbox's first process, however that one ended (Linux:
    the kernel sends SIGKILL; elsewhere a thread looks every half second)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # it ended before the request took effect
                os._exit(0)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)

    def fd_arg(name: str) -> int:
        return int(argv[argv.index(name) + 1]) if name in argv else -1

    channel, lifeline = fd_arg("--channel"), fd_arg("--lifeline")
    settings = _Settings()
    if settings.runtime_dir:
        sys.path.insert(0, settings.runtime_dir)  # dorc_sim, as Lambda's /var/runtime holds its runtime
    from dorc_sim.sandbox import inside

    inside.private_fds(channel, lifeline)
    inside.open_channel(channel)
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    missing = inside.enter(task_root, settings.runtime_dir, namespaces=settings.namespaces, tmp_mb=settings.tmp_mb,
                           hide=settings.hide)
    notes = list(settings.notes)
    if missing:
        notes.append(f"sandbox: partial ({', '.join(missing)})")
    for note in notes:  # the worker log's first lines
        print(f"dorc: {note}", flush=True)
    if settings.namespaces and not missing:
        print("dorc: sandbox: full", flush=True)
    first = os.getpid()
    child = inside.fork_runtime(lambda: _serve(settings, notes), before=lambda: _die_with_parent(first))
    if lifeline >= 0:
        threading.Thread(target=_watch_lifeline, args=(lifeline, child), daemon=True, name="lifeline").start()
    inside.init(child)


if __name__ == "__main__":
    main()
