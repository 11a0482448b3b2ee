"""The Python that runs a Lambda runtime's handlers ("python3.12"), found on this machine.

Nothing is downloaded: the interpreter comes from ``$DORC_PYTHON3_12``, dorc's own, uv, pyenv or
the PATH. When the runtime's Python is not installed the run still goes on, on the nearest one,
and ``Interpreter.note`` says so (never silently). This is on every local run's path, so a
result is cached in ``~/.cache/dorc/interpreters.json``: a cached call costs a JSON read and a
``stat``, an interpreter is started (to ask its version) only when the cache misses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

OWN = "dorc's own"
#: The runtimes ``all_interpreters`` looks for (doctor's list).
KNOWN_MINORS = range(9, 15)
PROBE_TIMEOUT = 10.0
_RUNTIME = re.compile(r"python3\.(\d+)")
_PATH_NAME = re.compile(r"python3\.(\d+)")
_PYENV_NAME = re.compile(r"3\.(\d+)\.(\d+)")  # final releases only: not 3.13.0t, 3.14-dev, 3.14.0rc1
_UV_NAME = re.compile(r"cpython-3\.(\d+)\.(\d+)-.*")  # not cpython-3.13.0+freethreaded-...


class InterpreterError(ValueError):
    """A runtime name or a ``$DORC_PYTHON3_N`` override that cannot be used; ``hint`` is the fix.
    (dorc's side turns it into a DorcError: this package imports nothing of dorc's.)"""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: tuple[int, int, int]
    source: str  # "dorc's own", "uv 3.12.2", "pyenv 3.12.1", "PATH python3.12", "$DORC_PYTHON3_12"
    runtime: str  # the runtime asked for
    exact: bool  # its major.minor is the runtime's

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def note(self) -> str | None:
        """None when exact; else the one sentence a run's summary, --json and record carry."""
        if self.exact:
            return None
        return (f"{self.runtime} is not on this machine (looked in uv, pyenv and PATH); running on Python "
                f"{self.version_text} ({self.source}) instead — {install_hint(self.runtime)}")


def install_hint(runtime: str) -> str:
    wanted = runtime.removeprefix("python")
    return f"install it with `pyenv install {wanted}` or `uv python install {wanted}`"


def override_var(runtime: str) -> str:
    """``DORC_PYTHON3_12`` for "python3.12": a path that wins over every search."""
    return "DORC_" + runtime.upper().replace(".", "_")


def find_interpreter(runtime: str) -> Interpreter:
    """The interpreter for ``runtime`` ("python3.N"): the override, dorc's own, uv, pyenv (highest
    patch), PATH, in that order; none of them: the nearest 3.x found (the higher on a tie),
    ``exact=False``."""
    minor = _minor(runtime)
    override = os.environ.get(override_var(runtime)) or None
    if override is None and sys.version_info[:2] == (3, minor):
        return Interpreter(sys.executable, tuple(sys.version_info[:3]), OWN, runtime, True)  # type: ignore[arg-type]
    cache = _read_cache()
    hit = _from_cache(cache.get(runtime), runtime, override)
    if hit is not None:
        return hit
    found = _search(runtime, minor, override)
    entry = {"executable": found.executable, "version": list(found.version), "source": found.source,
             "exact": found.exact, "override": override, "own": sys.executable, "mtime_ns": _mtime(found.executable),
             "seen": None if found.exact else _seen()}
    _write_cache(runtime, entry)
    return found


def all_interpreters() -> list[Interpreter]:
    """Each of python3.9 … python3.14 that is on this machine (exact finds only), for ``dorc doctor``."""
    out = []
    for minor in KNOWN_MINORS:
        try:
            found = find_interpreter(f"python3.{minor}")
        except InterpreterError:
            continue
        if found.exact:
            out.append(found)
    return out


# --------------------------------------------------------------------------------------------
# search
# --------------------------------------------------------------------------------------------

def _minor(runtime: str) -> int:
    m = _RUNTIME.fullmatch(runtime or "")
    if not m:
        raise InterpreterError(f"{runtime!r} is not a Python runtime dorc can run locally",
                               hint="use a Lambda Python runtime name such as python3.12")
    return int(m.group(1))


def _search(runtime: str, minor: int, override: str | None) -> Interpreter:
    if override is not None:
        return _checked_override(runtime, minor, override)
    candidates = _candidates()
    probed: dict[str, tuple[int, int, int] | None] = {}
    for path, source, claimed in candidates:
        if claimed == minor:
            version = probed[path] = _probe(path)
            if version is not None and version[:2] == (3, minor):
                return Interpreter(path, version, source, runtime, True)
    # not installed: the nearest minor (the higher on a tie), in search order within a minor;
    # a python3.N whose name lied counts as what it is
    pool = [(i, path, source, probed[path][1] if probed.get(path) else claimed)
            for i, (path, source, claimed) in enumerate(candidates) if not (path in probed and probed[path] is None)]
    for _, path, source, claimed in sorted(pool, key=lambda c: (abs(c[3] - minor), -c[3], c[0])):
        version = tuple(sys.version_info[:3]) if source == OWN else probed.get(path) or _probe(path)
        if version is not None and version[:2] == (3, claimed):
            return Interpreter(path, version, source, runtime, False)  # type: ignore[arg-type]
    own = tuple(sys.version_info[:3])
    return Interpreter(sys.executable, own, OWN, runtime, own[:2] == (3, minor))  # type: ignore[arg-type]


