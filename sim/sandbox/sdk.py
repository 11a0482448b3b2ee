"""The runtime dir: what Lambda's Python runtime has on ``sys.path`` besides the handler's code
(its /var/runtime), for a worker started with ``python -I -S``.

It is a folder of symlinks: ``dorc_sim`` (dorc's simulator, which holds the runtime loop) and the
AWS SDK that Lambda's Python runtimes ship — boto3, botocore, s3transfer, jmespath, dateutil,
six and urllib3. All of them are pure Python, so the copies in dorc's own environment serve every
runtime's interpreter (3.11, 3.12, 3.13) as they are: nothing is downloaded or built. A compiled
file among them would tie them to dorc's Python, so it is refused (``RuntimeDirError``).

The folder is named by a digest of what it links to, made once (temp folder + rename, safe when
runs start at the same time) and reused by every later run.

pip byte-compiled those packages for dorc's Python only, and a sandbox cannot write anything on the
host, so another runtime's interpreter would compile the SDK from source at every cold start
(~0.35 s a function). ``compile_for`` writes their ``__pycache__`` for that interpreter once, outside
any sandbox; a stamp in the runtime dir says it was done, for which versions of the packages.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..files import locked, write_atomic

#: What Lambda's Python runtime ships besides the standard library (name -> a package, or a module file).
SDK_NAMES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")
STAMP_PREFIX = ".bytecode-"  # + a digest of the interpreter's path + ".json", in the runtime dir
COMPILE_TIMEOUT = 600  # seconds; compiling the SDK takes 1-3 s


class RuntimeDirError(RuntimeError):
    """The runtime dir cannot be made from dorc's environment; ``hint`` is the fix.
    (dorc's side turns it into a DorcError: this package imports nothing of dorc's.)"""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


def runtime_dir() -> Path:
    """The folder to put first on a worker's ``sys.path``: ``dorc_sim`` and the AWS SDK, linked."""
    targets = _targets()
    digest = hashlib.sha256("\n".join(f"{name}={path}" for name, path in targets).encode()).hexdigest()[:16]
    folder = cache_root() / "runtime" / digest

    def complete() -> bool:
        return all(os.path.lexists(folder / name) for name, _ in targets)

    if complete():
        return folder
    _check_pure(targets)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=folder.parent))
    try:
        for name, path in targets:
            (tmp / name).symlink_to(path, target_is_directory=path.is_dir())
        if folder.exists() and not complete():  # a link removed by hand: replace the folder
            shutil.rmtree(folder, ignore_errors=True)
        os.rename(tmp, folder)  # atomic; fails when a concurrent run made it first, which is as good
    except OSError:
        if not complete():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def sdk_versions() -> dict[str, str]:
    """boto3's and botocore's versions in dorc's environment: the SDK handlers get."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("boto3", "botocore"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


@dataclass(frozen=True)
class Bytecode:
    """Whether a runtime dir's packages have their byte code for one interpreter (its stamp)."""

    python: str
    ok: bool
    tag: str | None = None  # the interpreter's cache tag ("cpython-312"); None: it could not be run
    reason: str | None = None  # why not ok
    fresh: bool = False  # this call tried (there was no stamp, or a stale one) and wrote the stamp

    @property
    def warning(self) -> str | None:
        """The one line for the user when the byte code could not be written."""
        if self.ok:
            return None
        return (f"functions on {self.python} compile the AWS SDK from source at each cold start (~0.35 s "
                f"each): its byte code could not be written ({self.reason}); install dorc where you can "
                f"write (a virtual environment of your own) and run again")


def compile_for(python: str, folder: str | os.PathLike, *, label: str | None = None,
                on_compile: Callable[[str], None] | None = None) -> Bytecode:
    """Byte-compile what runtime dir ``folder`` links to for ``python``, unless its stamp says
    that was done for the packages as they are now (then this costs a few ``stat`` calls). The
    .pyc files go into the packages' own ``__pycache__`` (as pip's do), ``six``'s beside its link.
    Never raises: a failure is recorded in the stamp, so it is not tried again until the SDK
    changes, and returned (``Bytecode.warning``). Runs at the same time: the second waits for the
    first (a lock file) and then finds its stamp. ``on_compile`` hears the one progress line, before
    compiling (what it raises ends the call, nothing compiled: a caller that must not wait now)."""
    folder = Path(folder)
    links = _links(folder)
    stamp = _stamp_path(folder, python)
    known = _stamped(stamp, python, links)
    if known is not None:
        return known
    try:
        with locked(folder / f"{STAMP_PREFIX}lock"):
            known = _stamped(stamp, python, links)
            if known is not None:
                return known
            if on_compile is not None and _sdk_changed(stamp, links):
                on_compile(f"compiling the AWS SDK for {label or os.path.basename(python)} (once per SDK version)")
            outcome = replace(_compile(python, links), fresh=True)
            _write_stamp(stamp, outcome, _fingerprint(python, links))  # after compiling: __pycache__ made a folder newer
    except OSError as exc:  # the runtime dir itself cannot be written (it is dorc's cache: rare)
        return Bytecode(python, False, reason=f"cannot write the stamp in {folder}: {exc.strerror or exc}")
    return outcome


def bytecode_state(python: str, folder: str | os.PathLike) -> Bytecode | None:
    """What ``compile_for`` recorded for ``python``, if it still holds for the packages the runtime
    dir links to; None: not compiled yet, or the SDK changed since (``dorc doctor``: reads only)."""
    folder = Path(folder)
    stamp = _stamp_path(folder, python)
    return _stamped(stamp, python, _links(folder))


