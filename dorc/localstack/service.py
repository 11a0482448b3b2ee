"""LocalStack's life cycle for dorc: start, stop, status and logs, on the host or in Docker.

Two ways to run it, one version (``LOCALSTACK_VERSION``):

- **host** (no Docker): ``localstack-core`` in a venv of its own, built with a Python >= 3.13
  (``install``), started as ``python -m localstack.runtime.main`` with dorc's Lambda executor
  plugin (``sim/localstack/plugin``, installed as ``dorc_sim``): each function runs in a host process through dorc's own
  runtime, so LocalStack runs behave like in-process runs.
- **docker**: the pinned ``localstack/localstack`` image, as ``docker-compose.localstack.yml``
  runs it (that image needs ``LOCALSTACK_AUTH_TOKEN``).

Everything a running instance needs lives in its state folder (default
``~/.cache/dorc/localstack/run-<port>/``): ``localstack.json`` (pid or container, endpoint, mode),
``localstack.pid``, ``localstack.log``, and LocalStack's FILESYSTEM_ROOT and TMPDIR.

Where it answers is ``endpoint``; the host-mode install is ``install``.
Errors are ``DorcError``s: the CLI prints them as one message and exits 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..errors import LocalStackError
from ..observer import Progress
from .endpoint import DEFAULT_PORT, START_TIMEOUT, health, wait_ready
from .install import (EXECUTOR_NAME, LOCALSTACK_VERSION, LocalStackUnavailable, find_python, install,
                      is_installed, localstack_home, python_hint, read_json, state_dir_for, worker_pythonpath)

DOCKER_IMAGE = "localstack/localstack:2026.03.0"  # the image tags use a zero-padded month
SERVICES = "lambda,stepfunctions,iam,sts,s3,logs,events,cloudwatch"
MODES = ("auto", "host", "docker")
STOP_GRACE = 5.0
STATE_FILE = "localstack.json"
PID_FILE = "localstack.pid"
LOG_FILE = "localstack.log"

_children: dict[int, subprocess.Popen] = {}  # processes this process started, to reap them


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
    doc = read_json(state_dir_for(port, state_dir) / STATE_FILE)
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
    """Our own child is reaped first (else it would linger as a zombie); the check itself is the
    local AWS server's (a zombie is dead for our purposes)."""
    from dorc_sim.awsserver.control import pid_alive

    if not pid:
        return False
    _reap(pid)
    return pid_alive(pid)


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
    folder = state_dir_for(port, state_dir)
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
                        f"Python >= 3.13 to run LocalStack without Docker", hint=python_hint()) from exc
                raise LocalStackUnavailable(
                    f"LocalStack needs Docker or Python >= 3.13, and this machine has neither: {why}; "
                    f"{exc.message}", hint=python_hint()) from exc
    elif mode == "auto":
        # an explicit --python means host mode; say what else would have worked if it does not qualify
        try:
            find_python(python)
        except LocalStackUnavailable as exc:
            client, why = docker_engine()
            other = ("a Docker engine answers: use --mode docker" if client is not None
                     else f"and Docker cannot be used either: {why}")
            raise LocalStackUnavailable(f"{exc.message}; {other}", hint=python_hint()) from exc
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
        "DORC_RUNTIME_DIR": _runtime_dir(),
        **_sandbox_settings(),
    }
    if os.environ.get("DORC_LOCALSTACK_LOG_LEVEL"):
        env["LS_LOG"] = os.environ["DORC_LOCALSTACK_LOG_LEVEL"]
    if os.environ.get("DORC_ENFORCE_IAM"):  # read by dorc's executor plugin (dorc_sim.iam.localstack_gate)
        env["DORC_ENFORCE_IAM"] = os.environ["DORC_ENFORCE_IAM"]
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


def _runtime_dir() -> str:
    """The runtime dir handlers run with (dorc_sim and the AWS SDK Lambda ships), as in local runs."""
    from dorc_sim.sandbox.sdk import RuntimeDirError, runtime_dir

    try:
        return str(runtime_dir())
    except RuntimeDirError as exc:
        raise LocalStackError(exc.message, hint=exc.hint) from None


