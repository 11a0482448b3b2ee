"""Run records: every run's result as JSON under ``.dorc/runs/``, newest last.

Promotion reads them ("did the last run of this pipeline succeed?"), so a record is written
atomically and never rewritten: it is written to a temporary file, then linked under a name no
other record has (created exclusively, so two runs started in the same millisecond, even in two
processes, keep both). Records are strict JSON (``result.json_document``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .errors import DorcError
from .result import RunResult, json_document


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


def write_record(state_dir: Path, result: RunResult, extra: dict[str, Any] | None = None) -> Path:
    folder = runs_dir(ensure_state_dir(state_dir))
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(result.started_at))
    base = f"{stamp}-{int(result.started_at * 1000) % 1000:03d}-{result.pipeline}-{result.layer}-{result.target}-{result.env}"
    run_id = uuid.uuid4().hex  # stable: ``dorc runs show ID`` takes its first characters
    doc = {"id": run_id, **result.to_dict()}
    if extra:
        doc.update(extra)
    text = json_document(doc)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.write_text(text, encoding="utf-8")
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
            with f:
                f.write(tmp.read_text(encoding="utf-8"))
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