def _stamp_path(folder: Path, python: str) -> Path:
    return folder / f"{STAMP_PREFIX}{hashlib.sha256(os.path.abspath(python).encode()).hexdigest()[:16]}.json"


def _links(folder: Path) -> dict[str, str]:
    """Each link of the runtime dir (its path) and what it says (cheaper than resolving it)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return {}
    return {entry.path: os.readlink(entry.path) for entry in entries if entry.is_symlink()}


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _fingerprint(python: str, links: dict[str, str]) -> dict:
    """What the stamp holds for: the interpreter (its file) and what the runtime dir links to."""
    return {"python": os.path.abspath(python), "interpreter": _mtime(python), "targets": _marks(links)}


def _marks(links: dict[str, str]) -> dict[str, list]:
    """What a reinstall or an upgrade changes: each target folder's mtime (files added or removed)
    and its ``__init__.py``'s (a version's code); a module file's own."""
    return {os.path.basename(link): [target, _mtime(link), _mtime(os.path.join(link, "__init__.py"))]
            for link, target in links.items()}


def _stamped(stamp: Path, python: str, links: dict[str, str]) -> Bytecode | None:
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not links:
        return None
    now = _fingerprint(python, links)
    if any(data.get(key) != value for key, value in now.items()):
        return None
    return Bytecode(python, bool(data.get("ok")), tag=data.get("tag"), reason=data.get("reason"))


def _sdk_changed(stamp: Path, links: dict[str, str]) -> bool:
    """Whether more than dorc's own simulator is to be compiled (editing it is no news for users)."""
    try:
        before = json.loads(stamp.read_text()).get("targets", {})
    except (OSError, ValueError, AttributeError):
        return True
    now = _marks(links)
    return any(before.get(name) != value for name, value in now.items() if name != "dorc_sim")


def _compile(python: str, links: dict[str, str]) -> Bytecode:
    """``python -I -S -m compileall`` on the real folders (compileall does not follow a linked
    folder); a module file through its link, where the worker's import looks for its .pyc."""
    try:
        probe = subprocess.run([python, "-I", "-S", "-c", "import sys; print(sys.implementation.cache_tag)"],
                               capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Bytecode(python, False, reason=f"cannot run {python}: {getattr(exc, 'strerror', None) or exc}")
    tag = probe.stdout.strip() or None
    if probe.returncode != 0 or tag is None:
        return Bytecode(python, False, reason=f"{python} does not run: {_last_line(probe.stderr)}")
    paths = [os.path.realpath(link) if os.path.isdir(link) else link for link in links]
    try:
        done = subprocess.run([python, "-I", "-S", "-m", "compileall", "-q", "-j0", "--invalidation-mode",
                               "timestamp", *paths], capture_output=True, text=True, timeout=COMPILE_TIMEOUT,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Bytecode(python, False, tag, reason=f"compileall on {python}: {getattr(exc, 'strerror', None) or exc}")
    if done.returncode != 0:
        errors = [ln for ln in done.stdout.splitlines() if ln.startswith("***")]
        detail = _last_line(done.stdout + "\n" + done.stderr)
        count = f"{len(errors)} file(s) not compiled, e.g. " if errors else ""
        return Bytecode(python, False, tag, reason=f"compileall: {count}{detail}")
    return Bytecode(python, True, tag)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _write_stamp(stamp: Path, outcome: Bytecode, fingerprint: dict) -> None:
    """A reader sees the old stamp or the new one, never half of one."""
    data = {**fingerprint, "tag": outcome.tag, "ok": outcome.ok, "reason": outcome.reason,
            "compiled_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_atomic(stamp, json.dumps(data, indent=1).encode())


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "dorc"


@functools.cache
def _targets() -> tuple[tuple[str, Path], ...]:
    """(link name, what it points at): ``dorc_sim``'s folder, then each SDK package's folder
    (``six`` is one module file), found in dorc's environment without importing them."""
    import dorc_sim

    out = [("dorc_sim", Path(dorc_sim.__file__).resolve().parent)]
    missing = []
    for name in SDK_NAMES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            missing.append(name)
        elif spec.submodule_search_locations:
            out.append((name, Path(next(iter(spec.submodule_search_locations))).resolve()))
        else:
            path = Path(spec.origin).resolve()
            out.append((path.name, path))
    if missing:
        raise RuntimeDirError(
            f"the AWS SDK that Lambda's Python runtime ships is incomplete in dorc's environment: "
            f"{', '.join(missing)} cannot be found (sim/sandbox/sdk.py: runtime_dir)",
            hint=f"reinstall dorc so that its dependencies come with it: pip install --force-reinstall dorc "
                 f"(or pip install {' '.join('python-dateutil' if m == 'dateutil' else m for m in missing)})")
    return tuple(out)


def _check_pure(targets) -> None:
    """Refuse a compiled file: it would load only on dorc's own Python version."""
    for name, path in targets:
        if name == "dorc_sim" or path.is_file():
            continue
        compiled = next((p for p in path.rglob("*") if p.suffix in COMPILED_SUFFIXES), None)
        if compiled is not None:
            raise RuntimeDirError(
                f"{name} in dorc's environment is not pure Python ({compiled}); it cannot be shared with "
                f"the interpreters of other Lambda runtimes (sim/sandbox/sdk.py: runtime_dir)",
                hint=f"install the pure-Python build of {name}: pip install --force-reinstall --no-binary {name} {name}")
