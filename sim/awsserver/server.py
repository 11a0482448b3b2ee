"""The local AWS server process: moto's WSGI app on 127.0.0.1, S3 loaded from and written
through to ``<state>/s3/`` (``store``), stopped by SIGTERM or after ``$DORC_SIM_IDLE_MINUTES``
without a request while no run holds ``clients.lock``.

The write-through runs after moto answered and before the answer is sent: when a client sees
its PUT or DELETE succeed, the folder has it. Under the bucket's lock it copies moto's current
state of the key (not the request's body), so when two writes of one key race, the folder ends
with the one S3 kept.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

from . import control, store

_MUTATING = {"PUT", "POST", "DELETE"}


class WriteThrough:
    """WSGI middleware around moto: health answers, activity time, S3 write-through."""

    def __init__(self, app, state: Path):
        self.app = app  # moto's DomainDispatcherApplication
        self.state = state
        self.last_request = time.monotonic()
        self.in_flight = 0
        self._count = threading.Lock()
        self._health = json.dumps({"pid": os.getpid(), "state": str(state), "digest": control.digest()}).encode()
        # the server's own requests: path -> (what it does, for the log; the work on the request)
        self._own = {control.ROLES_PATH: ("setting up roles", _roles),
                     control.BUCKETS_PATH: ("creating buckets", lambda request: _buckets(state, request))}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") == control.HEALTH_PATH:  # `dorc sim status` is not use: no activity
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(self._health)))])
            return [self._health]
        own = self._own.get(environ.get("PATH_INFO", "")) if environ.get("REQUEST_METHOD") == "POST" else None
        if own is not None:  # a run's set-up, asked as one JSON request
            self.last_request = time.monotonic()
            return _json_request(environ, start_response, *own)
        self.last_request = time.monotonic()
        with self._count:
            self.in_flight += 1
        try:
            app = self.app.get_application(environ)  # moto's own routing, done once, here
            target = _s3_target(environ, app) if environ.get("REQUEST_METHOD") in _MUTATING else None
            result = app(environ, start_response)
            if target is None:
                return result
            try:
                body = b"".join(result)  # moto has answered in full: now persist, then reply
            finally:
                if hasattr(result, "close"):
                    result.close()
            try:
                persist(self.state, *target)
            except Exception:  # noqa: BLE001 — the store must not go quiet: log it loudly
                logging.getLogger("dorc_sim.awsserver").exception("write-through of %s failed", target)
                raise
            return [body]
        finally:
            with self._count:
                self.in_flight -= 1
            self.last_request = time.monotonic()


def _json_request(environ, start_response, doing: str, work):
    """``work`` on the request's JSON; its answer as JSON, or the error said to the client (which
    names the run that asked) and logged here."""
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        answer, status = work(json.loads(environ["wsgi.input"].read(size) or b"{}")), "200 OK"
    except Exception as exc:  # noqa: BLE001 — said to the client, which names the run that asked
        logging.getLogger("dorc_sim.awsserver").exception("%s failed", doing)
        answer, status = {"error": f"{type(exc).__name__}: {exc}"}, "400 Bad Request"
    body = json.dumps(answer).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _roles(request: dict) -> dict:
    """The functions' roles as the plan grants them, and a session for each (one call a run)."""
    from dorc_sim.iam import roles

    return roles.ensure(request["roles"], account=control.ACCOUNT, region=request.get("region") or "us-east-1")


def _buckets(state: Path, request: dict) -> dict:
    """Create the buckets a run needs that do not exist yet (persisted as any bucket is): one
    request, so a run's own process needs no AWS SDK of its own."""
    from moto.s3.models import s3_backends

    region = request.get("region") or "us-east-1"
    backend = s3_backends[control.ACCOUNT]["aws"]
    created = []
    for name in request["buckets"]:
        if _backend_bucket(name) is None:
            try:
                backend.create_bucket(name, region)
            except Exception:  # noqa: BLE001 - a concurrent run made it first: it exists, as asked
                if _backend_bucket(name) is None:
                    raise
            else:
                created.append(name)
            persist(state, name, None)
    return {"created": created}


def _s3_target(environ, app) -> tuple[str, str | None] | None:
    """(bucket, key or None) of a path-style request (what boto3 sends to an IP endpoint) that
    ``app``, the backend moto's dispatcher chose for it, serves as S3.

    Following moto's choice rather than parsing the signature here, every write moto's S3 answers
    is persisted: SigV4 scoped to s3 (header or presigned query), the older SigV2 (``Authorization:
    AWS key:signature``, or a presigned URL's ``AWSAccessKeyId``/``Signature``) and unsigned
    requests, which moto serves as S3; S3 Control, also signed for s3, is not.
    """
    if getattr(app, "service", None) != "s3":  # moto's create_backend_app names each backend app
        return None
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:  # as sent: a key may hold "%", which a second unquote would change
        target = raw.split("?", 1)[0]
        if "://" in target:  # an absolute URI (a proxy's form)
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        path = unquote(target)
    else:  # WSGI's PATH_INFO: already unquoted, its UTF-8 bytes read as latin-1
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    parts = path.lstrip("/").split("/", 1)
    if not parts[0]:
        return None
    return parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)


