"""dorc's LocalStack worker (``dorc_sim.localstack.worker``) speaking its protocol with a stand-in for
LocalStack's executor endpoint, without LocalStack: the hand-over of a call must be acknowledged
in full even when the handler ends the process at once."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dorc.localstack.install import worker_pythonpath

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Endpoint:
    """Records what the worker posts to ``/_localstack_lambda/<id>/...``."""

    def __init__(self) -> None:
        self.posts: "queue.Queue[tuple[str, bytes]]" = queue.Queue()
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


def _start_worker(tmp_path, endpoint: _Endpoint, handler_src: str) -> tuple[subprocess.Popen, int]:
    code = tmp_path / "task"
    code.mkdir(exist_ok=True)
    (code / "lambda.py").write_text(handler_src)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(worker_pythonpath()),
        "DORC_WORKER_PYTHONPATH": str(worker_pythonpath()),
        "LOCALSTACK_RUNTIME_ENDPOINT": endpoint.url,
        "LOCALSTACK_RUNTIME_ID": "rt1",
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "5",
        "LAMBDA_TASK_ROOT": str(code),
        "_HANDLER": "lambda.handler",
        "DORC_INVOCATION_LOG_DIR": str(tmp_path),
        "TMPDIR": str(tmp_path),
    }
    proc = subprocess.Popen([sys.executable, "-P", "-m", "dorc_sim.localstack.worker", "--owner", str(os.getpid())],
                            cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        path, body = endpoint.next_post()
        assert path == "/_localstack_lambda/rt1/status/rt1/ready", path
        return proc, json.loads(body)["port"]
    except BaseException:  # no ready call (or a wrong one): the worker must not outlive the test
        _stop(proc)
        raise


def _invoke(port: int, req_id: str, payload: dict) -> tuple[int, bytes]:
    data = json.dumps({"invoke-id": req_id, "payload": json.dumps(payload), "trace-id": ""}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invoke", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with _no_proxy.open(req, timeout=10) as resp:
        return resp.status, resp.read()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


def test_a_call_posts_its_logs_then_its_response(tmp_path, endpoint):
    proc, port = _start_worker(tmp_path, endpoint, (
        "def handler(event, context):\n"
        "    print('hello from', context.function_name)\n"
        "    return {'statusCode': 200, 'body': event}\n"))
    try:
        assert _invoke(port, "req-1", {"n": 1}) == (200, b"OK")
        path, body = endpoint.next_post()
        assert path.endswith("/invocations/req-1/logs")
        logs = json.loads(body)["logs"]
        assert "START RequestId: req-1" in logs and "hello from fn" in logs and "REPORT RequestId: req-1" in logs
        path, body = endpoint.next_post()
        assert path.endswith("/invocations/req-1/response")
        assert json.loads(body) == {"statusCode": 200, "body": {"n": 1}}
    finally:
        _stop(proc)


def test_a_handler_that_ends_the_process_still_gets_its_call_acknowledged(tmp_path, endpoint):
    # the executor tells "the worker crashed in this call" from "the call never reached the worker"
    # by this acknowledgement; it used to race the handler's os._exit. Repeated to give a race a chance.
    for attempt in range(8):
        proc, port = _start_worker(tmp_path, endpoint, "import os\ndef handler(event, context):\n    os._exit(7)\n")
        try:
            assert _invoke(port, f"req-{attempt}", {}) == (200, b"OK")
            assert proc.wait(timeout=10) == 7
        finally:
            _stop(proc)
