"""A function's task root for local runs: the very package that deploys, unzipped.

Lambda runs a function from its unzipped package (``/var/task``), so a local run does too: the
package is built as every deployment builds it (``package.build_zip``: the function's files and
its requirements vendored for the runtime's Python, same sha256), then unzipped once per package
into ``.dorc/task-roots/<digest>/`` and made read-only. A relative ``open("schema.json")``, a
missing requirement, a file the package leaves out: each behaves as it will in AWS.

The digest of the sources (``package.source_digest``) and the runtime name the folder, so an
unchanged function costs one hash of its files per run, not a build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .package import ARCHITECTURE, build_zip, source_digest

KEEP_UNUSED = 7 * 24 * 3600  # seconds an unused task root stays before a later run removes it


@dataclass(frozen=True)
class TaskRoot:
    path: Path
    package_sha256: str


def prepare(state_dir: Path, name: str, source_dir: Path, runtime: str, *,
            on_build: Callable[[str], None] | None = None) -> TaskRoot:
    """The task root of one function: built and unzipped when its sources changed, else reused.
    ``on_build`` hears what is being built (vendoring requirements may take a while)."""
    digest = hashlib.sha256(f"{source_digest(Path(source_dir))}\0{runtime}\0{ARCHITECTURE}".encode()).hexdigest()[:32]
    roots = state_dir / "task-roots"
    folder = roots / digest
    marker = roots / f"{digest}.sha256"
    if folder.is_dir() and marker.is_file():
        os.utime(marker)  # in use: kept by the pruning below
        return TaskRoot(folder, marker.read_text().strip())
    if on_build is not None:
        on_build(f"packaging {name} for {runtime} (its task root, as Lambda unzips it)")
    build_dir = state_dir / "build" / "task-roots" / uuid.uuid4().hex
    try:
        package = build_zip(name, Path(source_dir), runtime, build_dir, state_dir / "cache")
        roots.mkdir(parents=True, exist_ok=True)
        unpacked = roots / f".{digest}.{uuid.uuid4().hex}"
        _unzip_read_only(package.path, unpacked)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    try:
        unpacked.rename(folder)  # atomic; a concurrent run that got there first wins
    except OSError:
        remove(unpacked)
    tmp = marker.with_name(f".{marker.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(package.sha256 + "\n")
        os.replace(tmp, marker)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _prune(roots, keep=digest)
    return TaskRoot(folder, package.sha256)


def _unzip_read_only(zip_path: Path, folder: Path) -> None:
    """Files as the package's modes say (read-only: 0444, or 0555 with an execute bit), folders
    0555: the task root cannot be written even where no read-only mount is possible."""
    folder.mkdir(mode=0o755)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = folder / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, 0o555 if mode & 0o111 else 0o444)
    for root, dirs, _ in os.walk(folder, topdown=False):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o555)
    os.chmod(folder, 0o555)


def remove(folder: Path) -> None:
    """A read-only tree can only be removed once its folders are writable again."""
    if not folder.exists():
        return
    for root, dirs, _ in os.walk(folder):
        for d in dirs:
            try:
                os.chmod(os.path.join(root, d), stat.S_IRWXU)
            except OSError:
                pass
    try:
        os.chmod(folder, stat.S_IRWXU)
    except OSError:
        pass
    shutil.rmtree(folder, ignore_errors=True)


def _prune(roots: Path, keep: str) -> None:
    """Task roots of sources that have not run for a week go (each edit makes a new one)."""
    now = time.time()
    for partial in roots.glob(".*"):  # unzipped by a run that was killed before it could finish
        try:
            if partial.is_dir() and now - partial.stat().st_mtime > 3600:
                remove(partial)
        except OSError:
            continue
    for marker in roots.glob("*.sha256"):
        digest = marker.name[: -len(".sha256")]
        if digest == keep:
            continue
        try:
            unused = now - marker.stat().st_mtime > KEEP_UNUSED
        except OSError:
            continue
        if unused:
            remove(roots / digest)
            marker.unlink(missing_ok=True)