def _backend_bucket(name: str):
    from moto.s3.models import s3_backends

    for _, by_partition in list(s3_backends.items()):
        for backend in by_partition.values():
            if name in backend.buckets:
                return backend.buckets[name]
    return None


def _current(bucket, key: str):
    from moto.s3.models import FakeKey

    if bucket is None:
        return None
    try:
        k = bucket.keys[key]
    except KeyError:
        return None
    if not isinstance(k, FakeKey):  # a delete marker
        return None
    body = k.value
    return body, store.meta_for(body, k.metadata.get("content-type"), k.etag.strip('"'))


def persist(state: Path, bucket_name: str, key: str | None) -> None:
    """Copy moto's state of ``key`` (or of the whole bucket) into the folder."""
    bucket = _backend_bucket(bucket_name)
    if bucket is None:
        store.remove_bucket_dir(state, bucket_name)
        return
    store.ensure_bucket_dir(state, bucket_name, bucket.region_name)

    def current():
        if key is not None:
            return {key: _current(bucket, key)}
        keys = set(bucket.keys.keys()) | store.known_keys(state, bucket_name)
        return {k: _current(bucket, k) for k in keys}

    store.sync_keys(state, bucket_name, current)


def load(state: Path) -> int:
    """The folder into moto, before the server answers anyone."""
    from moto.s3.models import s3_backends

    backend = s3_backends[control.ACCOUNT]["aws"]
    n = 0
    for bucket, region, key, body, meta in store.load(state):
        if key is None:
            backend.create_bucket(bucket, region or "us-east-1")
            continue
        k = backend.put_object(bucket, key, body)
        k.metadata["content-type"] = meta.get("content_type") or "binary/octet-stream"
        n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dorc_sim.awsserver")
    parser.add_argument("--state", required=True, help="the config repo's .dorc/local-aws folder")
    args = parser.parse_args(argv)
    state = Path(args.state).resolve()
    idle_s = control.idle_minutes() * 60
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       # every request in one account, whoever signs it (moto reads these at import)
                       "MOTO_ACCOUNT_ID": control.ACCOUNT,
                       # AWS's managed policies exist, so a function may be granted one by ARN
                       "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"})

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    from dorc_sim.iam import moto_hook

    moto_hook.install()  # calls signed with a function's role session are checked (IAM)

    try:
        n = load(state)
    except store.StoreDamaged as exc:
        lines = "\n".join(f"  {p}" for p in exc.problems)
        sys.stderr.write(f"the local S3 store in {state / 's3'} is damaged; not starting on it:\n{lines}\n"
                         f"  fix: {store.REPAIR_HINT}\n")
        sys.exit(3)

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args) -> None:  # one line per request is noise
            if type == "error":
                super().log(type, message, *args)

    app = WriteThrough(DomainDispatcherApplication(create_backend_app), state)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    port = server.server_port
    me = {"pid": os.getpid(), "port": port, "started": time.time(), "digest": json.loads(app._health)["digest"],
          "state": str(state)}
    store.write_atomic(state / control.INFO, json.dumps(me).encode())
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} serving {state} at http://127.0.0.1:{port} "
                     f"(pid {os.getpid()}, {n} object(s) loaded, idle stop after {idle_s / 60:g} min)\n")
    sys.stderr.flush()

    stopping, stopped = threading.Event(), threading.Event()

    def retire(reason: str) -> None:
        if stopping.is_set():
            return
        stopping.set()
        server.shutdown()
        deadline = time.monotonic() + 10
        while app.in_flight and time.monotonic() < deadline:  # let answered writes reach the folder
            time.sleep(0.01)
        if control.read_info(state) and control.read_info(state).pid == os.getpid():
            (state / control.INFO).unlink(missing_ok=True)
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} stopped ({reason})\n")
        stopped.set()

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=retire, args=("SIGTERM",)).start())
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch_idle() -> None:
        while not stopping.wait(min(5.0, max(0.2, idle_s / 4))):
            if not state.is_dir():
                retire("its state folder was removed")  # e.g. a test's tmp folder, cleaned up
                return
            if time.monotonic() - app.last_request < idle_s or app.in_flight:
                continue
            try:
                idle_stop()
            except OSError as exc:  # the folder went away under us: nothing left to serve
                retire(f"state folder unusable: {exc}")
            if stopping.is_set():
                return

    def idle_stop() -> None:
        with open(state / control.CLIENTS_LOCK, "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a run holds the server: not idle
            with open(state / control.START_LOCK, "a+b") as g:
                fcntl.flock(g, fcntl.LOCK_EX)
                retire(f"idle for {idle_s / 60:g} min")

    threading.Thread(target=watch_idle, daemon=True).start()
    server.serve_forever(poll_interval=0.05)
    stopped.wait(15)
    # the idle path holds clients.lock until here: a run waiting for it then finds no server.json
