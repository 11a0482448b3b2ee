"""Function packages: one deterministic zip per function, identified by its sha256.

The same sources give byte-identical zips (sorted entries, fixed timestamps and permissions),
so a digest names exactly what runs and promotion can compare digests instead of rebuilding.
Dependencies from the function's and the layer's ``requirements.txt`` are vendored for the
Lambda platform (manylinux wheels for the runtime's Python), cached by the requirements' hash.

Contained: a package holds only regular files of the function's folder (a symbolic link is refused,
never followed) and the vendored distributions; requirements files are read as pip reads them, but
may include only files of the config repo and never choose where pip writes. Reproducible: nothing
that names the building machine (console scripts' shebangs, RECORD, bytecode) reaches a package.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import DorcError
from .project import SETTINGS_FILE

ZIP_DIRECT_UPLOAD_MAX = 50 * 1024 * 1024  # bytes, zipped, for a direct upload
UNZIPPED_MAX = 250 * 1024 * 1024  # bytes, code and dependencies unzipped
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".git", ".venv", "tests"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
EXCLUDED_NAMES = {".DS_Store", "requirements.txt"}
ARCHITECTURE = "x86_64"
PIP_TIMEOUT = 600  # seconds for one pip run that vendors a function's requirements
PIP_NETWORK_TIMEOUT = 20  # seconds pip waits on a silent index before it retries (twice), then gives up
# pip's settings that would make it write somewhere else than the vendored folder
PIP_WRITING_VARIABLES = {"PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_USER", "PIP_SRC", "PIP_EDITABLE"}
# what pip writes into a distribution's metadata about the install itself (paths, tool, request)
DIST_INFO_DROPPED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


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


def _config_root(folder: Path) -> Path:
    """The config repo a function folder belongs to (the nearest ``dorc.toml`` above it, links
    not followed), else its layer's folder: requirement files may be read only inside it."""
    folder = Path(os.path.abspath(folder))
    for parent in (folder, *folder.parents):
        if (parent / SETTINGS_FILE).is_file():
            return parent
    return folder.parent.parent


def _shown(path: Path, root: Path) -> str:
    """A path as the user sees it: from the config repo's folder (``pipeline-config/src/...``)."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(root.parent).as_posix()
    except ValueError:
        return str(path)


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _link_error(path: Path, root: Path) -> PackageError:
    return PackageError(
        f"{_shown(path, root)} is a symbolic link (to {os.readlink(path)}); packages hold only regular "
        "files of the function's folder",
        hint="replace the link with a copy of the file (or move shared code into a requirement)",
    )


def source_files(folder: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) of what a function's package holds from its folder: regular files
    only; a symbolic link or a special file anywhere in the folder is a ``PackageError``."""
    folder = Path(folder)
    root = _config_root(folder)
    if folder.is_symlink():
        raise _link_error(folder, root)
    out = []
    for base, dirs, files in os.walk(folder):  # links to folders are listed, never followed
        here = Path(base)
        for d in dirs:
            if d not in EXCLUDED_DIRS and not d.startswith(".") and (here / d).is_symlink():
                raise _link_error(here / d, root)
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = here / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise _link_error(path, root)
            if name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES):
                continue
            if not stat.S_ISREG(mode):
                raise PackageError(f"{_shown(path, root)} is not a regular file (a FIFO, socket or device)",
                                   hint="remove it from the function's folder")
            arc = path.relative_to(folder).as_posix()
            if not arc.isascii():
                _check_utf8_name(_shown(path, root), arc)
            out.append((arc, path))
    return out


def _check_utf8_name(shown: str, arc: str) -> None:
    """A name the file system holds as bytes that are not UTF-8 (e.g. Latin-1 from an old archive)
    cannot be named in a Lambda zip, nor written to a run record."""
    try:
        arc.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(shown).decode("utf-8", "backslashreplace")
        raise PackageError(f"{shown}: the file name is not valid UTF-8, so it cannot go into a Lambda package",
                           hint="rename the file with a UTF-8 name (or move it out of the function's folder)") from None


@dataclass(frozen=True)
class Requirements:
    """A function's requirements as pip reads them: the layer's ``requirements.txt`` then the
    function's, with their ``-r``/``-c`` includes, checked and flattened."""

    requirements: tuple[str, ...] = ()  # one line each, with its --hash options; local paths absolute
    constraints: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # index and link options (values as pip takes them)
    canonical: tuple[str, ...] = ()  # the same, machine-independent (paths from the config repo): digests, keys

    def __bool__(self) -> bool:
        return bool(self.requirements)

    @property
    def hashed(self) -> bool:
        return "--require-hashes" in self.options or any(" --hash=" in line for line in self.requirements)

    def specs(self) -> list[str]:
        """The requirements without their options (``name==1.0``, a URL, a path)."""
        return [line.split(" --hash=", 1)[0] for line in self.requirements]

    def shown(self) -> str:
        """The requirements as written (paths from the config repo), for messages."""
        return ", ".join(c[2:].split(" --hash=", 1)[0] for c in self.canonical if c.startswith("r:"))


