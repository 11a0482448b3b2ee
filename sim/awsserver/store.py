"""The local S3 store on disk: one folder per bucket, one file per object, one index per bucket.

    <state>/s3/<bucket>/index.json            key -> {"etag", "size", "content_type", "sha256"}
    <state>/s3/<bucket>/objects/<quoted key>  the object's bytes (key quoted with safe="")
    <state>/s3/<bucket>/bucket.json           {"region": ...} (optional)

The local AWS server writes each change through as its request completes; dorc reads the folder
without a server (``dorc store ls/cat``). Every file is replaced atomically through a temporary
file with a unique name, and a bucket's index is read-modified-written under a lock on that
bucket (``.lock``), so concurrent writers never lose each other's keys. A damaged store is
reported (``check``) and rebuilt from its object files (``repair``), never read as empty.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from ..files import TMP_PREFIX, locked, write_atomic

INDEX = "index.json"
BUCKET_FILE = "bucket.json"
LOCK = ".lock"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REPAIR_HINT = "run `dorc store check` to see what is wrong and `dorc store repair` to rebuild the index from the object files"


class StoreDamaged(Exception):
    """The store on disk is not what dorc wrote; ``problems`` say what was found."""

    def __init__(self, problems: list["Problem"]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def s3_root(state: Path) -> Path:
    return Path(state) / "s3"


def object_name(key: str) -> str:
    return quote(key, safe="")


def bucket_lock(bdir: Path):
    """Exclusive per bucket, across processes (the server's threads and ``dorc store`` alike)."""
    return locked(bdir / LOCK)


def read_index(bdir: Path) -> dict[str, dict]:
    """The bucket's index; a missing one is an empty bucket only when it has no object files.
    Raises ``StoreDamaged`` for anything else."""
    path = bdir / INDEX
    if not path.exists():
        objects = bdir / "objects"
        if objects.is_dir() and any(not p.name.startswith(TMP_PREFIX) for p in objects.iterdir()):
            raise StoreDamaged([Problem(str(path), "missing, but objects/ holds object files")])
        return {}
    try:
        doc = json.loads(path.read_bytes())
    except ValueError as exc:
        raise StoreDamaged([Problem(str(path), f"not valid JSON (truncated?): {exc}")]) from None
    except OSError as exc:
        raise StoreDamaged([Problem(str(path), f"cannot be read: {exc.strerror or exc}")]) from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) and isinstance(v.get("size", 0), int)
                                            for v in doc.values()):
        raise StoreDamaged([Problem(str(path), "not a map of key -> {etag, size, ...}")])
    return doc


def _write_index(bdir: Path, index: dict[str, dict]) -> None:
    write_atomic(bdir / INDEX, json.dumps(index, indent=1, sort_keys=True).encode())


def meta_for(body: bytes, content_type: str | None, etag: str | None = None) -> dict:
    return {"etag": etag or hashlib.md5(body).hexdigest(), "size": len(body),
            "content_type": content_type or "binary/octet-stream", "sha256": hashlib.sha256(body).hexdigest()}


# -- writes (the server's write-through, and dorc without a server) -----------------------------
def ensure_bucket_dir(state: Path, bucket: str, region: str | None = None) -> Path:
    bdir = s3_root(state) / bucket
    with bucket_lock(bdir):
        if not (bdir / INDEX).exists():
            read_index(bdir)  # raises if object files are there without an index
            _write_index(bdir, {})
        if region and not (bdir / BUCKET_FILE).exists():
            write_atomic(bdir / BUCKET_FILE, json.dumps({"region": region}).encode())
    return bdir


def sync_keys(state: Path, bucket: str, current) -> None:
    """Make the folder match S3 for some keys: ``current()`` (called under the bucket's lock, so
    the last writer writes the latest state) returns {key: (body, meta) or None (gone)}."""
    bdir = s3_root(state) / bucket
    with bucket_lock(bdir):
        index = read_index(bdir)
        changed = False
        objects = bdir / "objects"
        for key, now in current().items():
            path = objects / object_name(key)
            if now is None:
                if key in index or path.exists():
                    index.pop(key, None)
                    path.unlink(missing_ok=True)
                    changed = True
                continue
            body, meta = now
            if index.get(key, {}).get("etag") == meta["etag"] and index[key].get("size") == meta["size"] \
                    and path.is_file():
                continue
            objects.mkdir(parents=True, exist_ok=True)
            write_atomic(path, body)
            index[key] = meta
            changed = True
        if changed or not (bdir / INDEX).exists():
            _write_index(bdir, index)


def known_keys(state: Path, bucket: str) -> set[str]:
    return set(read_index(s3_root(state) / bucket))


def remove_bucket_dir(state: Path, bucket: str) -> None:
    bdir = s3_root(state) / bucket
    if bdir.is_dir():
        with bucket_lock(bdir):
            if read_index(bdir):
                return  # not empty: S3 refuses to delete it too
        shutil.rmtree(bdir, ignore_errors=True)


# -- reads --------------------------------------------------------------------------------------
def buckets(state: Path) -> list[Path]:
    root = s3_root(state)
    if not root.is_dir():
        return []
    problems = [Problem(str(p), "not a bucket folder") for p in sorted(root.iterdir())
                if not p.is_dir() or not _BUCKET_NAME.match(p.name)]
    if problems:
        raise StoreDamaged(problems)
    return sorted(root.iterdir())


