"""What both starters of sandboxes do from outside (dorc's ``launcher`` for local runs, the
LocalStack executor plugin): read the worker's channel, word how a runtime ended as Lambda does,
kill a sandbox with everything it started.

Standard library only: the executor imports it inside LocalStack's venv.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

INIT_LIMIT = 10.0  # seconds of Init before the rest of it counts against the timeout (as Lambda)

# Lambda (its runtime API is Go) names a signal that ended the runtime this way
SIGNAL_WORDS = {
    signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated", signal.SIGINT: "interrupt", signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception", signal.SIGILL: "illegal instruction",
    signal.SIGHUP: "hangup", signal.SIGPIPE: "broken pipe", signal.SIGQUIT: "quit",
}


def exit_words(status: int | None = None, sig: int | None = None) -> str:
    """As Lambda words a runtime's end: "exit status 3" or "signal: killed"."""
    if not sig:
        return f"exit status {status}"
    try:
        known = signal.Signals(sig)
    except ValueError:
        return f"signal: signal {sig}"
    return "signal: " + SIGNAL_WORDS.get(known, known.name.lower().removeprefix("sig"))


def messages(fd: int):
    """The worker's JSON lines on its channel, as they come, until it closes."""
    with os.fdopen(fd, "rb") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def kill(proc: subprocess.Popen, wait: float = 5.0) -> bool:
    """SIGKILL the sandbox's session (its first process, and with it a PID namespace's every
    process), then reap it; False when it did not end within ``wait`` seconds. Its own children
    (under ``unshare``: the namespace's first process, which takes every other with it) are
    killed and waited for too, so that nothing of the sandbox is left when this returns."""
    deadline = time.monotonic() + wait
    children = _pidfds(_children(proc.pid))
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    for pidfd in children:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
    try:
        proc.wait(timeout=wait)
        ended = True
    except subprocess.TimeoutExpired:
        ended = False
    for pidfd in children:
        try:
            ended = bool(select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]) and ended
        finally:
            os.close(pidfd)
    return ended


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except (OSError, ValueError):
        return []


def _pidfds(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            out.append(os.pidfd_open(pid))
        except (AttributeError, OSError):  # gone already, or no pidfds here (not Linux)
            pass
    return out
