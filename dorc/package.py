"""Function packages: one deterministic zip per function, identified by its sha256.

The same sources give byte-identical zips (sorted entries, fixed timestamps and permissions),
so a digest names exactly what runs and promotion can compare digests instead of rebuilding.
Dependencies from the function's and the layer's ``requirements.txt`` are vendored for the
Lambda platform (manylinux wheels for the runtime's Python), cached by the requirements' hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import DorcError

ZIP_DIRECT_UPLOAD_MAX = 50 * 1024 * 1024  # bytes, zipped, for a direct upload
UNZIPPED_MAX = 250 * 1024 * 1024  # bytes, code and dependencies unzipped
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".git", ".venv", "tests"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
EXCLUDED_NAMES = {".DS_Store", "requirements.txt"}
ARCHITECTURE = "x86_64"
PIP_TIMEOUT = 600  # seconds for one pip run that vendors a function's requirements


@dataclass(frozen=True)
class Package:
    function: str
    path: Path
    sha256: str
    size: int  # zipped
    unzipped_size: int
    files: int


class PackageError(DorcError):
    pass


def source_files(folder: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) of what a function's package holds from its folder."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in files:
            if name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES):
                continue
            path = Path(root) / name
            out.append((path.relative_to(folder).as_posix(), path))
    return out


def requirements_for(function_dir: Path) -> list[str]:
    """The layer's ``requirements.txt`` then the function's own (both optional)."""
    lines: list[str] = []
    for req in (function_dir.parent.parent / "requirements.txt", function_dir / "requirements.txt"):
        if req.is_file():
            for line in req.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line and line not in lines:
                    lines.append(line)
    return lines


def vendor(requirements: list[str], runtime: str, cache_dir: Path) -> Path | None:
    """Install ``requirements`` for the Lambda platform into a cached folder; None if none."""
    if not requirements:
        return None
    py = runtime.removeprefix("python")
    key = hashlib.sha256("\n".join([runtime, ARCHITECTURE, *requirements]).encode()).hexdigest()[:16]
    target = cache_dir / "deps" / key
    if (target / ".complete").is_file():
        return target
    tmp = target.with_name(key + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--target", str(tmp), "--platform", f"manylinux2014_{ARCHITECTURE}", "--implementation", "cp",
           "--python-version", py, "--only-binary=:all:", *requirements]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        tail = "\n".join(said.strip().splitlines()[-6:])
        raise PackageError(
            f"could not vendor {', '.join(requirements)} for {runtime} ({ARCHITECTURE}): pip did not finish "
            f"within {PIP_TIMEOUT} s and was stopped" + (f":\n{tail}" if tail else ""),
            hint="check that the package index answers (pip honours PIP_INDEX_URL, PIP_NO_INDEX and "
                 "PIP_FIND_LINKS); run the same `pip install` by hand to see where it hangs",
        ) from None
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise PackageError(
            f"could not vendor {', '.join(requirements)} for {runtime} ({ARCHITECTURE}):\n{tail}",
            hint="check the names and versions; only packages with manylinux or pure-Python wheels can be vendored",
        )
    (tmp / ".complete").write_text("\n".join(requirements))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _dep_files(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(EXCLUDED_SUFFIXES) or (Path(root) == folder and name == ".complete"):
                continue
            path = Path(root) / name
            out.append((path.relative_to(folder).as_posix(), path))
    return out


def build_zip(function: str, source_dir: Path, runtime: str, out_dir: Path, cache_dir: Path) -> Package:
    """Write ``<out_dir>/<function>.zip`` deterministically and return its identity."""
    deps = vendor(requirements_for(source_dir), runtime, cache_dir)
    entries: dict[str, Path] = dict(_dep_files(deps)) if deps else {}
    for arc, path in source_files(source_dir):
        entries[arc] = path  # the function's own files win over a dependency's
    unzipped = sum(p.stat().st_size for p in entries.values())
    if unzipped > UNZIPPED_MAX:
        raise PackageError(f"{function}: package is {unzipped / 2**20:.1f} MB unzipped; Lambda allows 250 MB",
                           hint="trim requirements.txt, or move large data to S3")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{function}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arc in sorted(entries):
            info = zipfile.ZipInfo(arc, date_time=FIXED_DATE)
            mode = 0o755 if os.access(entries[arc], os.X_OK) and not arc.endswith(".py") else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the host
            zf.writestr(info, entries[arc].read_bytes())
    os.replace(tmp, target)
    data = target.read_bytes()
    if len(data) > ZIP_DIRECT_UPLOAD_MAX:
        raise PackageError(f"{function}: package is {len(data) / 2**20:.1f} MB zipped; a direct upload allows 50 MB",
                           hint="trim requirements.txt (boto3 is already in the Lambda runtime)")
    return Package(function, target, hashlib.sha256(data).hexdigest(), len(data), unzipped, len(entries))


def package_plan(plan, build_dir: Path, cache_dir: Path, *, on_built=None):
    """The plan with every function's package built and its path and sha256 filled in."""
    functions = []
    for fn in plan.functions:
        pkg = build_zip(fn.name, Path(fn.source_dir), fn.runtime, build_dir / plan.env, cache_dir)
        if on_built:
            on_built(fn, pkg)
        functions.append(fn.model_copy(update={"package_path": str(pkg.path), "package_sha256": pkg.sha256}))
    return plan.model_copy(update={"functions": functions})


def code_sha256(hex_digest: str) -> str:
    """Lambda's ``CodeSha256`` (and Pulumi's ``sourceCodeHash``) form of a package digest:
    base64 of the digest's bytes, not of its hex text."""
    import base64

    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def hex_digest(code_sha256_b64: str) -> str:
    """The inverse of ``code_sha256``: what Lambda reports, as dorc names packages."""
    import base64

    return base64.b64decode(code_sha256_b64).hex()


def source_digest(function_dir: Path) -> str:
    """sha256 of a function's own files and requirements, without building anything: run records
    keep it so promotion can tell whether the build being promoted is the one that was run."""
    h = hashlib.sha256()
    for arc, path in sorted(source_files(function_dir)):
        h.update(arc.encode() + b"\0" + path.read_bytes() + b"\0")
    for line in requirements_for(function_dir):
        h.update(b"req:" + line.encode() + b"\0")
    return h.hexdigest()
