"""``dorc run … --watch``: run again whenever a file of the pipeline changes.

Modification times are polled (standard library only: the same on every OS, no extra
dependency); a change is acted on once the files have been quiet for a moment, because an
editor's save is often several writes. What is watched: ``dorc.toml`` and the folder of every
layer the run reaches (``__main__.py``, ``Pulumi.<env>.yaml``, ``requirements.txt``, the
function folders), worked out again before each run, so a new hand-over is watched too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, NoReturn

from .errors import DorcError
from .project import SETTINGS_FILE, Project

INTERVAL = 0.5  # s between two looks at the files
SETTLE = 0.3  # s the files must stay unchanged before the run starts
_SKIP_DIRS = {"__pycache__", "node_modules"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".tmp", "~")

Snapshot = dict[Path, tuple[int, int, int]]


def watched_paths(project: Project, instance: str, layer: str | None, env: str) -> list[Path]:
    """``dorc.toml`` and the folders of the layers a run of ``instance``/``layer`` reaches. A
    layer whose definition cannot be read right now (an edit in progress) is watched alone, so
    the fix is seen; an instance or layer that does not exist is the command's mistake."""
    from .planning import reachable_plans, start_layers

    layers = [layer] if layer else project.layers(instance)
    if layer:
        project.main_file(instance, layer)  # raises, naming the known layers
    keys = {f"{instance}/{lay}" for lay in layers}
    try:
        planned: dict = {}
        keys |= set(reachable_plans(project, start_layers(project, instance, layer, env, planned), env, planned=planned))
    except DorcError:
        pass
    return [project.root / SETTINGS_FILE] + [project.layer_dir(*key.split("/")) for key in sorted(keys)]


def snapshot(paths: Iterable[Path]) -> Snapshot:
    """Every watched file -> (mtime in ns, size, inode); hidden files, bytecode and editors'
    swap and backup files are left out (saving does not touch them, running writes some)."""
    out: Snapshot = {}
    for root in paths:
        if root.is_file():
            _add(out, root)
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS]
            for name in files:
                if not name.startswith((".", "#")) and not name.endswith(_SKIP_SUFFIXES):
                    _add(out, Path(folder) / name)
    return out


def _add(out: Snapshot, path: Path) -> None:
    try:
        st = path.stat()
    except OSError:  # removed meanwhile: the next look sees it gone
        return
    out[path] = (st.st_mtime_ns, st.st_size, st.st_ino)


def changes(before: Snapshot, after: Snapshot) -> list[Path]:
    """Files added, removed or modified, sorted."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def wait_for_change(paths: list[Path], before: Snapshot, *, interval: float = INTERVAL, settle: float = SETTLE,
                    sleep: Callable[[float], None] = time.sleep) -> list[Path]:
    """Block until a watched file differs from ``before`` and the files have stayed unchanged
    for ``settle`` seconds; the files that changed."""
    while True:
        sleep(interval)
        now = snapshot(paths)
        if now != before:
            break
    while True:
        sleep(settle)
        later = snapshot(paths)
        if later == now:
            return changes(before, now)
        now = later


def watch(run_once: Callable[[], object], paths: Callable[[], list[Path]], on_change: Callable[[list[Path]], None],
          *, on_wait: Callable[[list[Path]], None] | None = None, interval: float = INTERVAL,
          settle: float = SETTLE) -> NoReturn:
    """``run_once()``, then again after every change to the files under ``paths()`` (worked out
    before each run, and looked at as they were then: an edit made while a run goes starts the
    next one at once). ``on_wait``: told what is watched after each run; ``on_change``: what
    changed, before the next run. Ends only by an exception: Ctrl-C's ``KeyboardInterrupt``."""
    while True:
        watched = paths()
        before = snapshot(watched)
        run_once()
        if on_wait is not None:
            on_wait(watched)
        on_change(wait_for_change(watched, before, interval=interval, settle=settle))
