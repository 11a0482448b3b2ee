"""Host-mode LocalStack: a Python >= 3.13, and a venv of its own with the pinned packages and
dorc's Lambda executor plugin (``sim/localstack/plugin``), installed once and kept up to date."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


from ..errors import LocalStackError, ToolMissingError
from ..observer import Progress
from .endpoint import DEFAULT_PORT

LOCALSTACK_VERSION = "2026.3.0"
MIN_PYTHON = (3, 13)
PINNED_PACKAGES = (
    f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
    "cbor2<6",
    "pyopenssl==24.3.0",
    "cryptography==44.0.3",
    "service_identity",
    "joserfc<1.8",
)
EXECUTOR_NAME = "dorc"  # LAMBDA_RUNTIME_EXECUTOR == the plugin's entry-point name
EXECUTOR_GROUP = "localstack.lambda.runtime_executor"
INSTALL_MARKER = "dorc-install.json"



class LocalStackUnavailable(ToolMissingError):
    """Neither a Docker engine nor a Python >= 3.13 to run LocalStack with."""


# --------------------------------------------------------------------------------------------
# folders
# --------------------------------------------------------------------------------------------

def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "dorc" / "localstack"


def localstack_home() -> Path:
    """Where the host-mode venv lives: ``$DORC_LOCALSTACK_HOME`` or ``~/.cache/dorc/localstack/<version>``."""
    home = os.environ.get("DORC_LOCALSTACK_HOME")
    return Path(home).expanduser().resolve() if home else cache_root() / LOCALSTACK_VERSION


def default_state_dir(port: int = DEFAULT_PORT) -> Path:
    return cache_root() / f"run-{port}"


def state_dir_for(port: int, state_dir: str | os.PathLike | None) -> Path:
    return Path(state_dir).expanduser().resolve() if state_dir else default_state_dir(port)


def plugin_source_dir() -> Path:
    """``sim/localstack/plugin``: the executor distribution installed into LocalStack's venv."""
    import dorc_sim

    return Path(dorc_sim.__file__).resolve().parent / "localstack" / "plugin"


def worker_pythonpath() -> Path:
    """A folder holding only ``dorc_sim`` (a link to dorc's simulator), for a worker that runs
    ``-m dorc_sim.localstack.worker``. The simulator's source folder is ``sim/`` (installed
    under the name ``dorc_sim``), so neither its parent nor site-packages would do: the first
    has no ``dorc_sim``, the second would hand the worker every package of dorc's environment."""
    import dorc_sim

    package = Path(dorc_sim.__file__).resolve().parent
    folder = cache_root() / "pythonpath" / hashlib.sha256(str(package).encode()).hexdigest()[:16]
    link = folder / "dorc_sim"
    if not (link.is_symlink() and link.resolve() == package):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".dorc_sim.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(package, target_is_directory=True)
        tmp.replace(link)  # atomic: a concurrent start sees the old link or the new one
    return folder