def _checked_override(runtime: str, minor: int, value: str) -> Interpreter:
    var = override_var(runtime)
    path = os.path.expanduser(value)
    hint = f"point ${var} at a Python 3.{minor} executable, or unset it to let dorc search uv, pyenv and PATH"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise InterpreterError(f"${var}={value}: no such executable", hint=hint)
    version = _probe(path)
    if version is None:
        raise InterpreterError(f"${var}={value} did not run as a Python (`{path} -c 'import sys'` failed)", hint=hint)
    if version[:2] != (3, minor):
        raise InterpreterError(f"${var}={value} is Python {'.'.join(map(str, version))}, not 3.{minor}", hint=hint)
    return Interpreter(path, version, f"${var}", runtime, True)


def _candidates() -> list[tuple[str, str, int]]:
    """(path, source, the minor its name claims) of every Python 3 this machine shows, best first
    within a minor. Directory listings only: nothing is run here."""
    out: list[tuple[str, str, int]] = [(sys.executable, OWN, sys.version_info[1])]
    out += _uv_candidates()
    out += _pyenv_candidates()
    out += _path_candidates()
    seen: set[str] = set()
    unique = []
    for c in out:
        key = os.path.realpath(c[0])
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def _listdir(folder: Path | str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _is_exe(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _versioned(folder: Path, pattern: re.Pattern, source: str) -> list[tuple[str, str, int]]:
    """Installs named by version under ``folder`` (uv's and pyenv's layout), highest patch first."""
    found = []
    for name in _listdir(folder):
        m = pattern.fullmatch(name)
        if m:
            minor, patch = int(m.group(1)), int(m.group(2))
            exe = str(folder / name / "bin" / f"python3.{minor}")
            if _is_exe(exe):
                found.append(((minor, patch), (exe, f"{source} 3.{minor}.{patch}", minor)))
    return [c for _, c in sorted(found, key=lambda f: f[0], reverse=True)]


def _uv_dir() -> Path:
    explicit = os.environ.get("UV_PYTHON_INSTALL_DIR")
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data) if data and os.path.isabs(data) else Path.home() / ".local" / "share"
    return base / "uv" / "python"


def _uv_candidates() -> list[tuple[str, str, int]]:
    """uv's managed Pythons, by listing its folder (running ``uv python find`` costs more)."""
    return _versioned(_uv_dir(), _UV_NAME, "uv")


def _pyenv_root() -> Path:
    root = os.environ.get("PYENV_ROOT")
    return Path(root).expanduser() if root else Path.home() / ".pyenv"


def _pyenv_candidates() -> list[tuple[str, str, int]]:
    """pyenv's versions, by listing ``$PYENV_ROOT/versions``: its shell scripts take 50+ ms a call."""
    return _versioned(_pyenv_root() / "versions", _PYENV_NAME, "pyenv")


def _path_candidates() -> list[tuple[str, str, int]]:
    """``python3.N`` on PATH, the first of each N. pyenv's shims are skipped: each is a shell
    script that may name a version that is not selected; its installs were listed already."""
    shims = os.path.realpath(_pyenv_root() / "shims")
    found: dict[int, tuple[str, str, int]] = {}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or os.path.realpath(folder) == shims:
            continue
        for name in _listdir(folder):
            m = _PATH_NAME.fullmatch(name)
            if m and int(m.group(1)) not in found:
                exe = os.path.join(folder, name)
                if _is_exe(exe):
                    found[int(m.group(1))] = (exe, f"PATH {name}", int(m.group(1)))
    return list(found.values())


def _probe(path: str) -> tuple[int, int, int] | None:
    """The version ``path`` reports when run, or None when it does not run as a Python."""
    try:
        out = subprocess.run([path, "-I", "-S", "-c", "import sys; print(*sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
        parts = tuple(int(x) for x in out.stdout.split())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return parts if out.returncode == 0 and len(parts) == 3 and parts[0] == 3 else None  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------

def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "dorc" / "interpreters.json"


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _seen() -> list[list]:
    """The folders a search lists, with their mtimes: a cached fallback stands only while none
    changed, so that installing the missing Python is noticed on the next run (a ``stat`` each,
    cheaper than listing them)."""
    folders = [str(_uv_dir()), str(_pyenv_root() / "versions"), *os.environ.get("PATH", "").split(os.pathsep)]
    return [[folder, _mtime(folder)] for folder in folders if folder]


def _from_cache(entry: object, runtime: str, override: str | None) -> Interpreter | None:
    if not isinstance(entry, dict):
        return None
    try:
        if entry["override"] != override or entry["own"] != sys.executable:
            return None
        executable = entry["executable"]
        if entry["mtime_ns"] is None or _mtime(executable) != entry["mtime_ns"]:
            return None
        if not entry["exact"] and entry["seen"] != _seen():
            return None
        version = tuple(int(x) for x in entry["version"])
        return Interpreter(executable, version, str(entry["source"]), runtime, bool(entry["exact"]))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None


def _read_cache() -> dict:
    try:
        doc = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write_cache(runtime: str, entry: dict) -> None:
    """Read, update, replace atomically under a unique temporary name: concurrent runs never see a
    half-written file (the last writer wins; a lost entry only costs one search). A cache that
    cannot be written (read-only home) is skipped."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = _read_cache()
        doc[runtime] = entry
        fd, tmp = tempfile.mkstemp(prefix=".interpreters.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
