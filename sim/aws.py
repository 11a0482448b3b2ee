"""In-process AWS for local runs (moto), with the S3 holding store persisted between runs.

moto keeps its state in memory; a pipeline's layers may run in separate ``dorc run`` commands
(raw today, processed tomorrow), so every bucket's objects are written to a folder on exit and
loaded again on the next start. The folder is plain files: easy to look at, easy to clear.

Handlers run in their own processes (the sandbox), where dorc's in-process mock cannot reach:
with ``serve=True`` the same moto backends also answer over HTTP on 127.0.0.1, and
``sandbox_environment()`` points a handler's boto3 there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# A user's shell may point boto3 elsewhere; in-process AWS must see every call.
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")
_START_TIMEOUT_S = 30  # the server binds in milliseconds; this only bounds a hung import


class LocalAWSServerError(RuntimeError):
    """The HTTP endpoint for handler processes could not start. ``hint`` says what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}\n  fix: {hint}")
        self.message = message
        self.hint = hint


class LocalAWS:
    """``with LocalAWS(store_dir, region, buckets=[...], serve=False) as aws:`` — moto for the
    block; with ``serve=True`` also over HTTP for other processes (``aws.endpoint_url``)."""

    def __init__(self, store_dir: Path, region: str, buckets: list[str] = (),  # type: ignore[assignment]
                 *, serve: bool = False):
        self.store_dir = Path(store_dir)
        self.region = region
        self.buckets = list(buckets)
        self.serve = serve
        self._mock = None
        self._server: _Endpoint | None = None
        self._nested_in: LocalAWS | None = None
        self._saved_env: dict[str, str | None] = {}

    _active: "LocalAWS | None" = None  # one moto per process; nested uses share it

    def __enter__(self) -> "LocalAWS":
        outer = LocalAWS._active
        if outer is not None:
            if outer.store_dir != self.store_dir:
                raise RuntimeError(f"a local AWS for {outer.store_dir} is already active in this process")
            self._nested_in = outer
            if self.serve:
                outer._start_serving()
            for b in self.buckets:
                outer.ensure_bucket(b)
            return outer
        self._nested_in = None
        from moto import mock_aws

        for k in (*_ENDPOINT_VARS, *FAKE_CREDENTIALS, "AWS_DEFAULT_REGION"):
            self._saved_env[k] = os.environ.get(k)
        for k in _ENDPOINT_VARS:
            os.environ.pop(k, None)
        os.environ.update(FAKE_CREDENTIALS)
        os.environ["AWS_DEFAULT_REGION"] = self.region
        self._mock = mock_aws()
        self._mock.start()
        try:
            if self.serve:
                self._start_serving()  # binds while the store loads
            self._s3 = self.client("s3")
            self._load()
            for b in self.buckets:
                self.ensure_bucket(b)
        except BaseException:
            self._close()
            raise
        LocalAWS._active = self
        return self

    def __exit__(self, *exc) -> None:
        if self._nested_in is not None:
            self._nested_in._save()  # a run inside a test's local AWS still persists
            return
        LocalAWS._active = None
        try:
            if self._server is not None:
                self._server.stop()  # no handler writes behind the save
            self._save()
        finally:
            self._close()

    def _close(self) -> None:
        """Stop serving and mocking and give the environment back, whatever failed before."""
        try:
            if self._server is not None:
                self._server.stop()
        finally:
            self._server = None
            self._mock.stop()
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- the HTTP endpoint for handler processes -------------------------------------------
    def _start_serving(self) -> None:
        if self._server is None:
            self._server = _Endpoint()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``: these backends for other processes; waits for the
        server (starting it if this block was entered without ``serve=True``)."""
        if self._nested_in is not None:
            return self._nested_in.endpoint_url
        if LocalAWS._active is not self:
            raise RuntimeError("LocalAWS.endpoint_url is only available inside its `with LocalAWS(...)` block")
        self._start_serving()
        return self._server.url()

    def sandbox_environment(self) -> dict[str, str]:
        """What a handler process needs to reach this AWS, and nothing else."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=self.region)

    def ensure_bucket(self, name: str) -> None:
        existing = {b["Name"] for b in self._s3.list_buckets().get("Buckets", [])}
        if name in existing:
            return
        kwargs = {}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self._s3.create_bucket(Bucket=name, **kwargs)

    # -- persistence -------------------------------------------------------------------------
    def _bucket_dir(self, bucket: str) -> Path:
        return self.store_dir / "s3" / bucket

    def _load(self) -> None:
        root = self.store_dir / "s3"
        if not root.is_dir():
            return
        for bdir in sorted(p for p in root.iterdir() if p.is_dir()):
            self.ensure_bucket(bdir.name)
            index = _read_index(bdir)
            for key, meta in index.items():
                path = bdir / "objects" / quote(key, safe="")
                if path.is_file():
                    self._s3.put_object(Bucket=bdir.name, Key=key, Body=path.read_bytes(),
                                        ContentType=meta.get("content_type", "binary/octet-stream"))

    def _save(self) -> None:
        for b in self._s3.list_buckets().get("Buckets", []):
            name = b["Name"]
            bdir = self._bucket_dir(name)
            objects_dir = bdir / "objects"
            old = _read_index(bdir)
            new: dict[str, dict] = {}
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    etag = obj["ETag"].strip('"')
                    if key in old and old[key].get("etag") == etag and (objects_dir / quote(key, safe="")).is_file():
                        new[key] = old[key]
                        continue
                    got = self._s3.get_object(Bucket=name, Key=key)
                    body = got["Body"].read()
                    objects_dir.mkdir(parents=True, exist_ok=True)
                    tmp = objects_dir / (quote(key, safe="") + ".tmp")
                    _replace_with(tmp, objects_dir / quote(key, safe=""), body)
                    new[key] = {"etag": etag, "size": len(body), "content_type": got.get("ContentType"),
                                "sha256": hashlib.sha256(body).hexdigest()}
            for key in set(old) - set(new):  # deleted during the run
                (objects_dir / quote(key, safe="")).unlink(missing_ok=True)
            if new or old or name in self.buckets:
                bdir.mkdir(parents=True, exist_ok=True)
                _replace_with(bdir / "index.json.tmp", bdir / "index.json",
                              json.dumps(new, indent=1, sort_keys=True).encode())


