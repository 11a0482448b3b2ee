"""The daemon process (``python -m dorc.daemon serve FOLDER``): import what a local run imports,
then fork a child per request that becomes that command exactly — its working folder, its
environment, its stdin/stdout/stderr, its ``sys.argv`` — and runs ``dorc.cli.app.main``.

It is one thread: a fork copies nothing but this state, and the child is a fresh process whose
run reads the config repo anew. It imports no moto (the local AWS server is its own process).
The child leads its own session, so the client's forwarded Ctrl-C reaches it and everything it
started, as a terminal's would.
"""

from __future__ import annotations

import atexit
import gc
import io
import json
import os
import select
import signal
import socket
import sys
import threading
import time

from . import botodata, paths, protocol
from .digest import digest, startup_environment
from .sandboxes import WarmServers

#: what ``dorc run --local`` imports (the rest follows from these); never the config repo's code
PRELOAD = (
    "dorc.cli.app", "dorc.cli.pipelines", "dorc.cli.scaffold", "dorc.api", "dorc.render", "dorc.records",
    "dorc.planning", "dorc.plan", "dorc.pipeline", "dorc.loader", "dorc.validate", "dorc.import_check",
    "dorc.taskroot", "dorc.package", "dorc.project", "dorc.triggers", "dorc.resume", "dorc.describe",
    "dorc.targets.local", "dorc.targets.asl", "dorc.targets.deployments",
    "dorc_sim.aws", "dorc_sim.runtime", "dorc_sim.fixtures", "dorc_sim.awsserver.control",
    "dorc_sim.sandbox.launcher", "dorc_sim.sandbox.forkserver", "dorc_sim.sandbox.interpreters",
    "dorc_sim.sandbox.isolation", "dorc_sim.sandbox.sdk", "dorc_sim.sandbox.outside",
    "dorc.cli.lean", "boto3", "boto3.s3.transfer", "boto3.s3.inject", "botocore.session", "pydantic", "rich.console",
    "rich.table", "typer", "typer._click.decorators", "http.server", "encodings.idna", "pkgutil",
)


def preload() -> list[str]:
    """Import ``PRELOAD``; what could not be imported (a run imports it itself, as cold)."""
    import importlib

    missing = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a module a run may never need: the run says it if it does
            missing.append(f"{name}: {type(exc).__name__}: {exc}")
    return missing