# Options a requirements file may carry: where packages come from, never where they go.
VALUE_OPTIONS = {"--index-url", "--extra-index-url", "--find-links", "--trusted-host", "--only-binary"}
FLAG_OPTIONS = {"--no-index", "--pre", "--prefer-binary", "--require-hashes"}
SHORT_OPTIONS = {"-i": "--index-url", "-f": "--find-links", "-r": "--requirement", "-c": "--constraint",
                 "-e": "--editable", "-t": "--target"}
WRITING_OPTIONS = {"--target", "--prefix", "--root", "--src", "--user", "--editable"}
_COMMENT = re.compile(r"(^|\s+)#.*$")
_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
_LOCAL_PATH = re.compile(r"(\.{1,2}/|/|~)")


class _Reader:
    """pip's requirements-file format, read as pip does (continuations, comments, ``-r``/``-c``
    relative to the including file) with the rules of a package: includes stay inside the config
    repo, options may choose the index but never where pip writes."""

    def __init__(self, root: Path):
        self.root = root
        self.out: dict[str, list[str]] = {"requirements": [], "constraints": [], "options": [], "canonical": []}
        self.reading: list[Path] = []

    def read(self, path: Path, *, constraint: bool = False, where: str | None = None) -> None:
        real = path.resolve()
        if real in self.reading:
            raise PackageError(f"{where}: {_shown(path, self.root)} includes itself",
                               hint="remove the circular -r/-c include")
        self.reading.append(real)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise PackageError(f"cannot read {_shown(path, self.root)}: {getattr(exc, 'strerror', None) or exc}",
                               hint="requirements files are UTF-8 text") from None
        for number, line in self._lines(text):
            self._line(path, number, line, constraint)
        self.reading.pop()

    @staticmethod
    def _lines(text: str):
        """(first line number, logical line): continuations joined, comments dropped."""
        start, parts = None, []
        for number, raw in enumerate(text.splitlines(), 1):
            start = start or number
            if raw.endswith("\\") and not _COMMENT.match(raw):
                parts.append(raw[:-1])
                continue
            parts.append(raw)
            line = _COMMENT.sub("", "".join(parts)).strip()
            if line:
                yield start, line
            start, parts = None, []
        if parts:
            line = _COMMENT.sub("", "".join(parts)).strip()
            if line:
                yield start, line

    def _refuse(self, where: str, message: str, hint: str) -> PackageError:
        return PackageError(f"{where}: {message}", hint=hint)

    def _line(self, path: Path, number: int, line: str, constraint: bool) -> None:
        where = f"{_shown(path, self.root)}:{number}"
        args, _, opts = (" " + line).partition(" -")
        args, opts = args.strip(), ("-" + opts) if opts else ""
        try:
            tokens = shlex.split(opts)
        except ValueError as exc:
            raise self._refuse(where, f"cannot read {line!r} ({exc})", "close the quote") from None
        options = list(self._options(tokens, where))
        if args:  # a requirement; only --hash may follow it
            hashes = []
            for name, value in options:
                if name != "--hash":
                    raise self._refuse(where, f"{name} after a requirement is not supported in a function's "
                                       "requirements", "keep only --hash=ALGO:DIGEST after a requirement")
                hashes.append(f"--hash={value}")
            pip_form, canonical = self._requirement(args, path.parent)
            kind = "constraints" if constraint else "requirements"
            line = " ".join([pip_form, *hashes])
            if line not in self.out[kind]:
                self.out[kind].append(line)
                self.out["canonical"].append(f"{kind[0]}:" + " ".join([canonical, *hashes]))
            return
        for name, value in options:
            if name in ("--requirement", "--constraint"):
                self._include(path, where, name, value, constraint=name == "--constraint")
            elif name == "--hash":
                raise self._refuse(where, "--hash without a requirement", "put --hash on the requirement's line")
            elif name in FLAG_OPTIONS:
                self._option(name, name)
            else:
                pip_value, canonical = value, value
                if name == "--find-links" and "://" not in value:  # pip: relative to the file that says it
                    local = path.parent / os.path.expanduser(value)
                    pip_value = str(local.resolve())
                    canonical = self._canonical(local)
                self._option(f"{name}={pip_value}", f"{name}={canonical}")

    def _option(self, pip_form: str, canonical: str) -> None:
        if pip_form not in self.out["options"]:
            self.out["options"].append(pip_form)
            self.out["canonical"].append("o:" + canonical)

    def _options(self, tokens: list[str], where: str):
        """(long name, value or None) of each option of a line; refused ones are PackageErrors."""
        i = 0
        while i < len(tokens):
            token = tokens[i]
            i += 1
            if token.startswith("--"):
                name, eq, value = token.partition("=")
                value = value if eq else None
            elif token.startswith("-") and len(token) > 1:
                name, value = SHORT_OPTIONS.get(token[:2], token[:2]), (token[2:] or None)
            else:
                raise self._refuse(where, f"unexpected {token!r} after an option",
                                   "one requirement per line, or options only")
            if name in WRITING_OPTIONS:
                raise self._refuse(where, f"{name} is not allowed in a function's requirements: it "
                                   f"{'installs from a source folder' if name == '--editable' else 'makes pip write'}"
                                   " outside the package",
                                   "dorc chooses where pip installs; list the requirement itself (name==version)")
            if name in VALUE_OPTIONS or name in ("--requirement", "--constraint", "--hash"):
                if value is None:
                    if i >= len(tokens):
                        raise self._refuse(where, f"{name} needs a value", f"e.g. {name}=VALUE")
                    value, i = tokens[i], i + 1
                yield name, value
            elif name in FLAG_OPTIONS:
                yield name, None
            else:
                raise self._refuse(where, f"{name} is not supported in a function's requirements",
                                   "allowed: -r/-c FILE, --hash, --index-url, --extra-index-url, --find-links, "
                                   "--trusted-host, --no-index, --only-binary, --pre, --prefer-binary, "
                                   "--require-hashes")

    def _include(self, path: Path, where: str, name: str, value: str, *, constraint: bool) -> None:
        value = _ENV_VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)
        if "://" in value:
            raise self._refuse(where, f"{name} {value}: only files of the config repo can be included",
                               "copy the file into the config repo and include it by its path")
        target = path.parent / os.path.expanduser(value)
        if not _inside(target, self.root):
            raise self._refuse(where, f"{name} {value} is outside the config repo ({self.root})",
                               "keep included requirements files inside the config repo")
        if not target.is_file():
            raise self._refuse(where, f"{name} {value}: no such file ({_shown(target, self.root)})",
                               "the path is relative to the file that includes it")
        self.read(target, constraint=constraint, where=where)

    def _canonical(self, path: Path) -> str:
        real = path.resolve()
        return real.relative_to(self.root.resolve()).as_posix() if _inside(real, self.root) else str(real)

    def _requirement(self, spec: str, folder: Path) -> tuple[str, str]:
        """(pip's form, canonical form): a local path is taken relative to its requirements file."""
        if not _LOCAL_PATH.match(spec):
            return spec, spec
        where, sep, marker = spec.partition(";")
        local = folder / os.path.expanduser(where.strip())
        tail = f" ;{marker}" if sep else ""
        return str(local.resolve()) + tail, self._canonical(local) + tail


