"""dorc's side of a sandbox: start the worker, hand it invocations, enforce Lambda's limits.

The limits are enforced from outside, where the handler cannot reach them: at the deadline, or
past the function's memory size, the whole sandbox is killed (every process it started, whatever
the handler catches or whichever signals it handles) and the call fails with Lambda's type and
wording. The Init phase (importing the module) is not charged to the timeout: the worker says
when it ends, and the invocation's clock starts then (Lambda allows Init 10 s; past that the rest
of it counts against the timeout, as Lambda's suppressed init does).

One ``Sandbox`` is one execution environment: warm for the next call of the same function in
the run, replaced by a new one (a cold start) after a crash, a timeout or an out-of-memory kill.
Where a fork server can start it (``dorc_sim.sandbox.forkserver``: the full sandbox, not
attached to the terminal) it is a fork of the server, which costs a few milliseconds instead of
an interpreter's start-up; otherwise, or when the server fails, the worker starts on its own.
"""

from __future__ import annotations

import _thread
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..runtime import (
    FunctionSpec,
    InvocationError,
    InvocationResult,
    exit_error,
    iso_now,
    lambda_environment,
    report_line,
    timeout_text,
)
from .forkserver import Forked, ForkServerError, ForkServers, startup_alike
from .isolation import Isolation, command_prefix
from .outside import INIT_LIMIT, exit_words, kill, messages

WORKER = Path(__file__).with_name("worker.py")
READY_LIMIT = 30.0  # seconds for the worker to start (an interpreter's first start can be slow)
MEMORY_POLL = 0.05  # seconds between two looks at the sandbox's memory
# log lines written before a timeout and not shown yet: shown at most this many, for this long
BACKLOG_SHOWN, BACKLOG_SECONDS = 1000, 1.0

class SandboxError(RuntimeError):
    """The sandbox could not start (not the handler's failure): dorc reports it as such."""


@dataclass
class SandboxSpec:
    """One function's sandbox: what runs (``function``: its task root is ``source_dir``), on
    which Python, and what else its process environment holds (``access``: how handlers reach
    the local AWS)."""

    function: FunctionSpec
    python: str
    runtime_dir: str
    ephemeral_mb: int = 512
    access: dict[str, str] = field(default_factory=dict)
    attached: bool = False  # dorc run --debug: the terminal's stdin/stdout/stderr, no timeout
    hide: list[str] = field(default_factory=list)


def process_environment(spec: SandboxSpec, log_stream: str) -> dict[str, str]:
    """Lambda's variables, the function's own, and how to reach AWS: nothing of dorc's host."""
    fn = spec.function
    return {
        **lambda_environment(fn, log_stream),
        "LAMBDA_RUNTIME_DIR": spec.runtime_dir,
        "PATH": f"{os.path.dirname(spec.python)}:/usr/local/bin:/usr/bin/:/bin:/opt/bin",  # Lambda's, its Python first
        **spec.access,
        **fn.environment,  # the function's own win, as in lambda_environment
    }