def _sandbox_settings() -> dict[str, str]:
    """What the executor needs to find a runtime's Python and sandbox as a local run does, although
    LocalStack has a HOME and PATH of its own: where pyenv and uv keep Pythons, the user's
    ``$DORC_PYTHON3_N`` overrides and ``$DORC_SANDBOX``."""
    home = Path.home()
    data = os.environ.get("XDG_DATA_HOME")
    out = {
        "PYENV_ROOT": os.environ.get("PYENV_ROOT") or str(home / ".pyenv"),
        "UV_PYTHON_INSTALL_DIR": os.environ.get("UV_PYTHON_INSTALL_DIR")
        or str((Path(data) if data and os.path.isabs(data) else home / ".local" / "share") / "uv" / "python"),
    }
    out.update({k: v for k, v in os.environ.items() if k.startswith("DORC_PYTHON3_") or k == "DORC_SANDBOX"})
    return out


def _wait_executor(marker: Path, log: Path, alive: Callable[[], str | None], deadline: float) -> None:
    """LocalStack falls back to Docker for an unknown executor without failing: make sure ours loaded."""
    while True:
        doc = read_json(marker)
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


def _is_worker_of(pid: int, owner: int) -> bool:
    """``pid`` is (now) a dorc worker of the LocalStack process ``owner`` (``... -m dorc_sim.localstack.worker --owner N``)."""
    cmd = _cmdline(pid)
    if "dorc_sim.localstack.worker" not in cmd or "--owner" not in cmd:
        return False
    i = cmd.index("--owner")
    return i + 1 < len(cmd) and cmd[i + 1] == str(owner)


def _worker_pids(owner: int) -> list[int]:
    """dorc workers started by the LocalStack process ``owner``."""
    pids: list[int] = []
    if not Path("/proc").is_dir():
        return pids  # elsewhere the workers end themselves once LocalStack is gone (orphan watch)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _is_worker_of(int(proc.name), owner):
            pids.append(int(proc.name))
    return pids


def _session_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (from /proc)."""
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _session_of(int(proc.name)) == sid:
            members.append(int(proc.name))
    return members


def _kill_workers(owner: int, seen: list[int]) -> None:
    """What is left of the workers of LocalStack ``owner`` once it is gone, each with its process
    group (a handler's children too; a worker leads its own session). PIDs are checked again right
    before each signal: a PID seen earlier may since belong to an unrelated process, never signalled."""
    if not Path("/proc").is_dir():
        return
    for w in sorted(set(seen) | set(_worker_pids(owner))):  # a fresh scan: workers started meanwhile too
        if _is_worker_of(w, owner):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(w, signal.SIGKILL)  # its group: pgid == its PID (a session of its own)
            _wait_gone(w, 2.0)
        elif not _pid_alive(w) and w in seen:
            # the worker itself is gone; processes its handler started may still be in its session.
            # While any is, the kernel does not hand the number out again: a member of session w
            # is the worker's, and is signalled alone (no group signal to a number no worker holds)
            for m in _session_members(w):
                if m != w and _session_of(m) == w:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(m, signal.SIGKILL)
        # else: the number now belongs to another process, not ours to signal


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
    workers = _worker_pids(pid)  # before the stop: LocalStack may exit without stopping them
    if _is_localstack_process(pid):
        # SIGTERM first (LocalStack stops its execution environments); hypercorn can hang on it
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, grace) and _is_localstack_process(pid):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
    _kill_workers(pid, workers)
    _children.pop(pid, None)


def stop(port: int = DEFAULT_PORT, state_dir: str | os.PathLike | None = None, *,
         grace: float = STOP_GRACE) -> ServiceInfo | None:
    """Stop the LocalStack recorded in the state folder (SIGTERM, ``grace`` seconds, then SIGKILL of
    its process group; or stop and remove its container). Returns what was stopped, None if nothing
    was recorded."""
    folder = state_dir_for(port, state_dir)
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
    folder = state_dir_for(port, state_dir)
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