def read_requirements(function_dir: Path) -> Requirements:
    """The layer's ``requirements.txt`` then the function's own (both optional), as pip reads them."""
    function_dir = Path(function_dir)
    root = _config_root(function_dir)
    reader = _Reader(root)
    layer_file, own_file = function_dir.parent.parent / "requirements.txt", function_dir / "requirements.txt"
    if own_file.is_symlink():
        raise _link_error(own_file, root)
    for req in (layer_file, own_file):
        if req.is_file():
            if not _inside(req, root):
                raise PackageError(f"{_shown(req, root)} is outside the config repo ({root})",
                                   hint="keep requirements files inside the config repo")
            reader.read(req)
    return Requirements(**{k: tuple(v) for k, v in reader.out.items()})


def requirements_for(function_dir: Path) -> list[str]:
    """The requirements (without their options) of the layer's and the function's files."""
    return read_requirements(function_dir).specs()


def vendor(requirements: Requirements, runtime: str, cache_dir: Path) -> Path | None:
    """Install ``requirements`` for the Lambda platform into a cached folder; None if none."""
    if not requirements:
        return None
    py = runtime.removeprefix("python")
    key = hashlib.sha256("\n".join([runtime, ARCHITECTURE, *requirements.requirements, "-c",
                                    *requirements.constraints, "-o", *requirements.options]).encode()).hexdigest()[:16]
    target = cache_dir / "deps" / key
    if (target / ".complete").is_file():
        return target
    tmp = target.with_name(key + ".partial")
    given = target.with_name(key + ".in")  # the flattened files pip reads (so --hash and -c work as in a file)
    for folder in (tmp, given):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    (given / "requirements.txt").write_text("\n".join([*requirements.options, *requirements.requirements]) + "\n")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--timeout", str(PIP_NETWORK_TIMEOUT), "--retries", "2",
           "--target", str(tmp), "--platform", f"manylinux2014_{ARCHITECTURE}", "--implementation", "cp",
           "--python-version", py, "--only-binary=:all:", "-r", str(given / "requirements.txt")]
    if requirements.constraints:
        (given / "constraints.txt").write_text("\n".join(requirements.constraints) + "\n")
        cmd += ["-c", str(given / "constraints.txt")]
    if requirements.hashed:
        cmd.append("--require-hashes")
    env = {k: v for k, v in os.environ.items() if k not in PIP_WRITING_VARIABLES}
    what = requirements.shown()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, env=env, cwd=given)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        tail = "\n".join(said.strip().splitlines()[-6:])
        raise PackageError(
            f"could not vendor {what} for {runtime} ({ARCHITECTURE}): pip did not finish "
            f"within {PIP_TIMEOUT} s and was stopped" + (f":\n{tail}" if tail else ""),
            hint="check that the package index answers (pip honours PIP_INDEX_URL, PIP_NO_INDEX and "
                 "PIP_FIND_LINKS); run the same `pip install` by hand to see where it hangs",
        ) from None
    finally:
        shutil.rmtree(given, ignore_errors=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        offline = ("from versions: none" in proc.stderr and "Retrying" in proc.stderr) or any(
            word in proc.stderr for word in ("NewConnectionError", "Temporary failure in name resolution",
                                             "Network is unreachable", "ConnectTimeoutError"))
        raise PackageError(
            f"could not vendor {what} for {runtime} ({ARCHITECTURE}):\n{tail}",
            hint=("no package index answered (offline?): run once online to fill the cache (.dorc/cache), or "
                  "point pip at a folder of wheels (`--find-links DIR` and `--no-index` in requirements.txt, or "
                  "PIP_FIND_LINKS)") if offline else
                 "check the names and versions (and --hash values); only packages with manylinux or pure-Python "
                 "wheels can be vendored",
        )
    (tmp / ".complete").write_text("\n".join(requirements.canonical))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _dep_files(folder: Path) -> list[tuple[str, Path]]:
    """What a package takes of the vendored folder: the installed distributions, without what pip
    writes about the machine that installed them (console scripts carrying its Python's path in
    ``bin/``, RECORD, INSTALLER, REQUESTED, direct_url.json, bytecode)."""
    out = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (here == folder and d == "bin"))
        in_dist_info = here.name.endswith(".dist-info") and here.parent == folder
        for name in sorted(files):
            if name.endswith(EXCLUDED_SUFFIXES) or (here == folder and name == ".complete"):
                continue
            if in_dist_info and name in DIST_INFO_DROPPED:
                continue
            path = here / name
            if not stat.S_ISREG(path.lstat().st_mode):
                raise PackageError(f"{path} (vendored) is not a regular file",
                                   hint=f"delete {folder} to vendor the requirements again")
            out.append((path.relative_to(folder).as_posix(), path))
    return out


