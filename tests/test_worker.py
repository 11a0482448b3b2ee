"""dorc's LocalStack worker (``dorc_sim/localstack/worker.py``), started as dorc's executor starts
it (in the sandbox, ``-I -S`` on the runtime's Python) and speaking its protocol with a stand-in
for LocalStack's executor endpoint, without LocalStack: the hand-over of a call is acknowledged in
full even when the handler ends the process at once; Init's end, log lines and the runtime's end
come on the channel; the sandbox ends with its lifeline."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dorc_sim.sandbox.interpreters import find_interpreter
from dorc_sim.sandbox.isolation import command_prefix, probe
from dorc_sim.sandbox.sdk import runtime_dir
from helpers import processes_with

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Endpoint:
    """Records what the worker posts to ``/_localstack_lambda/<id>/...``."""

    def __init__(self) -> None:
        self.posts: queue.Queue[tuple[str, bytes]] = queue.Queue()
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.put((self.path, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/_localstack_lambda/rt1"

    def next_post(self) -> tuple[str, bytes]:
        return self.posts.get(timeout=20)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    ep = _Endpoint()
    yield ep
    ep.close()


class _Worker:
    """A started worker: its process, port, channel messages and lifeline."""

    def __init__(self, proc: subprocess.Popen, channel: int, lifeline: int):
        self.proc, self.lifeline, self.port = proc, lifeline, 0
        self.messages: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, args=(channel,), daemon=True).start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as fh:
            for line in fh:
                self.messages.put(json.loads(line))
        self.messages.put({"t": "eof"})

    def next_message(self, kind: str) -> dict:
        while True:
            msg = self.messages.get(timeout=20)
            if msg["t"] in (kind, "eof"):
                return msg

    def stop(self) -> None:
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the sandbox's session, as the executor ends it
        self.proc.wait(timeout=10)


def _start_worker(tmp_path, endpoint: _Endpoint, handler_src: str, runtime: str = "python3.12",
                  namespaces: bool | None = None, notes: list[str] | None = None) -> _Worker:
    code = tmp_path / "task"
    code.mkdir(exist_ok=True)
    (code / "lambda.py").write_text(handler_src)
    runtime_folder = str(runtime_dir())
    isolation = probe()
    if namespaces is None:
        namespaces = isolation.namespaces
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "DORC_RUNTIME_DIR": runtime_folder,
        "DORC_LAMBDA_RUNTIME": runtime,
        "DORC_WORKER_SANDBOX": json.dumps({"namespaces": namespaces, "tmp_mb": 64, "hide": [], "notes": notes or []}),
        "LOCALSTACK_RUNTIME_ENDPOINT": endpoint.url,
        "LOCALSTACK_RUNTIME_ID": "rt1",
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "5",
        "LAMBDA_TASK_ROOT": str(code),
        "_HANDLER": "lambda.handler",
    }
    if not namespaces:
        env["TMPDIR"] = str(tmp_path)
    channel_r, channel_w = os.pipe()
    life_r, life_w = os.pipe()
    cmd = [*(command_prefix(isolation) if namespaces else []), find_interpreter(runtime).executable, "-I", "-S",
           os.path.join(runtime_folder, "dorc_sim", "localstack", "worker.py"),
           "--channel", str(channel_w), "--lifeline", str(life_r)]
    proc = subprocess.Popen(cmd, cwd=code, env=env, pass_fds=(channel_w, life_r), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(channel_w)
    os.close(life_r)
    worker = _Worker(proc, channel_r, life_w)
    try:
        path, body = endpoint.next_post()
        assert path == "/_localstack_lambda/rt1/status/rt1/ready", path
        worker.port = json.loads(body)["port"]
        return worker
    except BaseException:  # no ready call (or a wrong one): the worker must not outlive the test
        worker.stop()
        raise


def _invoke(port: int, req_id: str, payload: dict) -> tuple[int, bytes]:
    data = json.dumps({"invoke-id": req_id, "payload": json.dumps(payload), "trace-id": ""}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invoke", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with _no_proxy.open(req, timeout=10) as resp:
        return resp.status, resp.read()


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "portable"])
def test_a_call_posts_its_logs_then_its_response(tmp_path, endpoint, namespaces):
    if namespaces and not probe().namespaces:
        pytest.skip(f"no Linux namespaces here: {probe().reason}")
    worker = _start_worker(tmp_path, endpoint, (
        "import os, sys\n"
        "def handler(event, context):\n"
        "    print('hello from', context.function_name)\n"
        "    os.write(1, b'straight to fd 1\\n')\n"
        "    return {'statusCode': 200, 'body': event, 'python': list(sys.version_info[:2])}\n"),
        namespaces=namespaces, notes=["python3.12 stands in for python3.99"])
    try:
        assert _invoke(worker.port, "req-1", {"n": 1}) == (200, b"OK")
        path, body = endpoint.next_post()
        assert path.endswith("/invocations/req-1/logs")
        logs = json.loads(body)["logs"]
        assert "START RequestId: req-1" in logs and "hello from fn" in logs and "REPORT RequestId: req-1" in logs
        # a note of the executor's (an interpreter that is not the runtime's) is said, once, after START
        assert logs.splitlines()[1] == "dorc: python3.12 stands in for python3.99"
        assert logs.index("straight to fd 1") < logs.index("END RequestId: req-1")
        path, body = endpoint.next_post()
        assert path.endswith("/invocations/req-1/response")
        assert json.loads(body) == {"statusCode": 200, "body": {"n": 1}, "python": [3, 12]}
        said = []  # each line as written, and Init's end (the executor's clock starts then), on the channel
        while not said or said[-1].get("l") != "straight to fd 1":
            said.append(worker.messages.get(timeout=20))
        assert said[0] == {"t": "log", "l": "START RequestId: req-1 Version: $LATEST"}
        assert said[1] == {"t": "log", "l": "dorc: python3.12 stands in for python3.99"}
        assert said[2]["t"] == "init" and said[2]["ms"] >= 0
        assert said[3] == {"t": "log", "l": "hello from fn"}
        assert _invoke(worker.port, "req-2", {"n": 2}) == (200, b"OK")
        assert "dorc: python3.12" not in json.loads(endpoint.next_post()[1])["logs"]  # said once
    finally:
        worker.stop()


def test_a_handler_that_ends_the_process_still_gets_its_call_acknowledged(tmp_path, endpoint):
    # the executor tells "the worker crashed in this call" from "the call never reached the worker"
    # by this acknowledgement; it used to race the handler's os._exit. Repeated to give a race a chance.
    for attempt in range(4):
        worker = _start_worker(tmp_path, endpoint, "import os\ndef handler(event, context):\n    os._exit(7)\n")
        try:
            assert _invoke(worker.port, f"req-{attempt}", {}) == (200, b"OK")
            assert worker.next_message("exit") == {"t": "exit", "status": 7}
            assert worker.proc.wait(timeout=10) == 7
        finally:
            worker.stop()


def test_the_sandbox_ends_with_its_lifeline_and_takes_the_handlers_children(tmp_path, endpoint):
    """LocalStack killed without stopping its environments: nothing of the sandbox outlives it."""
    marker = f"300.{uuid.uuid4().int % 10**9:09d}"  # `sleep 300.<unique>`: this test's child, no other process
    worker = _start_worker(tmp_path, endpoint, (
        "import subprocess\n"
        "def handler(event, context):\n"
        "    p = subprocess.Popen(['sleep', event['marker']], start_new_session=True)\n"
        "    print('child', p.pid, flush=True)\n"
        "    return 'started'\n"))
    try:
        assert _invoke(worker.port, "req-1", {"marker": marker}) == (200, b"OK")
        endpoint.next_post()
        assert endpoint.next_post()[0].endswith("/invocations/req-1/response")
        assert processes_with("sleep", marker), "the handler's child is running"
        os.close(worker.lifeline)
        worker.lifeline = -1
        worker.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while processes_with("sleep", marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not processes_with("sleep", marker)
    finally:
        worker.stop()


def test_the_runtime_does_not_outlive_the_sandboxs_first_process(tmp_path, endpoint):
    """Without a PID namespace (the portable sandbox) the runtime still ends with its parent."""
    worker = _start_worker(tmp_path, endpoint, "def handler(event, context):\n    return 1\n", namespaces=False)
    try:
        with open(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children") as fh:
            [runtime] = [int(pid) for pid in fh.read().split()]
        worker.proc.kill()  # the first process only, not its process group
        worker.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{runtime}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{runtime}")
    finally:
        worker.stop()