# --------------------------------------------------------------------------------------------
# a Python >= 3.13 for the host-mode venv
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PythonFound:
    executable: str
    version: tuple[int, int, int]
    source: str  # "--python", "$DORC_LOCALSTACK_PYTHON", "pyenv 3.13.0", "PATH python3.13"

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def _probe_python(cmd: str) -> tuple[str, tuple[int, int, int]] | str:
    """(real executable, version) of the interpreter ``cmd``, or why it cannot be used."""
    path = cmd if os.sep in cmd else shutil.which(cmd)
    if not path:
        return f"{cmd} is not on PATH"
    if not os.path.exists(path):
        return f"{path} does not exist"
    code = "import sys, venv; print(sys.executable); print(*sys.version_info[:3])"
    try:
        out = subprocess.run([path, "-c", code], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{path} cannot be run: {exc}"
    if out.returncode != 0:
        first = (out.stderr or out.stdout).strip().splitlines()[:1]
        return f"{path} cannot be run" + (f": {first[0]}" if first else "")
    lines = out.stdout.strip().splitlines()
    try:
        version = tuple(int(x) for x in lines[-1].split())
        return (lines[0] or path), version  # type: ignore[return-value]
    except (ValueError, IndexError):
        return f"{path} did not report its version"


def _pyenv_candidates() -> list[tuple[str, str]]:
    if not shutil.which("pyenv"):
        return []
    try:
        out = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for name in out.stdout.split():
        m = re.fullmatch(r"3\.(\d+)\.(\d+)", name.strip())
        if m and (3, int(m.group(1))) >= MIN_PYTHON:
            found.append(((int(m.group(1)), int(m.group(2))), name.strip()))
    result = []
    for _, name in sorted(found, reverse=True):
        try:
            prefix = subprocess.run(["pyenv", "prefix", name], capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if prefix:
            result.append((os.path.join(prefix, "bin", "python3"), f"pyenv {name}"))
    return result


def _needs(version: tuple[int, ...]) -> bool:
    return tuple(version[:2]) >= MIN_PYTHON


def find_python(python: str | None = None) -> PythonFound:
    """A Python >= 3.13: ``python`` if given (it must qualify), else ``$DORC_LOCALSTACK_PYTHON``,
    else an installed pyenv 3.13+, else python3.14 / python3.13 on PATH."""
    need = f"Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]}"
    for value, source in ((python, "--python"), (os.environ.get("DORC_LOCALSTACK_PYTHON"), "$DORC_LOCALSTACK_PYTHON")):
        if not value:
            continue
        probe = _probe_python(value)
        if isinstance(probe, str):
            raise LocalStackUnavailable(f"{source} {value}: {probe}", hint=python_hint())
        exe, version = probe
        if not _needs(version):
            raise LocalStackUnavailable(
                f"{source} {value} is Python {'.'.join(map(str, version))}; LocalStack {LOCALSTACK_VERSION} "
                f"needs {need}", hint=python_hint())
        return PythonFound(exe, version, source)
    pyenv = _pyenv_candidates()
    tried = [] if pyenv else ["pyenv has no 3.13+ installed" if shutil.which("pyenv") else "pyenv is not installed"]
    for cand, source in [*pyenv, ("python3.14", "PATH python3.14"), ("python3.13", "PATH python3.13")]:
        probe = _probe_python(cand)
        if isinstance(probe, str):
            tried.append(probe)
            continue
        exe, version = probe
        if _needs(version):
            return PythonFound(exe, version, source)
        tried.append(f"{cand} is Python {'.'.join(map(str, version))}")
    raise LocalStackUnavailable(f"no {need} found to run LocalStack {LOCALSTACK_VERSION} without Docker "
                                f"(looked at pyenv and PATH: {'; '.join(tried) or 'nothing'})",
                                hint=python_hint())


def python_hint() -> str:
    return ("install Python 3.13 (`pyenv install 3.13`, `apt-get install python3.13` or `uv python install 3.13`) "
            "and pass --python /path/to/python3.13 or set DORC_LOCALSTACK_PYTHON; or run LocalStack in Docker "
            "(--mode docker, with LOCALSTACK_AUTH_TOKEN set)")


# --------------------------------------------------------------------------------------------
# install: the host-mode venv
# --------------------------------------------------------------------------------------------

def _plugin_hash() -> str:
    h = hashlib.sha256()
    root = plugin_source_dir()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _venv_python(home: Path) -> Path:
    return home / "venv" / "bin" / "python"


def read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _base_wanted() -> dict:
    return {"localstack": LOCALSTACK_VERSION, "packages": list(PINNED_PACKAGES)}


def install_state(home: Path | None = None) -> dict | None:
    """The install marker (what was installed, with which Python, the plugin's source hash), or None."""
    return read_json((home or localstack_home()) / INSTALL_MARKER)


def is_installed(home: Path | None = None) -> bool:
    """True when the venv holds the pinned LocalStack and the current executor plugin."""
    home = home or localstack_home()
    state = install_state(home)
    return bool(state and state.get("base") == _base_wanted() and state.get("plugin_hash") == _plugin_hash()
                and _venv_python(home).exists())


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_logged(cmd: list[str], log: Path, progress: Progress | None, *, env: dict | None = None,
                what: str) -> None:
    """Run ``cmd``, its output appended to ``log``; pip's Collecting/Installing lines become details."""
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            fh.write(line)
            tail = (tail + [line.rstrip()])[-15:]
            if progress and line.startswith(("Collecting ", "Downloading ", "Installing collected", "Building ",
                                             "Successfully installed")):
                progress("  " + line.strip()[:110])
        code = proc.wait()
    if code != 0:
        shown = "\n".join(f"    {t}" for t in tail if t and "is ignored: it is neither" not in t)
        raise LocalStackError(f"{what} failed (exit {code}); the end of its output:\n{shown}",
                              hint=f"the whole output is in {log}")


def _pip_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def install(python: str | None = None, *, progress: Progress | None = None, force: bool = False) -> Path:
    """Build (or bring up to date) the host-mode venv; returns its Python.

    The pinned LocalStack packages are installed once (about 80 s); dorc's executor plugin is
    reinstalled whenever its source changes. ``python`` picks the interpreter to build the venv
    with (it must be >= 3.13); the default is found by ``find_python``."""
    say = progress or (lambda message: None)
    home = localstack_home()
    venv_py = _venv_python(home)
    with _locked(home.parent / f".{home.name}.lock"):
        state = install_state(home) or {}
        chosen = find_python(python) if python else None
        base_ok = (state.get("base") == _base_wanted() and venv_py.exists()
                   and (chosen is None or state.get("python") == chosen.executable))
        log = home / "install.log"
        if force or not base_ok:
            chosen = chosen or find_python(None)
            t0 = time.monotonic()
            if home.exists():
                shutil.rmtree(home)
            home.mkdir(parents=True)
            say(f"creating LocalStack's venv with Python {chosen.version_text} ({chosen.executable}) in {home}")
            _run_logged([chosen.executable, "-m", "venv", str(home / "venv")], log, progress,
                        env=_pip_env(), what="creating the venv")
            say(f"installing LocalStack {LOCALSTACK_VERSION} (localstack-core[runtime]; takes a minute or two)")
            _run_logged([str(venv_py), "-m", "pip", "install", "--progress-bar", "off", *PINNED_PACKAGES], log,
                        progress, env=_pip_env(), what=f"installing LocalStack {LOCALSTACK_VERSION}")
            state = {"base": _base_wanted(), "python": chosen.executable, "python_version": chosen.version_text,
                     "base_seconds": round(time.monotonic() - t0, 1)}
            (home / INSTALL_MARKER).write_text(json.dumps(state, indent=2))
        plugin_hash = _plugin_hash()
        if state.get("plugin_hash") != plugin_hash:
            say("installing dorc's Lambda executor plugin into LocalStack's venv")
            _install_plugin(venv_py, log, progress)
            state["plugin_hash"] = plugin_hash
            (home / INSTALL_MARKER).write_text(json.dumps(state, indent=2))
    return venv_py


def _install_plugin(venv_py: Path, log: Path, progress: Progress | None) -> None:
    # build from a copy: pip/setuptools leave build/ and *.egg-info in the source folder
    with tempfile.TemporaryDirectory(prefix="dorc-ls-plugin-") as tmp:
        src = Path(tmp) / "plugin"
        shutil.copytree(plugin_source_dir(), src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        has_setuptools = subprocess.run([str(venv_py), "-c", "import setuptools"], capture_output=True).returncode == 0
        cmd = [str(venv_py), "-m", "pip", "install", "--progress-bar", "off", "--no-deps", "--force-reinstall",
               *(["--no-build-isolation"] if has_setuptools else []), str(src)]
        _run_logged(cmd, log, progress, env=_pip_env(), what="installing dorc's executor plugin")
    check = ("import importlib.metadata as m, sys\n"
             f"eps = [e for e in m.entry_points(group={EXECUTOR_GROUP!r}) if e.name == {EXECUTOR_NAME!r}]\n"
             "cls = eps[0].load() if eps else None\n"
             f"sys.exit(0 if cls is not None and cls.name == {EXECUTOR_NAME!r} else 3)\n")
    out = subprocess.run([str(venv_py), "-c", check], capture_output=True, text=True, env=_pip_env())
    if out.returncode != 0:
        raise LocalStackError(
            f"dorc's executor plugin is not registered in LocalStack's venv (entry point "
            f"{EXECUTOR_GROUP}:{EXECUTOR_NAME}); LocalStack would silently use Docker for Lambda. "
            f"{(out.stderr or '').strip()[-500:]}", hint="dorc localstack install --force")
