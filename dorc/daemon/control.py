"""Start, stop and look at the daemon, by the PID it recorded (checked against its command line
before any signal, as ``dorc sim stop`` does), under a lock so two starts never race."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from dorc_sim.awsserver.control import pid_alive

from ..errors import DorcError
from . import paths, protocol
from .digest import digest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
MODULE = "dorc.daemon"


class DaemonError(DorcError):
    """The daemon could not start, or its folder is not private."""


@dataclass(frozen=True)
class DaemonInfo:
    pid: int
    folder: str
    started: float
    python: str
    fresh: bool  # it loaded the dorc installed now
    runs: int  # runs in flight
    sandboxes: tuple[str, ...] = ()  # the Pythons it keeps a fork server on (the AWS SDK imported)


def folder() -> str:
    try:
        return paths.private_folder()
    except paths.FolderError as exc:
        raise DaemonError(exc.message, hint=exc.hint) from None
    except OSError as exc:
        raise DaemonError(f"cannot create the dorc daemon's folder {paths.folder()}: {exc.strerror}",
                          hint=f"set {paths.DIR_VAR} to a folder of your own") from None


def status() -> DaemonInfo | None:
    """The running daemon, asked over its socket; None when none answers."""
    base = paths.folder()
    record = _record(base)
    if record is None or not _is_daemon(int(record.get("pid", 0)), base):
        return None
    answer = _ask(base)
    if answer is None or answer.get("pid") != record.get("pid"):
        return None
    return DaemonInfo(pid=int(record["pid"]), folder=base, started=float(record.get("started", 0)),
                      python=str(record.get("python", "")), fresh=record.get("digest") == digest(),
                      runs=int(answer.get("runs", 0)), sandboxes=tuple(answer.get("sandboxes", ())))


def start() -> tuple[DaemonInfo, bool]:
    """A fresh daemon, started now unless one runs already (a stale one is replaced); and whether
    it was started now."""
    base = folder()
    with _locked(base):
        running = status()
        if running is not None and running.fresh:
            return running, False
        return _replace(base, running), True


def replace_stale() -> DaemonInfo | None:
    """A stale daemon replaced by a fresh one (a run found it stale: ``python -m dorc.daemon
    restart``); nothing when none runs any more (stopped meanwhile: not started again) or the one
    running is fresh (another run replaced it first)."""
    base = folder()
    with _locked(base):
        running = status()
        if running is None or running.fresh:
            return None
        return _replace(base, running)


def _replace(base: str, running: DaemonInfo | None) -> DaemonInfo:
    """Under the lock: stop ``running`` (if any) by its PID and start a daemon in its place."""
    if running is not None:
        _stop_pid(running.pid, base)
    _clean(base)
    with open(paths.file(paths.LOG, base), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", MODULE, "serve", base], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log, cwd="/", start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        info = status()
        if info is not None and info.pid == proc.pid:
            proc.returncode = 0  # it lives on on its own: not this process's to wait for
            return info
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    raise DaemonError(f"the dorc daemon did not start: {_tail(paths.file(paths.LOG, base))}",
                      hint=f"its log is {paths.file(paths.LOG, base)}; runs work without it")


def stop() -> DaemonInfo | None:
    """Stop the daemon by its recorded PID (after checking it is this folder's daemon); what was
    stopped, or None. Runs in flight end as they would; their clients are told."""
    base = paths.folder()
    if not os.path.isdir(base):
        return None
    with _locked(base):
        record = _record(base)
        if record is None:
            _clean(base)
            return None
        pid = int(record.get("pid", 0))
        if not _is_daemon(pid, base):
            _clean(base)
            return None
        info = DaemonInfo(pid=pid, folder=base, started=float(record.get("started", 0)),
                          python=str(record.get("python", "")), fresh=record.get("digest") == digest(), runs=0)
        _stop_pid(pid, base)
        _clean(base)
        return info


def _stop_pid(pid: int, base: str) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.02)
    if _is_daemon(pid, base):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_daemon(pid: int, base: str) -> bool:
    """``pid`` is alive and is the daemon of ``base`` (not a process that got its number since)."""
    if pid <= 0 or not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().split(b"\0")
    except OSError:
        return _ask(base) is not None  # no /proc: the socket answers for it
    return MODULE.encode() in cmd and base.encode() in cmd


def _ask(base: str) -> dict | None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(paths.file(paths.SOCKET, base))
            protocol.send_request(sock, {"status": True}, [])
            return protocol.Answers(sock).next()
    except OSError:
        return None


def _record(base: str) -> dict | None:
    try:
        with open(paths.file(paths.RECORD, base), encoding="utf-8") as fh:
            record = json.load(fh)
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def _clean(base: str) -> None:
    for name in (paths.SOCKET, paths.RECORD):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(paths.file(name, base))


@contextlib.contextmanager
def _locked(base: str):
    with open(paths.file(paths.LOCK, base), "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read().strip().splitlines()[-lines:]
    except OSError:
        return "it wrote no log"
    return " / ".join(text) or "it wrote nothing"
