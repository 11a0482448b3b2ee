"""LocalStack for dorc: where it is, whether it answers, and its life cycle.

Two ways to run it, one version (``LOCALSTACK_VERSION``):

- **host** (no Docker): ``localstack-core`` in a venv of its own, built with a Python >= 3.13
  (``install``), started as ``python -m localstack.runtime.main`` with dorc's Lambda executor
  plugin (``sim/localstack/plugin``): each function runs in a host process through dorc's own
  runtime, so LocalStack runs behave like in-process runs.
- **docker**: the pinned ``localstack/localstack`` image, as ``docker-compose.localstack.yml``
  runs it (that image needs ``LOCALSTACK_AUTH_TOKEN``).

Everything a running instance needs lives in its state folder (default
``~/.cache/dorc/localstack/run-<port>/``): ``localstack.json`` (pid or container, endpoint, mode),
``localstack.pid``, ``localstack.log``, and LocalStack's FILESYSTEM_ROOT and TMPDIR.

Errors are ``DorcError``s: the CLI prints them as one message and exits 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .errors import DorcError, ToolMissingError

LOCALSTACK_VERSION = "2026.3.0"
DOCKER_IMAGE = "localstack/localstack:2026.03.0"  # the image tags use a zero-padded month
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
SERVICES = "lambda,stepfunctions,iam,sts,s3,logs,events,cloudwatch"
DEFAULT_PORT = 4566
DEFAULT_ENDPOINT = "http://localhost:4566"
MODES = ("auto", "host", "docker")
START_TIMEOUT = 120.0
STOP_GRACE = 5.0
HEALTH_PATH = "/_localstack/health"
STATE_FILE = "localstack.json"
PID_FILE = "localstack.pid"
LOG_FILE = "localstack.log"
INSTALL_MARKER = "dorc-install.json"

Progress = Callable[[str], None]
"""Progress messages: a step (``"installing ..."``) or, indented by two spaces, a detail of it."""

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_children: dict[int, subprocess.Popen] = {}  # processes this process started, to reap them


class LocalStackError(DorcError):
    """LocalStack could not be installed, started, reached or stopped."""


class LocalStackUnavailable(ToolMissingError):
    """Neither a Docker engine nor a Python >= 3.13 to run LocalStack with."""


# --------------------------------------------------------------------------------------------
# where it is, and whether it answers
# --------------------------------------------------------------------------------------------

def endpoint_url(explicit: str | None = None) -> str:
    """The LocalStack URL: ``explicit``, else ``$AWS_ENDPOINT_URL``, else ``$LOCALSTACK_HOST``
    (``host[:port]``, port 4566 by default), else ``http://localhost:4566``."""
    if explicit:
        return explicit.rstrip("/")
    env_url = os.environ.get("AWS_ENDPOINT_URL", "").strip()
    if env_url:
        return env_url.rstrip("/")
    host = os.environ.get("LOCALSTACK_HOST", "").strip()
    if host:
        if "://" in host:
            return host.rstrip("/")
        host = host.rstrip("/")
        if host.startswith("["):  # [::1] or [::1]:4566
            return f"http://{host}" if "]:" in host else f"http://{host}:{DEFAULT_PORT}"
        return f"http://{host}" if ":" in host else f"http://{host}:{DEFAULT_PORT}"
    return DEFAULT_ENDPOINT


def health(endpoint: str, timeout: float = 2.0) -> dict | None:
    """LocalStack's health document (services and their states, version), or None if it does not answer."""
    try:
        with _NO_PROXY.open(endpoint.rstrip("/") + HEALTH_PATH, timeout=timeout) as resp:
            if resp.status != 200:
                return None
            doc = json.loads(resp.read() or b"{}")
            return doc if isinstance(doc, dict) else None
    except (OSError, ValueError, urllib.error.URLError):
        return None


def is_ready(endpoint: str, timeout: float = 2.0) -> bool:
    """True when LocalStack answers its health check at ``endpoint``."""
    return health(endpoint, timeout) is not None