class _Endpoint:
    """moto's ThreadedMotoServer on a free loopback port, started on a background thread so
    the import and bind overlap the caller's other start-up work; ``url()`` waits for it."""

    def __init__(self):
        self._server = None
        self._url: str | None = None
        self._error: LocalAWSServerError | None = None
        self._thread = threading.Thread(target=self._start, name="dorc-local-aws-server", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            server = _quiet_server()
            server.start()
            if server.failure is not None:
                raise LocalAWSServerError(
                    f"local AWS: moto's HTTP server could not listen on 127.0.0.1 ({server.failure})",
                    "check that the loopback interface is up and this process may open a port on it")
            self._server = server
            host, port = server.get_host_and_port()
            self._url = f"http://{host}:{port}"
        except LocalAWSServerError as exc:
            self._error = exc
        except ImportError as exc:
            self._error = LocalAWSServerError(
                f"local AWS: moto's HTTP server (which handler processes call) needs a module that is "
                f"missing: {exc}", "install it with: pip install 'moto[s3,server]'")
        except Exception as exc:  # noqa: BLE001 — surfaced by url(), not lost on a thread
            self._error = LocalAWSServerError(f"local AWS: moto's HTTP server did not start: {exc!r}",
                                              "report this with the message above")

    def url(self) -> str:
        self._thread.join(_START_TIMEOUT_S)
        if self._thread.is_alive():
            raise LocalAWSServerError(f"local AWS: moto's HTTP server did not start in {_START_TIMEOUT_S} s",
                                      "report this; a run without handler processes does not need it")
        if self._error is not None:
            raise self._error
        return self._url

    def stop(self) -> None:
        """Stop it by the object started; idempotent, and quiet if it never started."""
        self._thread.join(_START_TIMEOUT_S)
        server, self._server = self._server, None
        if server is not None:
            server.stop()


_server_log = logging.getLogger("dorc_sim.aws.server")


def _quiet_server():
    """A ThreadedMotoServer that neither prints nor logs each request (dorc's stdout may be a
    JSON document; werkzeug's own logger adds a stderr handler) and reports a failed bind
    instead of leaving ``start()`` waiting forever."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        def log(self, type: str, message: str, *args) -> None:
            _server_log.debug(message.rstrip(), *args)

    class QuietServer(ThreadedMotoServer):
        failure: BaseException | None = None

        def _server_entry(self) -> None:  # ThreadedMotoServer's, with the three changes above
            try:
                self._server = make_server(self._ip_address, self._port, DomainDispatcherApplication(create_backend_app),
                                           True, request_handler=QuietHandler)
            except BaseException as exc:  # noqa: BLE001 — start() reads it
                self.failure = exc
                self._server_ready_event.set()
                return
            self._server.log = lambda type, message, *args: _server_log.debug(message.rstrip(), *args)
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.01)  # stop() waits up to one interval

        def stop(self) -> None:
            super().stop()
            if self._server is not None:
                self._server.server_close()  # else the port keeps accepting connections

    return QuietServer(ip_address="127.0.0.1", port=0, verbose=False)


def _replace_with(tmp: Path, target: Path, data: bytes) -> None:
    """Write ``data`` to ``tmp`` then move it over ``target``; a failed write (a full disk)
    leaves no temporary file behind."""
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_index(bdir: Path) -> dict[str, dict]:
    try:
        return json.loads((bdir / "index.json").read_text())
    except (OSError, ValueError):
        return {}


def list_store(store_dir: Path) -> list[tuple[str, str, int]]:
    """(bucket, key, size) of everything in the persisted store, without starting moto."""
    out = []
    root = Path(store_dir) / "s3"
    if root.is_dir():
        for bdir in sorted(p for p in root.iterdir() if p.is_dir()):
            for key, meta in sorted(_read_index(bdir).items()):
                out.append((bdir.name, key, int(meta.get("size", 0))))
    return out


def stored_objects(store_dir: Path, bucket: str) -> dict[str, dict]:
    """key -> {"etag", "size", "modified" (epoch seconds), ...} of one bucket of the persisted
    store, without starting moto."""
    bdir = Path(store_dir) / "s3" / bucket
    out = {}
    for key, meta in _read_index(bdir).items():
        path = bdir / "objects" / quote(key, safe="")
        if path.is_file():
            out[key] = {**meta, "modified": path.stat().st_mtime}
    return out


def put_stored_object(store_dir: Path, bucket: str, key: str, body: bytes,
                      content_type: str = "binary/octet-stream") -> dict:
    """Store one object as a local run would (``dorc store put``) and return its index entry
    (``etag`` is S3's for a single PUT: the body's MD5). Through moto when a local AWS for this
    store is active in this process (its save on exit would drop a file written behind its back),
    else straight into the folder and its index."""
    active = LocalAWS._active
    if active is not None and active.store_dir == Path(store_dir):
        active.ensure_bucket(bucket)
        active._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        etag = active._s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        return {"etag": etag, "size": len(body), "content_type": content_type,
                "sha256": hashlib.sha256(body).hexdigest()}
    bdir = Path(store_dir) / "s3" / bucket
    objects_dir = bdir / "objects"
    objects_dir.mkdir(parents=True, exist_ok=True)
    _replace_with(objects_dir / (quote(key, safe="") + ".tmp"), objects_dir / quote(key, safe=""), body)
    meta = {"etag": hashlib.md5(body).hexdigest(), "size": len(body), "content_type": content_type,
            "sha256": hashlib.sha256(body).hexdigest()}
    index = _read_index(bdir)
    index[key] = meta
    _replace_with(bdir / "index.json.tmp", bdir / "index.json", json.dumps(index, indent=1, sort_keys=True).encode())
    return meta


def clear_store(store_dir: Path) -> int:
    """Deletes the persisted store; returns how many objects it held."""
    n = len(list_store(store_dir))
    root = Path(store_dir) / "s3"
    if root.exists():
        shutil.rmtree(root)
    return n


__all__ = ["LocalAWS", "LocalAWSServerError", "list_store", "clear_store", "stored_objects", "put_stored_object", "FAKE_CREDENTIALS"]
