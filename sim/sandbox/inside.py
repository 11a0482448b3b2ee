"""What both sandbox workers do inside the sandbox, before and around the runtime: the channel
to the process that started them, Lambda's file system and ``sys.path``, no semaphores, file
descriptors 1 and 2 drained into the log, and the sandbox's first process (an init).

Used by ``dorc_sim.sandbox.worker`` (local runs) and ``dorc_sim.localstack.worker`` (host-mode
LocalStack). Standard library only (and lean: each sandbox's start-up pays for its imports).
"""

from __future__ import annotations

import _thread
import errno
import json
import os
import signal
import sys
import threading

_send_lock = threading.Lock()
_channel = -1


def open_channel(fd: int) -> None:
    """Messages go to ``fd`` from now on (none when it is negative: a worker started by hand)."""
    global _channel
    _channel = fd


def send(message: dict) -> None:
    """One JSON line on the channel, whole even when threads send at once."""
    if _channel < 0:
        return
    data = (json.dumps(message) + "\n").encode()
    with _send_lock:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(_channel, view):]
            except InterruptedError:
                continue
            except OSError:  # the other side is gone: it ends this sandbox
                return


def private_fds(*fds: int) -> None:
    """The handler's subprocesses inherit none of these."""
    for fd in fds:
        if fd >= 0:
            os.set_inheritable(fd, False)


def enter(task_root: str, runtime_dir: str, *, namespaces: bool, tmp_mb: int, hide: list[str],
          keep: list[str] | None = None, host_sealed: bool = False) -> list[str]:
    """Lambda's file system (in namespaces), working folder, ``sys.path`` and semaphores; returns
    what could not be enforced. ``host_sealed``: the host's file systems are read-only already
    (a fork server did it once: ``isolation.seal_host``)."""
    missing: list[str] = []
    if namespaces:
        from . import isolation

        kept = [task_root, *own_files(runtime_dir), *(keep or [])]
        missing = isolation.enter(isolation.Mounts(task_root=task_root, tmp_mb=tmp_mb, keep=kept, hide=hide,
                                                   sealed=host_sealed))
    os.chdir(task_root)
    # Lambda's sys.path: the task root first, then the runtime's SDK, then the standard library
    rest = [p for p in sys.path if p and p not in (runtime_dir, task_root)]
    sys.path[:] = [task_root, *([runtime_dir] if runtime_dir else []), *rest]
    no_semaphores()
    return missing


_own_files: dict[str, list[str]] = {}


def own_files(runtime_dir: str) -> list[str]:
    """What the worker itself needs of the host's ``/tmp`` (its Python, the runtime dir and what
    it links to): resolved once per process, so a fork server's sandboxes do not look again."""
    if runtime_dir not in _own_files:
        from . import isolation

        paths = [sys.prefix, sys.base_prefix, os.path.dirname(sys.executable), *(p for p in sys.path if p)]
        if runtime_dir:
            paths.append(runtime_dir)
            for name in os.listdir(runtime_dir):  # the SDK and the simulator are links to dorc's files
                paths.append(os.path.join(runtime_dir, name))
        _own_files[runtime_dir] = isolation.under_tmp(paths)
    return _own_files[runtime_dir]


def no_semaphores() -> None:
    """Lambda has no /dev/shm: multiprocessing's Pool, Queue and Lock fail there with
    ``OSError: [Errno 38] Function not implemented`` (sem_open), while Process and Pipe work."""
    try:
        import _multiprocessing
    except ImportError:
        return
    real = _multiprocessing.SemLock

    class SemLock(real):  # type: ignore[misc, valid-type]
        def __new__(cls, *args, **kwargs):
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    SemLock.__module__ = real.__module__
    _multiprocessing.SemLock = SemLock


class FdLog:
    """What C code and children write straight to file descriptors 1 and 2 becomes log lines: a
    pipe on both, drained by a thread. ``sync()`` waits until everything written before it is in
    the log (a marker line through the same pipe), so a child's output comes before END."""

    MARKER = "\x00dorc-sync-%d\x00"

    def __init__(self, emit):
        import codecs

        self._emit = emit
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        self._write_fd = write_fd  # kept (not inheritable) to write the markers
        self._seen = threading.Condition()
        self._synced = 0
        self._asked = 0
        # not threading.Thread: its start() waits until the thread runs (a sandbox's start-up),
        # and the handler's threading.enumerate() lists its own threads only, as in Lambda
        _thread.start_new_thread(self._drain, (read_fd,))

    def _drain(self, fd: int) -> None:
        pending = ""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            pending += self._decoder.decode(chunk, final=not chunk)
            *whole, pending = pending.split("\n")
            for line in whole:
                self._line(line)
            if not chunk:
                break
        if pending:
            self._emit(pending)

    def _line(self, line: str) -> None:
        if "\x00dorc-sync-" in line:
            head, _, rest = line.partition("\x00dorc-sync-")
            if head:
                self._emit(head)  # the handler's last line had no newline
            with self._seen:
                self._synced = max(self._synced, int(rest.rstrip("\x00") or 0))
                self._seen.notify_all()
            return
        self._emit(line)

    def sync(self, timeout: float = 2.0) -> None:
        with self._seen:
            self._asked += 1
            number = self._asked
        os.write(self._write_fd, (self.MARKER % number + "\n").encode())
        with self._seen:
            self._seen.wait_for(lambda: self._synced >= number, timeout)


def fork_runtime(run, before=None) -> int:
    """Fork; the child calls ``before`` then ``run`` (the runtime) and ends with it: 0, or 70 when
    the runtime itself failed, its traceback then on the worker's own fd 2 (``run`` makes fd 2
    the function's log). Returns the child's pid, in the parent."""
    child = os.fork()
    if child:
        return child
    if before is not None:
        before()
    diagnostics = os.dup(2)
    os.set_inheritable(diagnostics, False)
    try:
        run()
    except BaseException:  # noqa: BLE001 - the worker itself failed: its starter shows why
        import traceback

        os.write(diagnostics, traceback.format_exc().encode("utf-8", "replace"))
        os._exit(70)
    os._exit(0)


def init(child: int) -> None:
    """The sandbox's first process: reap every orphan; when the runtime (``child``) ends, say how
    and end as it did (in a PID namespace, everything still running ends with this process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == child:
            if os.WIFSIGNALED(status):
                send({"t": "exit", "signal": os.WTERMSIG(status)})
                os._exit(128 + os.WTERMSIG(status))
            send({"t": "exit", "status": os.WEXITSTATUS(status)})
            os._exit(os.WEXITSTATUS(status))
