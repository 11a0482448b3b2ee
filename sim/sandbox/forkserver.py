"""dorc's side of the fork servers (``dorc_sim.sandbox.zygote``): start one per runtime Python
when a run first needs it, ask it for sandboxes, watch and kill what it forked.

A sandbox started by a fork server costs a fork and its own mounts instead of an interpreter's
start-up, the runtime's import and a remount of every host file system: a hop in a chain of
trivial functions goes from tens of milliseconds to a few. It is used where it is exactly a
started worker's equal: the full sandbox (Linux namespaces), not ``--debug`` (attached to the
terminal), and a function whose environment sets none of the variables a process reads only at
its start (the locale's, the dynamic linker's, the allocator's: ``STARTUP_VARIABLES``); every
other sandbox is started as before. ``DORC_FORK_SERVER=off`` starts every sandbox as before
(to compare, or to rule the fork server out); ``DORC_FORK_SERVER=always`` forks every sandbox it
can, the first ones too, waiting for the server's start-up (to check that a fork is a started
worker's equal: the sandbox fidelity tests pass both ways).

A run's first sandboxes neither wait for a server's start-up nor share the machine with it: a
server starts when a sandbox on its Python is asked for once another sandbox of the run is
ready (so not for a run of one or two functions), and that sandbox's request waits in the
server's socket meanwhile; the ones before start as before. When a fork server cannot start or
dies, its sandboxes fail to become ready and the launcher starts them as before; the server is
not asked again in that run.

A ``dorc daemon`` keeps long-lived servers instead (one per runtime Python, the AWS SDK imported:
``ForkServer(..., preload=...)``); each run it forks is handed a channel to each (``adopt``), so
its sandboxes on those Pythons are forks from the first one on, with no start-up to wait for.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .isolation import Isolation, command_prefix

WORKER = Path(__file__).with_name("worker.py")
ANSWER_LIMIT = 30.0  # seconds for a fork server to answer (its first start can be slow)
# variables a process reads once, when it starts: a fork would keep the server's
STARTUP_VARIABLES = ("LANG", "GLIBC_TUNABLES")
STARTUP_PREFIXES = ("LC_", "LD_", "MALLOC_")


#: long-lived servers' channels this process was handed (``dorc daemon``): (python, runtime dir) -> socket
_warm: dict[tuple[str, str], socket.socket] = {}


def adopt(channels: dict[tuple[str, str], socket.socket]) -> None:
    """Use these channels to long-lived fork servers (a daemon's, with the AWS SDK imported) for
    this process's sandboxes on those Pythons, instead of starting a server per run."""
    _warm.update(channels)


class ForkServerError(RuntimeError):
    """The fork server is gone: the launcher starts the sandbox as before."""


def _switch() -> str:
    return os.environ.get("DORC_FORK_SERVER", "").strip().lower()


def enabled(isolation: Isolation) -> bool:
    return (isolation.namespaces and sys.platform == "linux" and hasattr(os, "pidfd_open")
            and _switch() not in ("off", "0", "no", "false"))


def server_environment(python: str) -> dict[str, str]:
    """What the server starts with: what its sandboxes' environments share at a process's start."""
    return {"LANG": "en_US.UTF-8", "TZ": ":UTC",
            "PATH": f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin/:/bin:/opt/bin"}


def startup_alike(env: dict[str, str], server_env: dict[str, str]) -> bool:
    """True when a process started with ``env`` would have started as the server did."""
    def startup(name: str) -> bool:
        return name in STARTUP_VARIABLES or name.startswith(STARTUP_PREFIXES)

    names = {k for k in env if startup(k)} | {k for k in server_env if startup(k)}
    return all(env.get(k) == server_env.get(k) for k in names)


class ForkServers:
    """A run's fork servers, one per (Python, runtime dir), started on first use and ended with
    the run (``close``)."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, str], ForkServer] = {}
        self._asked: dict[tuple[str, str], int] = {}
        self._one_ready = False  # a sandbox of the run is ready: its start-up no longer competes
        self._lock = threading.Lock()

    def server(self, python: str, runtime_dir: str, isolation: Isolation) -> ForkServer | None:
        """The server to fork a sandbox from; None (the sandbox starts on its own) for the first
        sandbox on ``python`` and until a sandbox of the run is ready, after the server failed,
        or where a fork server is not used. A server that is still starting is returned: its
        requests wait in its socket."""
        key = (python, runtime_dir)
        always = _switch() == "always"
        with self._lock:
            self._asked[key] = asked = self._asked.get(key, 0) + 1
            warm = key in _warm  # a long-lived server: no start-up to wait for or compete with
            if key not in self._servers and not always and not warm and (asked < 2 or not self._one_ready):
                return None
        server = self.start(python, runtime_dir, isolation)
        if server is not None and always:
            server.wait_ready()
        return server if server is not None and not server.failed else None

    def one_ready(self) -> None:
        """A sandbox of the run is ready (a server started now no longer slows the run's first)."""
        self._one_ready = True

    def start(self, python: str, runtime_dir: str, isolation: Isolation) -> ForkServer | None:
        """The server for ``python``, started now if it is not yet."""
        if not enabled(isolation):
            return None
        key = (python, runtime_dir)
        with self._lock:
            server = self._servers.get(key)
            if server is None and key in _warm:
                server = self._servers[key] = ForkServer(python, runtime_dir, channel=_warm.pop(key))
            if server is None:
                try:
                    server = self._servers[key] = ForkServer(python, runtime_dir)
                except OSError:
                    return None
        return server

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()


class ForkServer:
    """One fork server process; ``fork`` asks it for a sandbox, in order, without waiting.
    ``channel``: a connection to a long-lived server another process started (``adopt``): no
    process of its own. ``preload``: modules the server imports first (a long-lived server's)."""

    def __init__(self, python: str, runtime_dir: str, *, channel: socket.socket | None = None,
                 preload: tuple[str, ...] = ()):
        self.python = python
        self.environment = server_environment(python)
        self.failed = False
        self._lock = threading.Lock()
        self._hello = False  # the server said it is ready
        self._sent = 0  # requests sent
        self._answered = 0  # answers read
        self._answers: dict[int, int | None] = {}  # request number -> a pidfd of the sandbox's first process
        self._ending: list[Forked] = []  # killed, not waited for yet
        self._diagnostics = tempfile.TemporaryFile()
        self._proc: subprocess.Popen | None = None
        self.preloaded: list[str] = []  # top-level packages a long-lived server imported (its hello says)
        if channel is not None:
            self._socket = channel
            self._socket.settimeout(ANSWER_LIMIT)
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [*command_prefix(Isolation(True)), python, "-I", "-S", str(WORKER),
                 "--zygote", str(theirs.fileno()), runtime_dir, *(["--preload", ",".join(preload)] if preload else [])],
                pass_fds=(theirs.fileno(),), env=self.environment, cwd="/", stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self._diagnostics, start_new_session=True)
        except OSError:
            ours.close()
            self._diagnostics.close()
            raise
        finally:
            theirs.close()
        self._socket = ours
        self._socket.settimeout(ANSWER_LIMIT)

    def fork(self, env: dict[str, str], cwd: str, fds: tuple[int, int, int]) -> Forked:
        """A sandbox: its environment, working folder, and settings, channel and diagnostics fds
        (dorc's copies stay open: the caller closes them)."""
        request = json.dumps({"env": env, "cwd": cwd}).encode()
        with self._lock:
            if self.failed:
                raise ForkServerError("the fork server is gone")
            try:
                socket.send_fds(self._socket, [request], list(fds))
            except OSError as exc:
                self.failed = True
                raise ForkServerError(f"the fork server is gone: {exc}") from None
            self._sent += 1
            return Forked(self, self._sent)

    def ready(self) -> bool:
        """Whether it said it serves (its start-up is over); never waits."""
        with self._lock:
            if not self._hello and not self.failed and select.select([self._socket], [], [], 0)[0]:
                self._read_one()
            return self._hello and not self.failed

    def wait_ready(self, timeout: float = ANSWER_LIMIT) -> bool:
        """Wait for its start-up to be over (``DORC_FORK_SERVER=always``, tests)."""
        deadline = time.monotonic() + timeout
        while not self.ready() and not self.failed and time.monotonic() < deadline:
            select.select([self._socket], [], [], max(0.0, deadline - time.monotonic()))
        return self.ready()

    def _read_one(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self._socket, 65536, 1)
        except OSError:  # a timeout, or the server is gone
            data, fds = b"", []
        if not data:
            self.failed = True
            return
        message = json.loads(data)
        if message.get("t") == "hello":
            self._hello = True
            self.preloaded = list(message.get("preloaded", []))
            self.failed = self.failed or bool(message.get("error"))
            return
        self._answered += 1
        self._answers[self._answered] = fds[0] if fds and not message.get("error") else None

    def answer(self, number: int) -> int | None:
        """A pidfd of request ``number``'s sandbox; None when the server did not fork it."""
        with self._lock:
            while self._answered < number and not self.failed:
                self._read_one()
            return self._answers.pop(number, None)

    def said(self) -> str:
        try:
            self._diagnostics.seek(0)
            return self._diagnostics.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def ending(self, forked: Forked) -> None:
        with self._lock:
            self._ending = [f for f in self._ending if not f.ended(0.0)]  # let go of the ones gone
            self._ending.append(forked)

    def alive(self) -> bool:
        if self._proc is None:
            return not self.failed
        return self._proc.poll() is None

    def open_channel(self) -> socket.socket:
        """A new connection to this (long-lived) server, for another process's sandboxes
        (``adopt``); the server says hello on it first."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                socket.send_fds(self._socket, [json.dumps({"t": "channel"}).encode()], [theirs.fileno()])
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def forget(self) -> None:
        """Let go of this process's copies of the server's fds, leaving the server alone (a forked
        child of the process that started it)."""
        self.failed = True
        for closable in (self._socket, self._diagnostics):
            try:
                closable.close()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        """Its end ends every sandbox it forked; waits for the ones killed."""
        with self._lock:
            ending, self._ending = self._ending, []
        deadline = time.monotonic() + 5.0
        for forked in ending:
            forked.ended(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self.failed = True
            try:
                self._socket.close()
            except OSError:
                pass
            for pidfd in self._answers.values():
                if pidfd is not None:
                    os.close(pidfd)
            self._answers.clear()
        if self._proc is None:  # a channel to a long-lived server: it goes on serving others
            self._diagnostics.close()
            return
        try:  # at its socket's end it ends; one still starting is not waited for
            self._proc.wait(timeout=1.0 if self._hello else 0.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # unshare --kill-child: the server, pid 1, and every sandbox with it
            self._proc.wait()
        self._diagnostics.close()


class Forked:
    """A sandbox a fork server started, by its first process (pid 1 of its PID namespace):
    killing it ends every process of the sandbox."""

    def __init__(self, server: ForkServer, number: int):
        self._server = server
        self._number = number
        self._resolved = False
        self._pid: int | None = None
        self._pidfd: int | None = None
        self._killed = False

    @property
    def pid(self) -> int | None:
        """Its pid as dorc sees it (for /proc); None when the server did not fork it."""
        if not self._resolved:
            self._resolved = True
            self._pidfd = self._server.answer(self._number)
            self._pid = _pid_of(self._pidfd) if self._pidfd is not None else None
            if self._pid is None and self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self._pid

    @property
    def server(self) -> ForkServer:
        return self._server

    def kill(self, wait: float = 5.0) -> bool:
        """SIGKILL the sandbox; False when it did not end within ``wait`` seconds (0: do not
        wait; the server waits for it when it closes)."""
        if self.pid is None or self._pidfd is None:
            return True
        if not self._killed:
            self._killed = True
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if wait <= 0:
            self._server.ending(self)
            return False
        return self.ended(wait)

    def ended(self, wait: float) -> bool:
        """Wait up to ``wait`` seconds for its end; let go of it once it ended or was waited
        for (``wait`` 0: only look)."""
        if self._pidfd is None:
            return True
        done = bool(select.select([self._pidfd], [], [], wait)[0])
        if done or wait > 0:
            os.close(self._pidfd)
            self._pidfd = None
            self._pid = None
        return done


def _pid_of(pidfd: int) -> int | None:
    """The pid a pidfd refers to, as this process's namespace numbers it (its fdinfo says)."""
    try:
        with open(f"/proc/self/fdinfo/{pidfd}") as fh:
            for line in fh:
                if line.startswith("Pid:"):
                    pid = int(line.split()[1])
                    return pid if pid > 0 else None
    except (OSError, ValueError, IndexError):
        pass
    return None
