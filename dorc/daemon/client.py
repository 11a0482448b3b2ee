"""The ``dorc`` executable's side of the warm path: hand a local ``run``/``invoke`` to a running,
fresh daemon, forward signals to the run, and exit as it exited. Whenever it cannot (no daemon,
a stale one, a refused connection, a command line it does not take), it returns None and the
command runs cold, as if no daemon existed. Standard library only: it runs before anything heavy.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from . import paths, protocol
from .digest import digest, startup_environment

SWITCH = "DORC_DAEMON"  # off: never use a daemon
COMMANDS = ("run", "invoke")
COLD_FLAGS = ("--localstack", "--debug", "--watch")  # a run the daemon does not take
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
STALE = "dorc daemon is stale (dorc or its packages changed): this run is cold; a fresh daemon is starting"


def takes(argv: list[str]) -> bool:
    """Whether ``argv`` (without the program name) is a command the daemon runs."""
    if not argv or argv[0] not in COMMANDS:
        return False
    for token in argv[1:]:
        if token == "--":
            return False
        if token.split("=", 1)[0] in COLD_FLAGS:
            return False
    return os.environ.get(SWITCH, "").strip().lower() not in ("off", "0", "no", "false")


def warm_run(argv: list[str]) -> int | None:
    """Run ``argv`` (``sys.argv``) in the daemon; its exit code, or None: run it cold."""
    if not takes(argv[1:]):
        return None
    try:
        base = paths.folder()
        record_path = paths.file(paths.RECORD, base)
        if not os.path.exists(paths.file(paths.SOCKET, base)):
            return None
        with open(record_path, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError, ImportError):
        return None
    if record.get("digest") != digest():
        _dim(STALE)
        _restart(base)
        return None
    if record.get("startup", {}) != startup_environment():  # this Python would not start as the daemon's did
        return None
    relay = _Relay()
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(paths.file(paths.SOCKET, base))
        mask = os.umask(0o022)
        os.umask(mask)
        request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), "umask": mask,
                   "path0": sys.path[0] if sys.path else ""}
        protocol.send_request(sock, request, [0, 1, 2])
    except (OSError, ValueError):
        relay.restore()
        return None  # nothing ran yet: cold
    answers = protocol.Answers(sock)
    first = answers.next()
    if not first or "pid" not in first:
        relay.restore()
        return None
    relay.to(int(first["pid"]))
    return _end(answers)


class _Relay:
    """Signals a terminal would send to the run (Ctrl-C, a hang-up, kill), forwarded to the run's
    process group; one that comes before the run's pid is known is sent once it is."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pending: list[int] = []
        self._old = {}
        for signum in FORWARDED:
            try:
                self._old[signum] = signal.signal(signum, self._forward)
            except (OSError, ValueError):
                pass

    def _forward(self, signum, _frame) -> None:
        if self.pid is None:
            self.pending.append(signum)
            return
        try:
            os.killpg(self.pid, signum)
        except OSError:
            pass

    def to(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self._forward(signum, None)
        self.pending.clear()

    def restore(self) -> None:
        """Back to this process's own handlers (it runs cold), and what came meanwhile delivered to it."""
        for signum, old in self._old.items():
            signal.signal(signum, old)
        for signum in self.pending:
            os.kill(os.getpid(), signum)
        self.pending.clear()


def _end(answers: protocol.Answers) -> int:
    """The run's exit: its code, or the signal that killed it raised here too, as the shell expects."""
    end = answers.next()
    if end is None:
        sys.stderr.write("dorc daemon stopped during the run; run it again (dorc daemon status)\n")
        return 3
    if "signal" in end:
        signum = int(end["signal"])
        try:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        except (OSError, ValueError):
            pass
        return 128 + signum
    return int(end.get("exit", 3))


def _restart(base: str) -> None:
    """Replace the stale daemon in the background (``python -m dorc.daemon restart``: what
    ``dorc daemon start`` does, under its lock), so that this run is not kept waiting and the next
    one is warm again. Not waited for; its failure is in the daemon's log."""
    import subprocess

    try:
        with open(paths.file(paths.LOG, base), "ab") as log:
            subprocess.Popen([sys.executable, "-m", "dorc.daemon", "restart", base], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=log, cwd="/", start_new_session=True)
    except OSError:
        pass  # the next run says it again


def _dim(line: str) -> None:
    try:
        tty = os.isatty(2)
    except OSError:
        tty = False
    sys.stderr.write(f"\x1b[2m{line}\x1b[0m\n" if tty else line + "\n")
    sys.stderr.flush()