class Sandbox:
    """One function's execution environment; ``sink`` hears each log line as it comes."""

    def __init__(self, spec: SandboxSpec, isolation: Isolation, sink: Callable[[str], None] | None = None,
                 servers: ForkServers | None = None):
        """``servers``: the run's fork servers, to start this sandbox by a fork where one can."""
        self.spec = spec
        self.isolation = isolation
        self._servers = servers
        self.missing: list[str] = list(isolation.missing)  # what this sandbox could not enforce
        self.python_version: str | None = None
        self._sink = sink or (lambda line: None)
        self._proc: subprocess.Popen | Forked | None = None
        self._forked = False  # started by a fork server (else: a worker started on its own)
        self._warm = False  # the handler's module is imported (the next call has no Init)
        self._ready = False  # the worker said it is ready
        self._commands = None
        self._messages: queue.Queue = queue.Queue()
        self._diagnostics = None
        self._tmpdir: str | None = None  # the portable sandbox's TMPDIR
        self._log_stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[$LATEST]{uuid.uuid4().hex}"

    @property
    def forked(self) -> bool:
        """Its worker is a fork of a fork server (``dorc_sim.sandbox.zygote``), not started on its own."""
        return self._forked

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker without waiting for it (a run starts the next function's sandbox while
        the current one runs); ``invoke`` waits until it is ready."""
        if self._proc is None:
            self._spawn()

    def _server(self):
        spec = self.spec
        if self._servers is None or spec.attached:
            return None
        return self._servers.server(spec.python, spec.runtime_dir, self.isolation)

    def _spawn(self, on_its_own: bool = False) -> None:
        spec = self.spec
        settings_r, settings_w = os.pipe()
        channel_r, channel_w = os.pipe()
        self._diagnostics = tempfile.TemporaryFile()
        fn = spec.function.as_dict()
        settings = {
            "spec": fn, "log_stream": self._log_stream, "runtime_dir": spec.runtime_dir,
            "namespaces": self.isolation.namespaces, "tmp_mb": spec.ephemeral_mb, "hide": spec.hide,
            "attached": spec.attached,
        }
        env = process_environment(spec, self._log_stream)
        if not self.isolation.namespaces:  # no private /tmp: at least Python's tempfile is private
            self._tmpdir = tempfile.mkdtemp(prefix="dorc-sandbox-")
            env["TMPDIR"] = self._tmpdir
        server = None if on_its_own else self._server()
        self._proc = None
        if server is not None and startup_alike(env, server.environment):
            try:
                self._proc = server.fork(env, spec.function.source_dir,
                                         (settings_r, channel_w, self._diagnostics.fileno()))
            except ForkServerError:
                self._proc = None
        self._forked = self._proc is not None
        if self._proc is None:
            cmd = [*command_prefix(self.isolation), spec.python, "-I", "-S", str(WORKER), str(settings_r),
                   str(channel_w)]
            try:
                self._proc = subprocess.Popen(
                    cmd, pass_fds=(settings_r, channel_w), env=env, cwd=spec.function.source_dir,
                    stdin=None if spec.attached else subprocess.DEVNULL,
                    stdout=None if spec.attached else subprocess.DEVNULL,
                    stderr=None if spec.attached else self._diagnostics,
                    start_new_session=not spec.attached,
                )
            except OSError as exc:
                for fd in (settings_r, settings_w, channel_r, channel_w):
                    os.close(fd)
                raise SandboxError(f"cannot start {spec.python} for {spec.function.name}: {exc}") from None
        os.close(settings_r)
        os.close(channel_w)
        self._commands = os.fdopen(settings_w, "w", encoding="utf-8")
        self._messages = queue.Queue()
        self._arrivals = _Arrivals()
        # not threading.Thread: its start() waits until the thread runs, a hop's time in a chain
        _thread.start_new_thread(self._read, (channel_r, self._messages))
        self._write(settings)
        self._ready = False

    def _await_ready(self) -> None:
        spec = self.spec
        deadline = time.monotonic() + READY_LIMIT
        while True:
            try:
                msg = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                msg = {"t": "lost"}
            if msg["t"] == "ready":
                self.missing += [m for m in msg.get("missing", []) if m not in self.missing]
                self.python_version = msg.get("python")
                self._ready = True
                if self._servers is not None:
                    self._servers.one_ready()
                return
            if msg["t"] == "log":  # nothing should be said before ready; keep it for the error
                continue
            if self._forked:  # the fork server's failure is not the function's: start it on its own
                self._fork_failed()
                deadline = time.monotonic() + READY_LIMIT
                continue
            said = self._said()
            self.close()
            raise SandboxError(f"the sandbox for {spec.function.name} did not start ({spec.python})"
                               + (f":\n{said}" if said else ""))

    def _fork_failed(self) -> None:
        proc = self._proc
        if isinstance(proc, Forked) and not proc.server.alive():
            proc.server.failed = True  # not asked again in this run
        self.close()
        self._spawn(on_its_own=True)

    def _read(self, fd: int, queue_: queue.Queue) -> None:
        """Reads the worker's messages as they come, whatever dorc is doing meanwhile (showing a
        slow terminal's lines): the arrival times of Init's end and of the call's end are what
        the timeout is judged on."""
        arrivals = self._arrivals
        for msg in messages(fd):
            msg["at"] = time.monotonic()
            kind = msg.get("t")
            if kind == "init":
                arrivals.init_at = msg["at"]
            elif kind in ("done", "exit"):
                arrivals.end_at = msg["at"]
            queue_.put(msg)
        arrivals.end_at = arrivals.end_at or time.monotonic()
        queue_.put({"t": "eof", "at": time.monotonic()})

    def _write(self, message: dict) -> None:
        assert self._commands is not None
        try:
            self._commands.write(json.dumps(message) + "\n")
            self._commands.flush()
        except OSError:  # the worker is gone (BrokenPipeError): its channel's end says how
            pass

    def _said(self) -> str:
        if self._diagnostics is None:
            return ""
        try:
            self._diagnostics.seek(0)
            text = self._diagnostics.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.strip().splitlines()[-20:])

    def close(self) -> None:
        """End the environment and everything it started (threads, children): at once, as
        Lambda's freeze-then-reclaim looks to the handler. A fork server's sandbox is killed
        without waiting for its end (its server waits for it when the run ends)."""
        proc, self._proc = self._proc, None
        self._warm = False
        if self._commands is not None:
            try:
                self._commands.close()
            except OSError:
                pass
            self._commands = None
        if proc is not None:
            _end(proc, wait=False)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        if self._diagnostics is not None:
            self._diagnostics.close()
            self._diagnostics = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one call -----------------------------------------------------------------------------
    def invoke(self, event_json: str | bytes, request_id: str | None = None) -> InvocationResult:
        request_id = request_id or str(uuid.uuid4())
        if self._proc is None:
            self._spawn()
        if not self._ready:
            self._await_ready()
        lines: list[str] = []
        log = _Log(lines, self._sink)

        text = event_json.decode("utf-8", "surrogateescape") if isinstance(event_json, bytes) else event_json
        arrivals = self._arrivals
        arrivals.init_at = arrivals.end_at = None
        sent = time.monotonic()
        self._write({"id": request_id, "event": text})
        fn = self.spec.function
        attached = self.spec.attached
        # when the invocation's clock starts: at once when warm, else when Init ends (or its 10 s run out)
        invoke_started: float | None = sent if self._warm else None
        init_ms: float | None = None
        peak_mb = 0
        pid = self._proc.pid if self._proc is not None else None
        watcher = _MemoryWatch(pid) if pid is not None else None
        previous_int = signal.getsignal(signal.SIGINT) if attached else None
        if attached and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the debugger's, not dorc's
        checked = sent  # a call shorter than MEMORY_POLL is not looked at (the worker reports its own peak)
        try:
            while True:
                # the deadline is judged on when messages came (the reader thread stamps them),
                # never on when dorc got round to them: showing log lines is not the handler's time
                now = time.monotonic()
                started = invoke_started if invoke_started is not None else arrivals.init_at
                start = started if started is not None else (sent + INIT_LIMIT if now - sent >= INIT_LIMIT else None)
                deadline = start + fn.timeout if start is not None and not attached else None
                ended = arrivals.end_at
                if deadline is not None and (ended > deadline if ended is not None else now > deadline):
                    return self._timed_out(request_id, lines, log, init_ms, peak_mb, backlog_until=deadline)
                try:
                    msg = self._messages.get(timeout=MEMORY_POLL if deadline is None
                                             else max(0.0, min(MEMORY_POLL, deadline - now)))
                except queue.Empty:
                    msg = None
                if watcher is not None and time.monotonic() - checked >= MEMORY_POLL:
                    checked = time.monotonic()
                    used = watcher.used_mb()
                    peak_mb = max(peak_mb, used)
                    if used > fn.memory:
                        return self._out_of_memory(request_id, lines, log, init_ms, fn.memory, started=invoke_started)
                if msg is None:
                    continue
                kind = msg["t"]
                if kind == "log":
                    log(msg["l"])
                elif kind == "init":
                    init_ms = msg["ms"]
                    invoke_started = msg["at"]
                    self._warm = True
                elif kind == "done":
                    return self._done(msg, lines, peak_mb)
                elif kind in ("exit", "eof"):
                    return self._crashed(msg, request_id, lines, log, init_ms, invoke_started, peak_mb)
        except KeyboardInterrupt:
            self.close()  # Ctrl-C of dorc: the sandbox goes with the run
            raise
        finally:
            if previous_int is not None:
                signal.signal(signal.SIGINT, previous_int)

    # -- how a call ends ----------------------------------------------------------------------
    def _kill_now(self) -> None:
        if self._proc is not None:
            _end(self._proc)

    def _show_backlog(self, log, until: float) -> None:
        """What the handler wrote before its deadline and dorc had not shown yet: kept whole for
        the step's logs, shown up to ``BACKLOG_SHOWN`` lines or ``BACKLOG_SECONDS`` (a handler
        printing in a loop can leave far more than a slow terminal can show)."""
        shown = 0
        stop_showing = time.monotonic() + BACKLOG_SECONDS
        while True:
            try:
                msg = self._messages.get_nowait()
            except queue.Empty:
                return
            if msg.get("t") != "log" or msg["at"] > until:
                continue
            if shown < BACKLOG_SHOWN and time.monotonic() < stop_showing:
                log(msg["l"])
                shown += 1
            else:
                log.keep(msg["l"])

    def _done(self, msg: dict, lines: list[str], peak_mb: int) -> InvocationResult:
        error = None
        if msg.get("error") is not None:
            e = msg["error"]
            error = InvocationError(e["errorType"], e["errorMessage"], e.get("stackTrace") or [], e.get("logLines"))
            if error.type == "Runtime.ExitError":  # the runtime ended itself (sys.exit): a new one next time
                self.close()
        payload = msg["payload"].encode("utf-8", "surrogateescape") if msg.get("payload") is not None else None
        # the worker's figure, the one its REPORT line shows (dorc's look at the whole sandbox is for the limit)
        return InvocationResult(msg["id"], payload, error, msg["duration_ms"], msg.get("init_ms"),
                                msg.get("max_memory_mb") or peak_mb, "\n".join(lines) + "\n")

    def _ended(self, request_id: str, lines: list[str], log, error: InvocationError, init_ms: float | None,
               started: float | None, memory_mb: int, *, timed_out: bool = False) -> InvocationResult:
        """The sandbox is gone mid-call: Lambda's own lines end the log (END, REPORT)."""
        duration = self.spec.function.timeout * 1000 if timed_out else (
            (time.monotonic() - started) * 1000 if started is not None else 0.0)
        self._kill_now()  # gone before the step is reported
        self.close()
        for line in error.log_lines or []:
            log(line)
        log(f"END RequestId: {request_id}")
        log(report_line(request_id, duration, self.spec.function.memory, memory_mb, init_ms))
        error.log_lines = None
        return InvocationResult(request_id, None, error, duration, init_ms, memory_mb, "\n".join(lines) + "\n")

    def _timed_out(self, request_id, lines, log, init_ms, peak_mb, backlog_until: float) -> InvocationResult:
        self._kill_now()
        self._show_backlog(log, backlog_until)
        text = timeout_text(self.spec.function.timeout)
        error = InvocationError("Sandbox.Timedout", f"RequestId: {request_id} Error: {text}",
                                log_lines=[f"{iso_now()} {request_id} {text}"])
        return self._ended(request_id, lines, log, error, init_ms, None, peak_mb, timed_out=True)

    def _out_of_memory(self, request_id, lines, log, init_ms, memory, started) -> InvocationResult:
        message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
        error = InvocationError("Runtime.OutOfMemory", message, log_lines=[message, "Runtime.OutOfMemory"])
        return self._ended(request_id, lines, log, error, init_ms, started, memory)

    def _crashed(self, msg, request_id, lines, log, init_ms, started, peak_mb) -> InvocationResult:
        if msg.get("signal") or msg.get("status") is not None:
            error = exit_error(exit_words(msg.get("status"), msg.get("signal")), request_id)
        else:
            said = self._said()
            error = InvocationError("Runtime.ExitError",
                                    f"RequestId: {request_id} Error: Runtime exited without providing a reason",
                                    log_lines=said.splitlines() if said else None)
        if msg.get("status") == 70:  # the worker's own failure, not the handler's: show why
            said = self._said()
            if said:
                error.log_lines = said.splitlines()
        error.log_lines = [*(error.log_lines or []), error.message, "Runtime.ExitError"]
        return self._ended(request_id, lines, log, error, init_ms, started, peak_mb)


