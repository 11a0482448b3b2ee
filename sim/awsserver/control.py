"""dorc's side of the local AWS server: find it, start it on demand, stop it, by its PID.

    <state>/server.json   {"pid", "port", "started", "digest", "state"} while a server runs
    <state>/server.lock   held (exclusive) by whoever starts or retires a server
    <state>/clients.lock  held (shared) by each run using the server: the server stops when idle
                          only if it can take this one exclusively, so it never quits under a run
    <state>/server.log    the server's own output (a failed start is explained there)

``digest`` (dorc's server code and moto's version) is recorded, so a changed dorc restarts it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..files import locked

INFO = "server.json"
START_LOCK = "server.lock"
CLIENTS_LOCK = "clients.lock"
LOG = "server.log"
HEALTH_PATH = "/__dorc__/health"
ROLES_PATH = "/__dorc__/roles"  # POST: functions' roles and their sessions (``dorc_sim.iam.roles``)
BUCKETS_PATH = "/__dorc__/buckets"  # POST: buckets a run needs, created unless they exist
# The one account of the local AWS: LocalStack's default, and the plan's for local runs
# (``dorc.plan.LOCAL_ACCOUNT_ID``), so ARNs in grants name what the handlers reach.
ACCOUNT = "000000000000"
IDLE_VAR = "DORC_SIM_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 15.0
START_TIMEOUT_S = 60.0
_started_here: dict[int, subprocess.Popen] = {}  # reaped on stop, so their PIDs really go
_states_here: dict[int, Path] = {}


class ServerError(Exception):
    """The server could not start or answer; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    started: float
    digest: str
    state: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def digest() -> str:
    """What the server runs: this package's code, the IAM checks it installs, the shared file
    helpers, and moto's version."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for p in sorted([*here.glob("*.py"), *(here.parent / "iam").glob("*.py"), here.parent / "files.py"]):
        h.update(p.parent.name.encode() + b"/" + p.name.encode() + b"\0" + p.read_bytes())
    try:
        h.update(version("moto").encode())
    except PackageNotFoundError:
        pass
    return h.hexdigest()[:16]


def idle_minutes() -> float:
    raw = os.environ.get(IDLE_VAR, "")
    try:
        return float(raw) if raw else DEFAULT_IDLE_MINUTES
    except ValueError:
        raise ServerError(f"${IDLE_VAR} is {raw!r}, not a number of minutes",
                          f"set {IDLE_VAR} to a number such as 15, or unset it") from None


def read_info(state: Path) -> ServerInfo | None:
    try:
        doc = json.loads((Path(state) / INFO).read_bytes())
        return ServerInfo(int(doc["pid"]), int(doc["port"]), float(doc["started"]), str(doc["digest"]), str(doc["state"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def health(info: ServerInfo, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(info.url + HEALTH_PATH, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def running(state: Path) -> ServerInfo | None:
    """The server of this state folder, if one runs and answers as it."""
    info = read_info(state)
    if info is None or not pid_alive(info.pid):
        return None
    h = health(info)
    if not h or h.get("pid") != info.pid or Path(h.get("state", "")) != Path(state).resolve():
        return None
    return info


@contextlib.contextmanager
def lease(state: Path):
    """Hold while using the server: an idle server does not stop under it."""
    with locked(Path(state) / CLIENTS_LOCK, fcntl.LOCK_SH):
        yield


def ensure(state: Path, idle: float | None = None) -> ServerInfo:
    """The running server of ``state``, started if none runs (or one of another dorc does).
    Two callers at once end up on one server: the start happens under ``server.lock``.
    ``idle``: minutes without a request before a server started here stops (the config repo's
    ``[local] server_idle_minutes``; ``$DORC_SIM_IDLE_MINUTES`` wins)."""
    state = Path(state).resolve()
    want = digest()
    info = running(state)
    if info is not None and info.digest == want:
        return info
    with locked(state / START_LOCK, fcntl.LOCK_EX):
        info = running(state)
        if info is not None and info.digest == want:
            return info
        if info is not None:
            _terminate(info)
        return _spawn(state, idle)


def _spawn(state: Path, idle: float | None = None) -> ServerInfo:
    log = state / LOG
    (state / INFO).unlink(missing_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.setdefault(IDLE_VAR, str(idle_minutes() if os.environ.get(IDLE_VAR) or idle is None else idle))
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dorc_sim.awsserver", "--state", str(state)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=str(state),
                                start_new_session=True)  # a Ctrl-C in the run that started it is not for it
    _started_here[proc.pid] = proc
    _states_here[proc.pid] = state
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = read_info(state)
        if info is not None and info.pid == proc.pid:
            return info
        if proc.poll() is not None:
            _started_here.pop(proc.pid, None)
            said = _log_since(log, offset)
            raise ServerError(f"the local AWS server for {state} did not start:\n{said}",
                              _hint_for(said, log))
        time.sleep(0.02)
    _terminate_pid(proc.pid)
    raise ServerError(f"the local AWS server for {state} did not start within {START_TIMEOUT_S:.0f} s",
                      f"see {log}")


def _log_since(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace").strip()
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-15:]) or "(no output)"


def _hint_for(said: str, log: Path) -> str:
    if "dorc store repair" in said:
        return "run `dorc store check` to see what is wrong and `dorc store repair` to rebuild it"
    if "No module named" in said:
        return "install the server's dependencies: pip install 'moto[server]' (or reinstall dorc)"
    return f"see {log}"


def stop(state: Path) -> ServerInfo | None:
    """Stop the server of ``state`` by the PID in server.json (after checking it is that server);
    returns what was stopped, or None if none ran."""
    state = Path(state).resolve()
    with locked(state / START_LOCK, fcntl.LOCK_EX):
        info = read_info(state)
        if info is None:
            return None
        if not pid_alive(info.pid) or not _is_server(info):
            (state / INFO).unlink(missing_ok=True)
            return None
        _terminate(info)
        return info


def _is_server(info: ServerInfo) -> bool:
    """The PID is still that server's (a PID may be reused after a crash)."""
    try:
        cmd = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        h = health(info)
        return bool(h) and h.get("pid") == info.pid
    return b"dorc_sim.awsserver" in cmd and info.state.encode() in cmd


