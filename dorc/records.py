"""Run records: every run's result as JSON under ``.dorc/runs/``, newest last.

Promotion reads them ("did the last run of this pipeline succeed?"), so a record is written
atomically and never rewritten.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .result import RunResult


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
    path = folder / f"{base}.json"
    n = 1
    while path.exists():  # never overwrite an earlier record; "~n" keeps the later one sorted after
        path = folder / f"{base}~{n}.json"
        n += 1
    doc = result.to_dict()
    if extra:
        doc.update(extra)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)
    result.record_path = path
    return path


def read_records(state_dir: Path, *, pipeline: str | None = None, layer: str | None = None,
                 target: str | None = None, env: str | None = None) -> list[dict[str, Any]]:
    """Matching records, oldest first."""
    folder = runs_dir(state_dir)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json"), key=_record_order):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
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
        out.append(doc)
    return out


def _record_order(path: Path) -> tuple[str, int]:
    """Names start with the start time (to the millisecond); a same-millisecond record gets "~n"."""
    base, _, n = path.stem.partition("~")
    return base, int(n) if n.isdigit() else 0
