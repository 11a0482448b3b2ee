"""The runtime dir: what Lambda's Python runtime has on ``sys.path`` besides the handler's code
(its /var/runtime), for a worker started with ``python -I -S``.

It is a folder of symlinks: ``dorc_sim`` (dorc's simulator, which holds the runtime loop) and the
AWS SDK that Lambda's Python runtimes ship — boto3, botocore, s3transfer, jmespath, dateutil,
six and urllib3. All of them are pure Python, so the copies in dorc's own environment serve every
runtime's interpreter (3.11, 3.12, 3.13) as they are: nothing is downloaded or built. A compiled
file among them would tie them to dorc's Python, so it is refused (``RuntimeDirError``).

The folder is named by a digest of what it links to, made once (temp folder + rename, safe when
runs start at the same time) and reused by every later run.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

#: What Lambda's Python runtime ships besides the standard library (name -> a package, or a module file).
SDK_NAMES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")


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
