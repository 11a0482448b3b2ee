"""Run records: every run's result as JSON under ``.dorc/runs/``, newest last.

Promotion reads them ("did the last run of this pipeline succeed?"), so a record is written
atomically and never rewritten: it is written to a temporary file, then linked under a name no
other record has (created exclusively, so two runs started in the same millisecond, even in two
processes, keep both). Records are strict JSON (``result.json_document``).

A record keeps each step payload up to ``[runs] record_payload_limit_kb`` of dorc.toml and, beyond
it, the payload's size and sha256 (``payload_not_kept`` says so); it is written step by step, so a
long chain of large events costs neither memory nor a record of hundreds of megabytes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .errors import DorcError
from .project import DEFAULT_RECORD_PAYLOAD_LIMIT_KB, PAYLOAD_LIMIT_SETTING
from .result import RunResult, write_json_document


def runs_dir(state_dir: Path) -> Path:
    return state_dir / "runs"


def ensure_state_dir(state_dir: Path) -> Path:
    """``.dorc/`` lives inside the user's pipeline-config checkout: keep it out of their git
    without asking them to edit their own .gitignore."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# dorc's local state (run records, local AWS store, builds)\n*\n")
    return state_dir


def write_record(state_dir: Path, result: RunResult, extra: dict[str, Any] | None = None, *,
                 payload_limit_kb: float | None = None) -> Path:
    """``payload_limit_kb``: the project's ``[runs] record_payload_limit_kb`` (it becomes the
    result's ``payload_limit``, so ``--json`` shows what the record keeps)."""
    if payload_limit_kb is not None:
        result.payload_limit = int(payload_limit_kb * 1024)
    elif result.payload_limit is None:
        result.payload_limit = DEFAULT_RECORD_PAYLOAD_LIMIT_KB * 1024
    folder = runs_dir(ensure_state_dir(state_dir))
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(result.started_at))
    base = f"{stamp}-{int(result.started_at * 1000) % 1000:03d}-{result.pipeline}-{result.layer}-{result.target}-{result.env}"
    run_id = uuid.uuid4().hex  # stable: ``dorc runs show ID`` takes its first characters
    head, tail = {"id": run_id, **result.head_dict()}, result.tail_dict()
    for key, value in (extra or {}).items():
        (head if key in head else tail)[key] = value
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tmp.open("w", encoding="utf-8") as out:
            write_json_document(out, head, "steps", result.step_dicts(), tail)
        path = _link_exclusively(tmp, folder, base)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk or a failed link leaves no temporary file behind
    result.record_path = path
    result.run_id = run_id
    return path


def _link_exclusively(tmp: Path, folder: Path, base: str) -> Path:
    """The finished file under the first free name: ``base.json``, then ``base~1.json``, ...
    ("~n" keeps a later record sorted after). ``os.link`` fails if the name exists, so an earlier
    record is never overwritten; where hard links are not allowed, ``open(..., "x")`` does the same."""
    for n in range(10_000):
        path = folder / (f"{base}.json" if n == 0 else f"{base}~{n}.json")
        try:
            os.link(tmp, path)
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
        try:
            f = open(path, "x", encoding="utf-8")
        except FileExistsError:
            continue
        try:
            with f, open(tmp, encoding="utf-8") as src:
                shutil.copyfileobj(src, f)
        except BaseException:
            path.unlink(missing_ok=True)  # no half-written record
            raise
        return path
    raise DorcError(f"no free name for a run record in {folder} ({base}~N.json up to ~9999 exist)",
                    hint="delete or archive old records in that folder")


def read_records(state_dir: Path, *, pipeline: str | None = None, layer: str | None = None,
                 target: str | None = None, env: str | None = None) -> list[dict[str, Any]]:
    """Matching records, oldest first."""
    folder = runs_dir(state_dir)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json"), key=_record_order):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not _record_shaped(doc):  # valid JSON, but not a run record (edited, or another tool's file)
            continue
        if pipeline and doc.get("pipeline") != pipeline:
            continue
        if layer and doc.get("layer") != layer:
            continue
        if target and doc.get("target") != target:
            continue
        if env and doc.get("env") != env:
            continue
        doc["record_path"] = str(path)
        if not isinstance(doc.get("id"), str) or not doc["id"]:  # a record from before ids: one from its name
            doc["id"] = hashlib.sha1(path.name.encode()).hexdigest()
        out.append(doc)
    return out