def bucket_region(bdir: Path) -> str | None:
    try:
        return json.loads((bdir / BUCKET_FILE).read_bytes()).get("region")
    except (OSError, ValueError, AttributeError):
        return None


def load(state: Path):
    """Yield (bucket, region, key, body, meta) of every stored object; raise ``StoreDamaged``
    with every problem found if the store is not sound (a server must not start on it)."""
    problems = check(state)
    if problems:
        raise StoreDamaged(problems)
    for bdir in buckets(state):
        region = bucket_region(bdir)
        index = read_index(bdir)
        yield bdir.name, region, None, None, None
        for key, meta in sorted(index.items()):
            yield bdir.name, region, key, (bdir / "objects" / object_name(key)).read_bytes(), meta


def list_objects(state: Path, prefix: str = "") -> list[tuple[str, str, int]]:
    out = []
    for bdir in buckets(state):
        for key, meta in sorted(read_index(bdir).items()):
            if key.startswith(prefix) or f"s3://{bdir.name}/{key}".startswith(prefix):
                out.append((bdir.name, key, int(meta.get("size", 0))))
    return out


# -- check and repair ---------------------------------------------------------------------------
def check(state: Path) -> list[Problem]:
    """Everything about the store that is not what dorc writes (cheap: sizes, not hashes)."""
    root = s3_root(state)
    if not root.exists():
        return []
    if not root.is_dir():
        return [Problem(str(root), "not a folder")]
    out: list[Problem] = []
    for p in sorted(root.iterdir()):
        if not p.is_dir():
            out.append(Problem(str(p), "a file where only bucket folders belong"))
            continue
        if not _BUCKET_NAME.match(p.name):
            out.append(Problem(str(p), "a folder whose name is not a bucket name"))
            continue
        out += _check_bucket(p)
    return out


def _check_bucket(bdir: Path) -> list[Problem]:
    out: list[Problem] = []
    try:
        index = read_index(bdir)
    except StoreDamaged as exc:
        return exc.problems
    objects = bdir / "objects"
    for p in sorted(bdir.iterdir()):
        if p.name not in (INDEX, BUCKET_FILE, LOCK, "objects") and not p.name.startswith(TMP_PREFIX):
            out.append(Problem(str(p), "not part of a bucket folder (index.json, bucket.json, objects/)"))
    files = {}
    if objects.exists():
        if not objects.is_dir():
            return out + [Problem(str(objects), "not a folder")]
        for p in objects.iterdir():
            if p.name.startswith(TMP_PREFIX):
                continue
            if not p.is_file():
                out.append(Problem(str(p), "a folder among the object files"))
            else:
                files[unquote(p.name)] = p
    for key, meta in sorted(index.items()):
        path = files.pop(key, None)
        if path is None:
            out.append(Problem(str(objects / object_name(key)), f"object file of key {key!r} is missing"))
        elif path.stat().st_size != meta.get("size"):
            out.append(Problem(str(path), f"holds {path.stat().st_size} bytes, the index says {meta.get('size')}"))
    for key, path in sorted(files.items()):
        out.append(Problem(str(path), f"object file of key {key!r} is not in the index"))
    return out


def repair(state: Path) -> list[str]:
    """Rebuild each bucket's index from its object files (whatever the old index says that they
    confirm is kept); anything that does not belong is moved to ``<state>/lost+found/``, never
    deleted. Returns what was done, one line each."""
    root = s3_root(state)
    done: list[str] = []
    if not root.is_dir():
        return done
    lost = Path(state) / "lost+found" / time.strftime("%Y%m%dT%H%M%S")

    def move_aside(p: Path) -> None:
        dest = lost / p.relative_to(state)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(p), dest)
        done.append(f"moved {p} to {dest}")

    for p in sorted(root.iterdir()):
        if not p.is_dir() or not _BUCKET_NAME.match(p.name):
            move_aside(p)
            continue
        with bucket_lock(p):
            for q in sorted(p.iterdir()):
                if q.name not in (INDEX, BUCKET_FILE, LOCK, "objects") or q.name.startswith(TMP_PREFIX):
                    move_aside(q)
            objects = p / "objects"
            if objects.exists() and not objects.is_dir():
                move_aside(objects)
            try:
                old, damaged = read_index(p), False
            except StoreDamaged:
                old, damaged = {}, True
            index = {}
            if objects.is_dir():
                for q in sorted(objects.iterdir()):
                    if not q.is_file() or q.name.startswith(TMP_PREFIX):
                        move_aside(q)
                        continue
                    key = unquote(q.name)
                    body = q.read_bytes()
                    meta = meta_for(body, old.get(key, {}).get("content_type"))
                    if old.get(key, {}).get("sha256") == meta["sha256"] and old[key].get("etag"):
                        meta["etag"] = old[key]["etag"]  # a multipart upload's etag is not the MD5
                    index[key] = meta
            for key in sorted(set(old) - set(index)):
                done.append(f"dropped s3://{p.name}/{key} from the index: its object file is missing")
            if damaged or index != old or not (p / INDEX).exists():
                _write_index(p, index)
                done.append(f"rebuilt {p / INDEX} from {len(index)} object file(s)")
    return done
