"""A function's execution environment: the process (tree) that runs its handler, never dorc's.

Started by ``dorc_sim.sandbox.launcher`` as ``<the runtime's python> -I -S worker.py SETTINGS_FD
CHANNEL_FD`` in the function's task root, with Lambda's environment only. It reads its settings
(the first JSON line on SETTINGS_FD), makes the file system Lambda's (``isolation.enter`` when in
namespaces), then forks: the child is the runtime (``FunctionRuntime``, one call per JSON line on
SETTINGS_FD), the parent stays as the sandbox's first process, reaps orphans as an init does and
tells dorc how the runtime ended (an exit status, a signal) when it ends unasked.

Everything the runtime says goes to dorc as JSON lines on CHANNEL_FD, in order: ``ready`` (with
what the sandbox could not enforce), ``log`` (each line as CloudWatch frames it), ``init`` (the
Init Duration: the invocation's clock starts then), ``done`` (the result), ``exit``.

Standard library and ``dorc_sim`` only: it runs on the function's Python, which is not dorc's.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading

_send_lock = threading.Lock()
_channel = -1


def send(message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    with _send_lock:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(_channel, view):]
            except InterruptedError:
                continue


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


class _FdLog:
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
        threading.Thread(target=self._drain, args=(read_fd,), daemon=True, name="fd-log").start()

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
        self._asked += 1
        number = self._asked
        os.write(self._write_fd, (self.MARKER % number + "\n").encode())
        with self._seen:
            self._seen.wait_for(lambda: self._synced >= number, timeout)


def _runtime(settings: dict, commands) -> None:
    from dorc_sim.runtime import FunctionRuntime, FunctionSpec

    attached = settings.get("attached", False)

    def emit(line: str) -> None:
        send({"t": "log", "l": line})

    fd_log = None if attached else _FdLog(emit)  # fds 1 and 2: their lines join the log, as in Lambda
    if attached:  # the terminal's: each line shows at once (the sandbox may be killed, not exited)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
    spec = FunctionSpec(**settings["spec"])
    runtime = FunctionRuntime(spec, emit, isolate=False, log_stream=settings["log_stream"],
                              timeout_outside=True, attached=attached,
                              on_init=lambda ms: send({"t": "init", "ms": ms}),
                              flush=fd_log.sync if fd_log is not None else None, keep_logs=False)
    for line in commands:
        call = json.loads(line)
        result = runtime.invoke(call["event"], request_id=call["id"])
        error = result.error
        send({
            "t": "done", "id": result.request_id,
            "payload": result.payload.decode("utf-8", "surrogateescape") if result.payload is not None else None,
            "error": None if error is None else {**error.to_lambda(), "logLines": error.log_lines},
            "duration_ms": result.duration_ms, "init_ms": result.init_duration_ms,
            "max_memory_mb": result.max_memory_mb,
        })
        if error is not None and error.type == "Runtime.ExitError":
            os._exit(0)  # the runtime process ended (sys.exit): a new environment next time


def _init(child: int) -> None:
    """The sandbox's first process: reap every orphan; when the runtime ends, say how, and end
    the sandbox (in a PID namespace, everything still running ends with this process)."""
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
            else:
                send({"t": "exit", "status": os.WEXITSTATUS(status)})
            os._exit(0)


def main(argv: list[str]) -> None:
    global _channel
    settings_fd, _channel = int(argv[1]), int(argv[2])
    for fd in (settings_fd, _channel):  # the handler's subprocesses get neither
        os.set_inheritable(fd, False)
    commands = os.fdopen(settings_fd, "r", encoding="utf-8")
    settings = json.loads(commands.readline())
    runtime_dir = settings["runtime_dir"]
    sys.path.insert(0, runtime_dir)
    from dorc_sim.sandbox import isolation

    missing: list[str] = []
    task_root = settings["spec"]["source_dir"]
    if settings.get("namespaces"):
        keep = [task_root, runtime_dir, sys.prefix, sys.base_prefix, os.path.dirname(sys.executable),
                *(p for p in sys.path if p), *settings.get("keep", [])]
        for name in os.listdir(runtime_dir):  # the SDK and the simulator are links to dorc's files
            keep.append(os.path.realpath(os.path.join(runtime_dir, name)))
        missing = isolation.enter(isolation.Mounts(task_root=task_root, tmp_mb=settings["tmp_mb"], keep=keep,
                                                   hide=settings.get("hide", [])))
    os.chdir(task_root)
    if "LC_CTYPE" not in settings["spec"]["environment"]:
        os.environ.pop("LC_CTYPE", None)  # Python's own locale coercion (no en_US.UTF-8 here), not Lambda's
    # Lambda's sys.path: the task root first, then the runtime's SDK, then the standard library
    sys.path[:] = [task_root, runtime_dir, *(p for p in sys.path if p and p != runtime_dir)]
    no_semaphores()
    send({"t": "ready", "missing": missing, "python": "%d.%d.%d" % sys.version_info[:3], "pid": os.getpid()})
    child = os.fork()
    if child == 0:
        diagnostics = os.dup(2)  # dorc's record of the worker's own failures (fd 2 becomes the log)
        os.set_inheritable(diagnostics, False)
        try:
            _runtime(settings, commands)
        except BaseException:  # noqa: BLE001 - the runtime itself failed: dorc shows this
            import traceback

            os.write(diagnostics, traceback.format_exc().encode("utf-8", "replace"))
            os._exit(70)
        os._exit(0)
    _init(child)


if __name__ == "__main__":
    main(sys.argv)