def wait_ready(endpoint: str, timeout: float = START_TIMEOUT, *,
               alive: Callable[[], str | None] | None = None) -> float:
    """Wait until ``endpoint`` answers; returns the seconds waited. ``alive()`` returns why the
    service can no longer come up (it exited), or None; either that or the timeout raises."""
    start = time.monotonic()
    while True:
        if is_ready(endpoint, timeout=1.0):
            return time.monotonic() - start
        if alive is not None:
            why = alive()
            if why:
                raise LocalStackError(f"LocalStack stopped before it was ready at {endpoint}: {why}")
        if time.monotonic() - start >= timeout:
            raise LocalStackError(f"LocalStack did not answer at {endpoint} within {timeout:.0f} s")
        time.sleep(0.1)


def require_ready(endpoint: str | None = None) -> str:
    """The endpoint (resolved as ``endpoint_url``), or a DorcError saying how to start LocalStack."""
    ep = endpoint_url(endpoint)
    if not is_ready(ep):
        raise LocalStackError(f"LocalStack is not reachable at {ep}",
                              hint="start it with `dorc localstack start` (or docker compose -f "
                                   "docker-compose.localstack.yml up -d), or pass --endpoint URL")
    return ep


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


def _state_dir(port: int, state_dir: str | os.PathLike | None) -> Path:
    return Path(state_dir).expanduser().resolve() if state_dir else default_state_dir(port)


def plugin_source_dir() -> Path:
    """``sim/localstack/plugin``: the executor distribution installed into LocalStack's venv."""
    import sim

    return Path(sim.__file__).resolve().parent / "localstack" / "plugin"


def worker_pythonpath() -> Path:
    """The folder that contains dorc's ``sim`` package (the worker runs ``-m sim.localstack.worker``)."""
    import sim

    return Path(sim.__file__).resolve().parent.parent


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
            raise LocalStackUnavailable(f"{source} {value}: {probe}", hint=_python_hint())
        exe, version = probe
        if not _needs(version):
            raise LocalStackUnavailable(
                f"{source} {value} is Python {'.'.join(map(str, version))}; LocalStack {LOCALSTACK_VERSION} "
                f"needs {need}", hint=_python_hint())
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
                                hint=_python_hint())


def _python_hint() -> str:
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


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _base_wanted() -> dict:
    return {"localstack": LOCALSTACK_VERSION, "packages": list(PINNED_PACKAGES)}


def install_state(home: Path | None = None) -> dict | None:
    """The install marker (what was installed, with which Python, the plugin's source hash), or None."""
    return _read_json((home or localstack_home()) / INSTALL_MARKER)


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


# --------------------------------------------------------------------------------------------
# what runs: state files, processes, ports
# --------------------------------------------------------------------------------------------

@dataclass
class ServiceInfo:
    """A LocalStack that dorc started (what ``localstack.json`` in its state folder records)."""

    mode: str  # "host" | "docker"
    endpoint: str
    port: int
    state_dir: str
    pid: int | None = None
    container_id: str | None = None
    log_file: str | None = None
    started_at: float = field(default_factory=time.time)
    version: str = LOCALSTACK_VERSION
    python: str | None = None  # host mode: LocalStack's interpreter
    worker_python: str | None = None  # host mode: the interpreter that runs the functions
    ready_seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> "ServiceInfo":
        known = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        return cls(**known)


@dataclass
class ServiceStatus:
    running: bool  # the recorded process or container is alive
    ready: bool  # the endpoint answers
    endpoint: str
    info: ServiceInfo | None
    health: dict | None
    note: str = ""

    def to_dict(self) -> dict:
        return {"running": self.running, "ready": self.ready, "endpoint": self.endpoint, "note": self.note,
                "info": self.info.to_dict() if self.info else None, "health": self.health}


def read_info(port: int = DEFAULT_PORT, state_dir: str | os.PathLike | None = None) -> ServiceInfo | None:
    doc = _read_json(_state_dir(port, state_dir) / STATE_FILE)
    try:
        return ServiceInfo.from_dict(doc) if doc else None
    except TypeError:
        return None