def _read(path: Path) -> bytes:
    """A file's bytes, refusing a link that replaced it since it was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _mode(path: Path, arc: str) -> int:
    """0o755 for a file with any execute bit (not a module), else 0o644: the same whoever builds."""
    return 0o755 if path.lstat().st_mode & 0o111 and not arc.endswith(".py") else 0o644


def build_zip(function: str, source_dir: Path, runtime: str, out_dir: Path, cache_dir: Path) -> Package:
    """Write ``<out_dir>/<function>.zip`` deterministically and return its identity."""
    own = source_files(source_dir)  # refuses links before pip runs
    deps = vendor(read_requirements(source_dir), runtime, cache_dir)
    entries: dict[str, Path] = dict(_dep_files(deps)) if deps else {}
    for arc, path in own:
        entries[arc] = path  # the function's own files win over a dependency's
    unzipped = sum(p.lstat().st_size for p in entries.values())
    if unzipped > UNZIPPED_MAX:
        raise PackageError(f"{function}: package is {unzipped / 2**20:.1f} MB unzipped; Lambda allows 250 MB",
                           hint="trim requirements.txt, or move large data to S3")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{function}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arc in sorted(entries):
            info = zipfile.ZipInfo(arc, date_time=FIXED_DATE)
            info.external_attr = (0o100000 | _mode(entries[arc], arc)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the host
            zf.writestr(info, _read(entries[arc]))
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
    keep it so promotion can tell whether the build being promoted is the one that was run. The
    package's rules apply: the same files (a link is refused), the requirements as pip reads them
    (includes' contents, hashes and index options; paths from the config repo), and each file's mode."""
    h = hashlib.sha256()
    for arc, path in sorted(source_files(function_dir)):
        h.update(arc.encode() + b"\0" + oct(_mode(path, arc)).encode() + b"\0" + _read(path) + b"\0")
    for line in read_requirements(function_dir).canonical:
        h.update(b"req:" + line.encode() + b"\0")
    return h.hexdigest()