def _terminate(info: ServerInfo) -> None:
    _terminate_pid(info.pid)
    if read_info(Path(info.state)) == info:
        (Path(info.state) / INFO).unlink(missing_ok=True)


def _terminate_pid(pid: int) -> None:
    """SIGTERM (the server finishes its requests and writes), SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    proc = _started_here.pop(pid, None)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and not pid_alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(5)


def stop_started_here() -> list[ServerInfo]:
    """Stop every server this process started that still runs and no block still uses (a test's
    clean-up; one a longer-lived fixture holds is left for a later call)."""
    out = []
    for pid, state in list(_states_here.items()):
        info = read_info(state)
        if info is not None and info.pid == pid and pid_alive(pid):
            with open(state / CLIENTS_LOCK, "a+b") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                except BlockingIOError:
                    continue
        _states_here.pop(pid, None)
        if info is not None and info.pid == pid:
            stopped = stop(state)
            if stopped is not None:
                out.append(stopped)
    return out


def status(state: Path) -> tuple[ServerInfo | None, str]:
    """(the running server or None, one line saying so)."""
    state = Path(state).resolve()
    info = running(state)
    if info is not None:
        stale = "" if info.digest == digest() else " (started by another dorc: the next run restarts it)"
        age = time.time() - info.started
        return info, f"running at {info.url} (pid {info.pid}, up {age:.0f} s){stale}"
    left = read_info(state)
    if left is not None:
        return None, f"not running (server.json names pid {left.pid}, which is gone)"
    return None, "not running"
