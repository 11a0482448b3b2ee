"""The local AWS of local runs, from dorc's side: the shared server (``dorc_sim.awsserver``)
started on demand, the buckets a run needs, boto3 clients and a handler's environment for it,
and the S3 store on disk (``dorc store``).

Every run of one config repo, its sandboxed handlers and the pytest plugin use one moto server
per state folder (``<config repo>/.dorc/local-aws``); S3 is written through to that folder as
each request completes, so concurrent runs keep all their writes.
"""

from __future__ import annotations

import contextlib
import shutil

from pathlib import Path

from dorc.errors import DorcError

from .awsserver import control, store

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
DEFAULT_REGION = "us-east-1"


class LocalAWSServerError(DorcError):
    """The local AWS server could not start or answer. ``hint`` says what to do."""


class LocalStoreDamaged(DorcError):
    """The S3 store on disk is damaged; ``problems`` say what was found."""

    def __init__(self, store_dir: Path, problems: list):
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"the local S3 store in {Path(store_dir) / 's3'} is damaged (nothing was changed):\n{lines}",
                         hint=store.REPAIR_HINT)
        self.problems = problems


class LocalAWS:
    """``with LocalAWS(store_dir, region, buckets=[...]) as aws:`` — the config repo's local AWS
    server for the block (started if none runs), with ``buckets`` created."""

    def __init__(self, store_dir: Path, region: str, buckets: list[str] = (),  # type: ignore[assignment]
                 idle_minutes: float | None = None):
        self.store_dir = Path(store_dir)
        self.idle_minutes = idle_minutes
        self.region = region
        self.buckets = list(buckets)
        self.server: control.ServerInfo | None = None
        self._stack: contextlib.ExitStack | None = None
        self._session = None

    def __enter__(self) -> "LocalAWS":
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(control.lease(self.store_dir))
            self.server = start_server(self.store_dir, self.idle_minutes)
            self._stack = stack
            self.ensure_buckets(self.buckets)
        except BaseException:
            self._stack = None
            self.server = None
            stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        self.server = None
        if stack is not None:
            stack.close()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``: the server, for any process on this machine."""
        if self.server is None:
            raise RuntimeError("LocalAWS.endpoint_url is only available inside its `with LocalAWS(...)` block")
        return self.server.url

    def sandbox_environment(self, credentials: dict[str, str] | None = None) -> dict[str, str]:
        """What a handler process needs to reach this AWS, and nothing else: ``credentials``
        (a role session, ``role_sessions``) or, without them, the administrator's keys."""
        keys = FAKE_CREDENTIALS if credentials is None else {
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"]}
        return {**keys, "AWS_ENDPOINT_URL": self.endpoint_url}

    def role_sessions(self, roles: list[dict]) -> dict:
        """Put each role (``name``, ``policy``, ``managed``, ``session``) in the local IAM as
        given, and assume it: ``{"credentials": {role: {...}}, "unknown_managed": {role: [arn]}}``.
        One request, whatever the number of roles."""
        return self._control(control.ROLES_PATH, {"roles": roles, "region": self.region}, "set up the functions' roles")

    def _control(self, path: str, request: dict, doing: str) -> dict:
        """One of the server's own requests (``control.*_PATH``), over plain HTTP: a run's
        process needs no AWS SDK to set up what its sandboxes use."""
        import json
        import urllib.error
        import urllib.request

        body = json.dumps(request).encode()
        http = urllib.request.Request(self.endpoint_url + path, data=body, method="POST",
                                      headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(http, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise LocalAWSServerError(f"the local AWS server could not {doing}: {detail}",
                                      hint=f"see {self.store_dir / control.LOG}; `dorc sim stop` then run again "
                                           "starts a fresh server") from None
        except (urllib.error.URLError, OSError) as exc:
            raise LocalAWSServerError(f"the local AWS server did not answer ({exc})",
                                      hint="`dorc sim status` shows it; `dorc sim stop` then run again") from None

    def client(self, service: str):
        """A boto3 client of this local AWS; the user's shell (``AWS_PROFILE``, endpoints) has no say."""
        import boto3
        import botocore.session
        from botocore.configprovider import ConstantProvider

        if self._session is None:
            core = botocore.session.Session()
            core.get_component("config_store").set_config_provider("profile", ConstantProvider(None))
            self._session = boto3.session.Session(botocore_session=core)
        return self._session.client(service, region_name=self.region, endpoint_url=self.endpoint_url,
                            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"])

    def ensure_buckets(self, names: list[str]) -> None:
        """Create each of ``names`` in this AWS's region unless it exists (one request)."""
        if names:
            self._control(control.BUCKETS_PATH, {"buckets": list(names), "region": self.region},
                          f"create bucket(s) {', '.join(names)}")


# -- the server -----------------------------------------------------------------------------------
def start_server(store_dir: Path, idle_minutes: float | None = None) -> control.ServerInfo:
    """The running server of ``store_dir``, started if needed (``dorc sim start``);
    ``idle_minutes``: see ``control.ensure``."""
    Path(store_dir).mkdir(parents=True, exist_ok=True)
    try:
        return control.ensure(Path(store_dir), idle_minutes)
    except control.ServerError as exc:
        if "damaged" in exc.message:
            raise LocalStoreDamaged(store_dir, store.check(Path(store_dir)) or [exc.message]) from None
        raise LocalAWSServerError(exc.message, hint=exc.hint) from None


def stop_server(store_dir: Path) -> control.ServerInfo | None:
    """Stop the server of ``store_dir`` by its PID (``dorc sim stop``); what was stopped, or None."""
    if not Path(store_dir).is_dir():
        return None
    return control.stop(Path(store_dir))


def server_status(store_dir: Path) -> tuple[control.ServerInfo | None, str]:
    if not Path(store_dir).is_dir():
        return None, "not running"
    return control.status(Path(store_dir))


# -- the S3 store on disk ---------------------------------------------------------------------------
@contextlib.contextmanager
def _sound(store_dir: Path):
    try:
        yield
    except store.StoreDamaged as exc:
        raise LocalStoreDamaged(store_dir, exc.problems) from None


def list_store(store_dir: Path, prefix: str = "") -> list[tuple[str, str, int]]:
    """(bucket, key, size) of everything in the store (keys, or s3://bucket/key, starting with
    ``prefix``), read from the folder: no server needed."""
    with _sound(store_dir):
        return store.list_objects(Path(store_dir), prefix)


def stored_objects(store_dir: Path, bucket: str) -> dict[str, dict]:
    """key -> {"etag", "size", "modified" (epoch seconds), ...} of one bucket of the store."""
    bdir = store.s3_root(Path(store_dir)) / bucket
    out = {}
    with _sound(store_dir):
        index = store.read_index(bdir)
    for key, meta in index.items():
        path = bdir / "objects" / store.object_name(key)
        if path.is_file():
            out[key] = {**meta, "modified": path.stat().st_mtime}
    return out


def read_stored_object(store_dir: Path, bucket: str, key: str) -> bytes | None:
    """One object's bytes, or None if the store does not hold it."""
    bdir = store.s3_root(Path(store_dir)) / bucket
    with _sound(store_dir):
        index = store.read_index(bdir) if bdir.is_dir() else {}
    if key not in index:
        return None
    try:
        return (bdir / "objects" / store.object_name(key)).read_bytes()
    except FileNotFoundError:
        raise LocalStoreDamaged(store_dir, [f"{bdir / 'objects' / store.object_name(key)}: object file of key "
                                            f"{key!r} is missing"]) from None


def _region_of(store_dir: Path, bucket: str) -> str:
    return store.bucket_region(store.s3_root(Path(store_dir)) / bucket) or DEFAULT_REGION


def put_stored_object(store_dir: Path, bucket: str, key: str, body: bytes,
                      content_type: str = "binary/octet-stream", *, region: str | None = None) -> dict:
    """Store one object as a run would (``dorc store put``), through the server so that it and
    the folder agree; returns its index entry (``etag``: S3's, the body's MD5 for one PUT)."""
    with LocalAWS(store_dir, region or _region_of(store_dir, bucket), [bucket]) as aws:
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    with _sound(store_dir):
        return store.read_index(store.s3_root(Path(store_dir)) / bucket)[key]


def delete_stored_object(store_dir: Path, bucket: str, key: str) -> bool:
    """Delete one object through the server (``dorc store rm``); False if it was not stored."""
    if key not in stored_objects(store_dir, bucket):
        return False
    with LocalAWS(store_dir, _region_of(store_dir, bucket)) as aws:
        aws.client("s3").delete_object(Bucket=bucket, Key=key)
    return True


def clear_store(store_dir: Path) -> int:
    """Delete every stored object and bucket; returns how many objects it held. Through the
    server if one runs (its memory must forget them too), else on disk."""
    store_dir = Path(store_dir)
    try:
        n = len(list_store(store_dir))
    except LocalStoreDamaged:
        n = sum(1 for p in store.s3_root(store_dir).glob("*/objects/*"))
    if control.running(store_dir) is not None:
        with LocalAWS(store_dir, DEFAULT_REGION) as aws:
            s3 = aws.client("s3")
            for b in s3.list_buckets().get("Buckets", []):
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b["Name"]):
                    for obj in page.get("Contents", []):
                        s3.delete_object(Bucket=b["Name"], Key=obj["Key"])
                s3.delete_bucket(Bucket=b["Name"])
    root = store.s3_root(store_dir)
    if root.exists():
        shutil.rmtree(root)
    return n


def check_store(store_dir: Path) -> list[str]:
    """What is wrong with the store on disk, one line each (``dorc store check``); [] if sound."""
    return [str(p) for p in store.check(Path(store_dir))]


def repair_store(store_dir: Path) -> list[str]:
    """Rebuild the store's indexes from its object files (``dorc store repair``); the server, if
    one runs, is stopped first so that the next run loads the repaired store."""
    done = []
    stopped = stop_server(store_dir)
    if stopped is not None:
        done.append(f"stopped the local AWS server (pid {stopped.pid}); the next run starts it on the repaired store")
    return done + store.repair(Path(store_dir))


__all__ = ["LocalAWS", "LocalAWSServerError", "LocalStoreDamaged", "FAKE_CREDENTIALS", "list_store", "clear_store",
           "stored_objects", "read_stored_object", "put_stored_object", "delete_stored_object", "check_store",
           "repair_store", "start_server", "stop_server", "server_status"]