class Daemon:
    def __init__(self, base: str):
        self.base = base
        self.socket_path = paths.file(paths.SOCKET, base)
        self.record_path = paths.file(paths.RECORD, base)
        self.started = time.time()
        self.digest = digest()  # before the imports: what it is about to load
        self.runs: dict[int, socket.socket] = {}  # child pid -> its client's connection
        self.children: set[int] = set()  # runs not reaped yet (a run whose client went is not in ``runs``)
        self.stopping = False
        self.warm = WarmServers()
        self.socket_inode = 0

    def serve(self) -> None:
        missing = preload()
        unshared = botodata.share()
        if unshared:
            missing.append(unshared)
        for line in missing:
            sys.stderr.write(f"not preloaded: {line}\n")
        if threading.active_count() > 1:
            sys.stderr.write("warning: a preloaded module started a thread; forks do not copy it\n")
        self.warm.start()
        self.warm.wait_ready()
        for note in self.warm.notes:
            sys.stderr.write(f"{note}\n")
        gc.collect()
        gc.freeze()  # what it loaded stays out of every child's collections (and its pages shared)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        listening = self._listen()
        self._write_record()
        sys.stderr.write(f"dorc daemon {os.getpid()} serving on {self.socket_path}\n")
        sys.stderr.flush()
        try:
            while not (self.stopping and not self.children):
                if self.stopping and listening is not None:
                    self._close_listening(listening)
                    listening = None
                watched = [wake_r, *self.runs.values(), *([listening] if listening is not None else [])]
                try:
                    ready, _, _ = select.select(watched, [], [], 1.0)
                except InterruptedError:
                    ready = []
                if wake_r in ready:
                    _drain(wake_r)
                self._reap()
                if not self.stopping:
                    self.warm.restart_dead()
                if listening is not None and listening in ready:
                    self._accept(listening, wake_r, wake_w)
                for pid, conn in list(self.runs.items()):
                    if conn in ready:
                        self._client_gone(pid, conn)
        finally:
            if listening is not None:
                self._close_listening(listening)
            self.warm.close()

    def _listen(self) -> socket.socket:
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.socket_path)  # 0600 from the start, in a 0700 folder
        finally:
            os.umask(old)
        os.chmod(self.socket_path, 0o600)
        self.socket_inode = os.stat(self.socket_path).st_ino
        sock.listen(64)
        return sock

    def _close_listening(self, sock: socket.socket) -> None:
        """No more runs: the socket (and the record, if still this daemon's) go."""
        sock.close()
        for path in (self.socket_path, self.record_path):
            try:
                if path == self.record_path and _recorded_pid(path) != os.getpid():
                    continue  # a newer daemon's
                if path == self.socket_path and os.stat(path).st_ino != self.socket_inode:
                    continue
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _write_record(self) -> None:
        record = {"pid": os.getpid(), "digest": self.digest, "python": sys.executable, "started": self.started,
                  "socket": self.socket_path, "startup": startup_environment()}
        temporary = f"{self.record_path}.{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(temporary, self.record_path)

    def _stop(self, *_args) -> None:
        self.stopping = True

    def _accept(self, listening: socket.socket, wake_r: int, wake_w: int) -> None:
        try:
            conn, _ = listening.accept()
        except OSError:
            return
        conn.settimeout(5.0)
        try:
            request, fds = protocol.receive_request(conn)
        except (OSError, ValueError) as exc:
            protocol.answer(conn, {"error": f"{type(exc).__name__}: {exc}"})
            conn.close()
            return
        if request.get("status"):
            protocol.answer(conn, {"pid": os.getpid(), "runs": len(self.runs), "started": self.started,
                                   "digest": self.digest, "python": sys.executable, "sandboxes": self.warm.pythons})
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        if len(fds) != protocol.STDIO or not isinstance(request.get("argv"), list):
            protocol.answer(conn, {"error": "a run needs its command line and stdin, stdout and stderr"})
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        channels = self.warm.channels()
        try:
            pid = os.fork()
        except OSError as exc:
            protocol.answer(conn, {"error": f"fork: {exc}"})
            conn.close()
            for fd in fds:
                os.close(fd)
            for channel in channels.values():
                channel.close()
            return
        if pid == 0:
            self.warm.in_child(channels)
            _child(request, fds, [listening, conn, *self.runs.values()], [wake_r, wake_w])  # never returns
        for fd in fds:
            os.close(fd)
        for channel in channels.values():
            channel.close()
        conn.settimeout(None)
        self.runs[pid] = conn
        self.children.add(pid)
        protocol.answer(conn, {"pid": pid})
        sys.stderr.write(f"run {pid}: {' '.join(map(str, request['argv'][1:]))}\n")
        sys.stderr.flush()

    def _reap(self) -> None:
        """Runs that ended: their clients get the exit status. Only the runs are reaped here (the
        fork servers are ``subprocess``'s)."""
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                self.children.discard(pid)
                continue
            if done == 0:
                continue
            self.children.discard(pid)
            conn = self.runs.pop(pid, None)
            if conn is None:
                continue
            if os.WIFSIGNALED(status):
                protocol.answer(conn, {"signal": os.WTERMSIG(status)})
            else:
                protocol.answer(conn, {"exit": os.waitstatus_to_exitcode(status)})
            conn.close()

    def _client_gone(self, pid: int, conn: socket.socket) -> None:
        """The client's connection is readable: it closed (killed): hang its run up, as a closed terminal would."""
        try:
            data = conn.recv(1, socket.MSG_PEEK)
        except OSError:
            data = b""
        if data:
            conn.recv(4096)  # nothing is expected from a client after its request
            return
        try:
            os.killpg(pid, signal.SIGHUP)
        except OSError:
            pass
        self.runs.pop(pid, None)
        conn.close()


def _child(request: dict, fds: list[int], sockets: list[socket.socket], pipes: list[int]) -> None:
    """Become the command: then run it and exit with its code. Never returns."""
    code = 3
    try:
        signal.set_wakeup_fd(-1)
        for sock in sockets:
            sock.close()
        for fd in pipes:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        os.setsid()  # its own group: the client signals it and what it starts, as a terminal would
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        if isinstance(request.get("umask"), int):
            os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv[:] = request["argv"]
        if isinstance(request.get("path0"), str) and sys.path:
            sys.path[0] = request["path0"]  # the script's folder (or the working one), not the daemon's
        _streams()
        code = _run()
    except BaseException:  # noqa: BLE001 - the command could not even start: say why
        import traceback

        try:
            os.write(2, f"dorc daemon: could not run the command:\n{traceback.format_exc()}".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _run() -> int:
    """``dorc.cli.app.main`` as the ``dorc`` executable runs it, its exit as a process's would be."""
    from ..cli.app import main

    code: object = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    try:
        atexit._run_exitfuncs()  # what a process's end runs (os._exit runs none)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    return int(code) & 0xFF


def _streams() -> None:
    """Python's standard streams on the new fds 0, 1 and 2, as a process started on them makes
    them (line-buffered on a terminal, stderr always)."""
    encoding = sys.stdout.encoding or "utf-8"
    errors = sys.stdout.errors or "strict"
    def raw(fd: int, mode: str):
        return open(fd, mode, closefd=False)

    sys.stdin = sys.__stdin__ = io.TextIOWrapper(raw(0, "rb"), encoding=encoding, errors=errors)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(raw(1, "wb"), encoding=encoding, errors=errors,
                                                   line_buffering=os.isatty(1))
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(raw(2, "wb"), encoding=encoding, errors="backslashreplace",
                                                   line_buffering=True)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass


def _recorded_pid(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return int(json.load(fh).get("pid"))
    except (OSError, ValueError, TypeError):
        return None


def main(argv: list[str]) -> None:
    base = argv[0] if argv else paths.private_folder()
    if sys.path:  # ``-m`` put its working folder ("/") first: the executable's, as a console script has
        sys.path[0] = os.path.dirname(sys.executable)
    Daemon(base).serve()