def _end(proc: subprocess.Popen | Forked, wait: bool = True) -> None:
    if isinstance(proc, Forked):
        proc.kill(wait=5.0 if wait else 0.0)
    else:
        kill(proc)


class _Arrivals:
    """When the current call's Init and the call itself ended, as the reader thread saw them."""

    def __init__(self) -> None:
        self.init_at: float | None = None
        self.end_at: float | None = None


class _Log:
    """The call's log lines: each kept for the step and shown by the sink (or only kept)."""

    def __init__(self, lines: list[str], sink: Callable[[str], None]):
        self.lines = lines
        self._sink = sink
        self._hidden = 0

    def __call__(self, line: str) -> None:
        if self._hidden:
            self._sink(f"... {self._hidden} more line(s) before the timeout, kept in the step's logs")
            self._hidden = 0
        self.lines.append(line)
        self._sink(line)

    def keep(self, line: str) -> None:
        self.lines.append(line)
        self._hidden += 1


class _MemoryWatch:
    """The sandbox's memory, as Lambda counts it for its limit: the proportional set size of
    every process in it (shared pages counted once), read from /proc. Elsewhere, nothing."""

    def __init__(self, pid: int):
        self.pid = pid
        self.enabled = os.path.isdir(f"/proc/{pid}")

    def used_mb(self) -> int:
        if not self.enabled:
            return 0
        total = 0
        for pid in self._tree():
            total += _pss_kb(pid)
        return total // 1024

    def _tree(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as fh:
                        todo.extend(int(c) for c in fh.read().split())
                except (OSError, ValueError):
                    continue
        return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