def _write_info(info: ServiceInfo) -> None:
    folder = Path(info.state_dir)
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(info.to_dict(), indent=2))
    tmp.replace(folder / STATE_FILE)
    if info.pid:
        (folder / PID_FILE).write_text(f"{info.pid}\n")


def _forget(state_dir: Path) -> None:
    for name in (STATE_FILE, PID_FILE):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _children.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return []


def _is_localstack_process(pid: int | None) -> bool:
    """Alive and (where /proc tells) really LocalStack: a recycled PID is never signalled."""
    if not _pid_alive(pid):
        return False
    if not Path("/proc/self/cmdline").exists():
        return True  # no /proc to ask (macOS): trust the recorded PID
    return "localstack.runtime.main" in _cmdline(pid)  # type: ignore[arg-type]


def _docker_container(container_id: str | None):
    if not container_id:
        return None
    client, _ = docker_engine()
    if client is None:
        return None
    try:
        return client.containers.get(container_id)
    except Exception:  # noqa: BLE001 - gone, or the engine refused
        return None


def _is_running(info: ServiceInfo) -> bool:
    if info.mode == "docker":
        c = _docker_container(info.container_id)
        return c is not None and c.status in ("created", "running", "restarting")
    return _is_localstack_process(info.pid)


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _who_listens(port: int) -> str | None:
    """Best effort, from /proc: "python3 (pid 123)" for the process listening on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    cmd = _cmdline(int(proc.name))
                    return f"{' '.join(cmd)[:120] or proc.name} (pid {proc.name})"
        except OSError:
            continue
    return None


def _check_port_free(port: int) -> None:
    if not _port_in_use(port):
        return
    endpoint = f"http://127.0.0.1:{port}"
    doc = health(endpoint)
    if doc is not None:
        version = doc.get("version", "unknown version")
        raise LocalStackError(f"a LocalStack ({version}) already answers at {endpoint}, not started from this "
                              f"state folder", hint=f"use it (--endpoint {endpoint}), stop it, or pick another --port")
    who = _who_listens(port)
    raise LocalStackError(f"port {port} on 127.0.0.1 is already in use" + (f" by {who}" if who else ""),
                          hint="stop that program or pick another --port")


def _tail(path: str | os.PathLike | None, lines: int = 20) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Docker
# --------------------------------------------------------------------------------------------

def docker_engine():
    """``(client, "")`` when a Docker engine answers, else ``(None, why not)``. Imports the SDK lazily."""
    try:
        import docker  # type: ignore[import-not-found]
    except ImportError:
        return None, "the docker Python package is not installed (pip install docker)"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        return client, ""
    except Exception as exc:  # noqa: BLE001 - DockerException, connection errors
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        reason = str(exc)
        if "Connection aborted" in reason or "FileNotFoundError" in reason or "ConnectionRefused" in reason:
            return None, f"no Docker engine answers at {where}"
        return None, f"no Docker engine answers at {where} ({reason[:200]})"


def docker_available() -> bool:
    return docker_engine()[0] is not None


def _start_docker(client, port: int, state_dir: Path, progress: Progress | None, timeout: float) -> ServiceInfo:
    say = progress or (lambda message: None)
    token = os.environ.get("LOCALSTACK_AUTH_TOKEN", "")
    if not token:
        say(f"warning: LOCALSTACK_AUTH_TOKEN is not set; the {DOCKER_IMAGE} image refuses to start without it")
    try:
        client.images.get(DOCKER_IMAGE)
    except Exception:  # noqa: BLE001 - ImageNotFound
        say(f"pulling {DOCKER_IMAGE}")
        repo, tag = DOCKER_IMAGE.rsplit(":", 1)
        client.images.pull(repo, tag=tag)
    name = f"dorc-localstack-{port}"
    with contextlib.suppress(Exception):
        client.containers.get(name).remove(force=True)
    env = {"SERVICES": SERVICES, "EAGER_SERVICE_LOADING": "1", "LOCALSTACK_HOST": f"localhost:{port}",
           "DEBUG": os.environ.get("DEBUG", "0")}
    if token:
        env["LOCALSTACK_AUTH_TOKEN"] = token
    say(f"starting container {name} ({DOCKER_IMAGE})")
    container = client.containers.run(
        DOCKER_IMAGE, detach=True, name=name, environment=env,
        ports={"4566/tcp": ("127.0.0.1", port)},
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}},
        labels={"dorc.localstack.port": str(port)},
    )
    endpoint = f"http://127.0.0.1:{port}"
    info = ServiceInfo(mode="docker", endpoint=endpoint, port=port, state_dir=str(state_dir),
                       container_id=container.id)
    _write_info(info)

    def alive() -> str | None:
        try:
            container.reload()
        except Exception as exc:  # noqa: BLE001
            return f"container gone ({exc})"
        if container.status in ("exited", "dead"):
            code = container.attrs.get("State", {}).get("ExitCode")
            logs = container.logs(tail=15).decode(errors="replace")
            extra = " (exit 55: the image needs LOCALSTACK_AUTH_TOKEN)" if code == 55 else ""
            return f"container exited with code {code}{extra}\n{logs}"
        return None

    say(f"waiting for {endpoint}")
    try:
        info.ready_seconds = round(wait_ready(endpoint, timeout, alive=alive), 2)
    except LocalStackError:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        _forget(state_dir)
        raise
    _write_info(info)
    return info


# --------------------------------------------------------------------------------------------
# start / stop / status / logs
# --------------------------------------------------------------------------------------------

def start(port: int = DEFAULT_PORT, state_dir: str | os.PathLike | None = None, python: str | None = None,
          mode: str = "auto", *, progress: Progress | None = None, timeout: float = START_TIMEOUT) -> ServiceInfo:
    """Start LocalStack on 127.0.0.1:``port`` and wait until it answers.

    ``mode``: "host" (our venv and executor; installs it first if needed), "docker" (the pinned
    image), or "auto": Docker when an engine answers and LOCALSTACK_AUTH_TOKEN is set, else host.
    ``python`` (host mode) builds the venv with that interpreter. Refuses to start over a running
    instance or a port something already answers on."""
    if mode not in MODES:
        raise LocalStackError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    folder = _state_dir(port, state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    existing = read_info(port, folder)
    if existing is not None:
        if _is_running(existing):
            raise LocalStackError(
                f"LocalStack is already running from {folder} ({existing.mode} mode, "
                f"{'pid ' + str(existing.pid) if existing.pid else 'container ' + str(existing.container_id)[:12]}, "
                f"{existing.endpoint})", hint=f"dorc localstack stop --port {existing.port}"
                + (f" --state-dir {folder}" if state_dir else ""))
        _forget(folder)  # stale: the process is gone
    _check_port_free(port)

    if mode == "docker":
        client, why = docker_engine()
        if client is None:
            raise LocalStackUnavailable(f"--mode docker: {why}",
                                        hint="start the Docker engine, or use --mode host (needs Python >= 3.13)")
        return _start_docker(client, port, folder, progress, timeout)
    if mode == "auto" and python is None:
        client, why = docker_engine()
        if client is not None and os.environ.get("LOCALSTACK_AUTH_TOKEN"):
            return _start_docker(client, port, folder, progress, timeout)
        if not is_installed():
            try:
                find_python(None)
            except LocalStackUnavailable as exc:
                if client is not None:
                    raise LocalStackUnavailable(
                        f"the LocalStack {DOCKER_IMAGE} image needs LOCALSTACK_AUTH_TOKEN, and there is no "
                        f"Python >= 3.13 to run LocalStack without Docker", hint=_python_hint()) from exc
                raise LocalStackUnavailable(
                    f"LocalStack needs Docker or Python >= 3.13, and this machine has neither: {why}; "
                    f"{exc.message}", hint=_python_hint()) from exc
    elif mode == "auto":
        # an explicit --python means host mode; say what else would have worked if it does not qualify
        try:
            find_python(python)
        except LocalStackUnavailable as exc:
            client, why = docker_engine()
            other = ("a Docker engine answers: use --mode docker" if client is not None
                     else f"and Docker cannot be used either: {why}")
            raise LocalStackUnavailable(f"{exc.message}; {other}", hint=_python_hint()) from exc
    return _start_host(port, folder, python, progress, timeout)


def _clear(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def _start_host(port: int, folder: Path, python: str | None, progress: Progress | None,
                timeout: float) -> ServiceInfo:
    say = progress or (lambda message: None)
    venv_py = install(python, progress=progress)
    home = localstack_home()
    # stale files of an earlier run: LocalStack keeps no state between runs (no PERSISTENCE)
    for sub in ("tmp", "fs"):
        _clear(folder / sub)
    (folder / "home").mkdir(exist_ok=True)
    log = folder / LOG_FILE
    if log.exists():
        log.replace(folder / (LOG_FILE + ".1"))
    marker = folder / "executor.json"
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        # nothing of the caller's environment (AWS_* credentials, proxies) reaches LocalStack
        "PATH": f"{venv_py.parent}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(folder / "home"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_SERVER": "hypercorn",
        "LOCALSTACK_HOST": f"localhost:{port}",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "FILESYSTEM_ROOT": str(folder / "fs"),
        "TMPDIR": str(folder / "tmp"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "EAGER_SERVICE_LOADING": "1",
        "SERVICES": SERVICES,
        "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR_NAME,
        "DORC_WORKER_PYTHON": sys.executable,
        "DORC_WORKER_PYTHONPATH": str(worker_pythonpath()),
        "DORC_WORKER_PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "DORC_EXECUTOR_MARKER": str(marker),
    }
    if os.environ.get("DORC_LOCALSTACK_LOG_LEVEL"):
        env["LS_LOG"] = os.environ["DORC_LOCALSTACK_LOG_LEVEL"]
    say(f"starting LocalStack {LOCALSTACK_VERSION} on {endpoint} (host mode)")
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(venv_py), "-m", "localstack.runtime.main"], cwd=str(folder), env=env,
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _children[proc.pid] = proc
    info = ServiceInfo(mode="host", endpoint=endpoint, port=port, state_dir=str(folder), pid=proc.pid,
                       log_file=str(log), python=str(venv_py), worker_python=sys.executable)
    _write_info(info)

    def alive() -> str | None:
        if proc.poll() is None:
            return None
        return f"exit status {proc.returncode}; the end of {log}:\n{_tail(log)}"

    t0 = time.monotonic()
    try:
        wait_ready(endpoint, timeout, alive=alive)
        _wait_executor(marker, log, alive, deadline=t0 + timeout)
    except LocalStackError:
        _kill_host(info, grace=1.0)
        _forget(folder)
        raise
    info.ready_seconds = round(time.monotonic() - t0, 2)
    _write_info(info)
    return info


def _wait_executor(marker: Path, log: Path, alive: Callable[[], str | None], deadline: float) -> None:
    """LocalStack falls back to Docker for an unknown executor without failing: make sure ours loaded."""
    while True:
        doc = _read_json(marker)
        if doc is not None:
            if doc.get("problems"):
                raise LocalStackError("dorc's Lambda executor is misconfigured: " + "; ".join(doc["problems"]))
            return
        text = _tail(log, 200)
        if "Invalid specified plugin name" in text:
            raise LocalStackError(f"LocalStack did not find dorc's Lambda executor ({EXECUTOR_NAME}) and would "
                                  f"run functions in Docker", hint="dorc localstack install --force")
        why = alive()
        if why:
            raise LocalStackError(f"LocalStack stopped while starting its Lambda service: {why}")
        if time.monotonic() >= deadline:
            raise LocalStackError(f"LocalStack's Lambda service did not load dorc's executor; see {log}")
        time.sleep(0.1)


def _worker_pids(owner: int) -> list[int]:
    """dorc workers started by the LocalStack process ``owner`` (``... -m sim.localstack.worker --owner N``)."""
    pids: list[int] = []
    if not Path("/proc").is_dir():
        return pids  # elsewhere the workers end themselves once LocalStack is gone (orphan watch)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        cmd = _cmdline(int(proc.name))
        if "sim.localstack.worker" in cmd and "--owner" in cmd:
            i = cmd.index("--owner")
            if i + 1 < len(cmd) and cmd[i + 1] == str(owner):
                pids.append(int(proc.name))
    return pids


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


def _kill_host(info: ServiceInfo, grace: float = STOP_GRACE) -> None:
    pid = info.pid
    if not pid:
        return
    workers = _worker_pids(pid)
    if _is_localstack_process(pid):
        # SIGTERM first (LocalStack stops its execution environments); hypercorn can hang on it
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, grace):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
    for w in set(workers) | set(_worker_pids(pid)):
        _signal_group(w, signal.SIGKILL)
        _wait_gone(w, 2.0)
    _children.pop(pid, None)


def stop(port: int = DEFAULT_PORT, state_dir: str | os.PathLike | None = None, *,
         grace: float = STOP_GRACE) -> ServiceInfo | None:
    """Stop the LocalStack recorded in the state folder (SIGTERM, ``grace`` seconds, then SIGKILL of
    its process group; or stop and remove its container). Returns what was stopped, None if nothing
    was recorded."""
    folder = _state_dir(port, state_dir)
    info = read_info(port, folder)
    if info is None:
        return None
    if info.mode == "docker":
        c = _docker_container(info.container_id)
        if c is not None:
            with contextlib.suppress(Exception):
                c.stop(timeout=int(grace))
            with contextlib.suppress(Exception):
                c.remove(force=True)
        elif info.container_id and not docker_available():
            raise LocalStackError(f"cannot stop container {info.container_id[:12]}: no Docker engine answers")
    else:
        _kill_host(info, grace)
    _forget(folder)
    return info


def status(port: int = DEFAULT_PORT, state_dir: str | os.PathLike | None = None,
           endpoint: str | None = None) -> ServiceStatus:
    """What runs: the recorded instance (alive?) and whether its endpoint (or ``endpoint``) answers."""
    info = read_info(port, state_dir)
    if info is not None:
        running = _is_running(info)
        doc = health(info.endpoint) if running else None
        note = "" if running else "recorded but not running (stale state; `dorc localstack start` replaces it)"
        return ServiceStatus(running, doc is not None, info.endpoint, info, doc, note)
    ep = endpoint or f"http://127.0.0.1:{port}"
    doc = health(ep)
    note = "answers, but was not started by dorc from this state folder" if doc is not None else ""
    return ServiceStatus(doc is not None, doc is not None, ep, None, doc, note)


def logs(port: int = DEFAULT_PORT, state_dir: str | os.PathLike | None = None, *, follow: bool = False,
         lines: int = 100) -> Iterator[str]:
    """The last ``lines`` lines of LocalStack's log; with ``follow``, then new lines while it runs."""
    folder = _state_dir(port, state_dir)
    info = read_info(port, folder)
    if info is not None and info.mode == "docker":
        c = _docker_container(info.container_id)
        if c is None:
            raise LocalStackError(f"container {str(info.container_id)[:12]} is gone")
        if follow:
            for chunk in c.logs(stream=True, follow=True, tail=lines):
                yield from chunk.decode(errors="replace").splitlines()
        else:
            yield from c.logs(tail=lines).decode(errors="replace").splitlines()
        return
    log = Path(info.log_file) if info and info.log_file else folder / LOG_FILE
    if not log.exists():
        raise LocalStackError(f"no LocalStack log at {log}", hint="start it with `dorc localstack start`")
    for line in _tail(log, lines).splitlines():
        yield line
    if not follow:
        return
    with open(log, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        buf = b""
        while True:
            chunk = fh.read()
            if chunk:
                buf += chunk
                *done, buf = buf.split(b"\n")
                for line in done:
                    yield line.decode(errors="replace")
            elif info is None or not _is_running(info):
                return
            else:
                time.sleep(0.2)