def payload_not_kept(record: dict[str, Any], step: dict[str, Any], label: str) -> str | None:
    """Why a recorded step's ``label`` ("input" or "output") is not in the record (its size,
    sha256 and the limit), or None when it is."""
    if label not in (step.get("not_kept") or []):
        return None
    facts = step.get(label) if isinstance(step.get(label), dict) else {}
    size, digest = facts.get("size"), str(facts.get("sha256") or "?")
    limit = record.get("payload_limit_kb")
    over = f"over the record's {limit} KB limit" if limit is not None else "over the record's limit"
    return (f"{_kb(size)}, sha256 {digest[:16]}…, {over} ({PAYLOAD_LIMIT_SETTING} in dorc.toml)")


def _kb(size: Any) -> str:
    return f"{size / 1024:.1f} KB" if isinstance(size, (int, float)) else "size unknown"


SHORT_ID = 8  # characters of a run's id shown by ``dorc runs`` and taken by ``dorc runs show``


def short_id(record: dict[str, Any]) -> str:
    """A run's id as ``dorc runs`` shows it and messages name it."""
    return str(record.get("id") or "?")[:SHORT_ID]


def find_record(state_dir: Path, run_id: str) -> dict[str, Any] | None:
    """The record whose id starts with ``run_id`` (``"last"``: the newest), or whose file name (with
    or without ``.json``) is ``run_id``; None when none is. A prefix that several records share is
    an error listing them."""
    records = read_records(state_dir)
    if run_id == "last":
        return records[-1] if records else None
    name = Path(run_id).name
    by_name = [r for r in records if name in (Path(r["record_path"]).name, Path(r["record_path"]).stem)]
    if by_name:
        return by_name[-1]
    hits = [r for r in records if r["id"].startswith(run_id.lower())] if run_id else []
    if len(hits) > 1:
        raise DorcError(f"run id {run_id!r} matches {len(hits)} runs: "
                        + ", ".join(r["id"][:SHORT_ID + 4] for r in hits[-5:]),
                        hint="give more characters of the id (dorc runs lists them)")
    return hits[0] if hits else None


def _record_order(path: Path) -> tuple[str, int]:
    """Names start with the start time (to the millisecond); a same-millisecond record gets "~n"."""
    base, _, n = path.stem.partition("~")
    return base, int(n) if n.isdigit() else 0


_TEXT_FIELDS = ("status", "pipeline", "layer", "target", "env", "started_at")


def _record_shaped(doc: Any) -> bool:
    """What readers (``dorc runs``, promotion) rely on: an object whose fields are text and whose
    steps are objects with text fields and an error object or null."""
    if not isinstance(doc, dict):
        return False
    if any(not isinstance(doc.get(k, ""), str) for k in _TEXT_FIELDS):
        return False
    steps = doc.get("steps", [])
    if not isinstance(steps, list):
        return False
    for step in steps:
        if not isinstance(step, dict) or any(not isinstance(step.get(k, ""), str) for k in ("function", "layer")):
            return False
        if step.get("error") is not None and not (isinstance(step["error"], dict)
                                                  and isinstance(step["error"].get("type", ""), str)):
            return False
    return True


def run_identity(plans: dict[str, Any], sources: dict[str, dict[str, str]],
                 deployed: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """What a run ran, per layer, as promotion compares it with the build it promotes:
    ``sources`` (each function's source digest) for layers whose code came from this checkout,
    ``packages`` (package digests) where the run used packages, ``plan_digests`` (the plan as it
    ran: settings and packages). ``sources``: the digests taken before the run. ``deployed``
    (``--no-deploy``: what was deployed ran, not the local sources): layer key -> ``{"packages",
    "plan_digest"}``; a layer missing from it is recorded as unknown code."""
    ran_sources, packages, digests = {}, {}, {}
    for key, plan in plans.items():
        if deployed is not None:  # not this checkout's code; unknown (stopped early) proves nothing
            ran = deployed.get(key) or {"packages": {}, "plan_digest": None}
            packages[key], digests[key] = ran["packages"], ran["plan_digest"]
            continue
        if key in sources:
            ran_sources[key] = sources[key]
        built = plan.packages()
        if built and all(built.values()):
            packages[key] = built
        digests[key] = plan.digest()
    return {"sources": ran_sources, "packages": packages, "plan_digests": digests}
