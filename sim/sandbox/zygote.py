"""A fork server ("zygote") of sandboxes: one process per run and runtime Python that has done,
once, what every sandbox would do at its start — the interpreter's start-up, importing the
runtime (``dorc_sim.runtime`` and what it imports), entering a user namespace and making the
host's file systems read-only — so that a sandbox is a fork of it that does only its own part.

dorc starts it (``dorc_sim.sandbox.forkserver``) as
``unshare --user --map-root-user --mount --pid --fork --kill-child <python> -I -S worker.py
--zygote CONTROL_FD RUNTIME_DIR``: pid 1 of a PID namespace of its own, so that ending it ends
every sandbox it forked. On the CONTROL socket dorc sends a request per sandbox (one datagram:
its environment and working folder) with three file descriptors: the sandbox's settings pipe,
its channel to dorc and its diagnostics file. For each, the server unshares a mount and a PID
namespace, forks, and goes back into its own namespaces (``setns``): the child is pid 1 of the
new PID namespace, in a copy of the sealed file system, and runs ``worker.serve`` as a started
worker does (the function's own mounts — private capped ``/tmp``, task root read-only, hidden
folders, ``/proc`` — then ``ready``, the runtime as its child). The answer carries a pidfd of
that child: dorc watches its tree's memory and kills it (and with it the sandbox) through it.

The server imports neither the user's code nor the AWS SDK (a handler's Init Duration stays its
cold import) and holds no thread, so that a fork copies nothing but this state. What a sandbox
can tell apart from a started worker: its hash seed (``str`` hashes) is the server's, shared by
the run's sandboxes on the same Python; its session is its own (``os.getsid(0)`` is 1, where a
started worker's session leader is outside its namespace, 0).

Standard library and ``dorc_sim`` only: it runs on the function's Python, which is not dorc's.
"""

from __future__ import annotations

import _socket  # not ``socket``: a handler would find that module imported already
import json
import os
import select
import sys

import dorc_sim.runtime  # noqa: F401 - what every sandbox's runtime imports, imported once here
from dorc_sim.sandbox import inside, isolation

MAX_REQUEST = 1 << 20  # bytes: a request is the sandbox's environment and working folder
REAP_EVERY = 0.5  # seconds between two looks for ended sandboxes while no request comes
_FDS = 3  # settings, channel, diagnostics


def serve(control_fd: int, runtime_dir: str, run_sandbox) -> None:
    """Answer requests until dorc closes the socket; ``run_sandbox(settings_fd, channel_fd,
    sealed, become)`` is ``worker.serve_forked``. Ends the process (and with it, pid 1, every sandbox)."""
    os.set_inheritable(control_fd, False)
    control = _socket.socket(fileno=control_fd)
    try:
        inside.own_files(runtime_dir)  # before /tmp is sealed, as a started worker looks
        sealed = isolation.seal_host()
        own_mounts = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        own_pids = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        os.close(os.pidfd_open(os.getpid()))  # dorc needs a pidfd of each sandbox
    except (OSError, AttributeError) as exc:
        _answer(control, {"t": "hello", "error": f"{type(exc).__name__}: {exc}"})
        os._exit(1)
    _answer(control, {"t": "hello", "missing": sealed})
    while True:
        _reap()
        ready, _, _ = select.select([control], [], [], REAP_EVERY)
        if not ready:
            continue
        try:
            data, fds = _receive(control)
        except OSError:
            break
        if not data:  # dorc is done (or gone)
            break
        try:
            first = _fork(control, json.loads(data), fds, sealed, run_sandbox, own_mounts, own_pids)
            pidfd = os.pidfd_open(first)
        except OSError as exc:
            _answer(control, {"t": "forked", "error": f"{type(exc).__name__}: {exc}"})
        else:
            _answer(control, {"t": "forked"}, [pidfd])
            os.close(pidfd)
        finally:
            for fd in fds:
                os.close(fd)
    os._exit(0)


def _fork(control, request: dict, fds: list[int], sealed: list[str], run_sandbox, own_mounts: int,
          own_pids: int) -> int:
    """The sandbox's first process, in new mount and PID namespaces; this process stays in its own."""
    isolation.unshare(isolation.CLONE_NEWNS | isolation.CLONE_NEWPID)
    try:
        first = os.fork()
        if first == 0:
            _first(control, request, fds, sealed, run_sandbox)  # never returns
    finally:
        try:
            isolation.setns(own_mounts, isolation.CLONE_NEWNS)
            isolation.setns(own_pids, isolation.CLONE_NEWPID)  # the next unshare's children: a new namespace again
        except OSError:
            os._exit(1)  # not back in its own namespaces: dorc starts the rest on their own
    return first


def _answer(control, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    try:
        if fds:
            control.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                      b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds))])
        else:
            control.send(data)
    except OSError:
        pass  # dorc is gone: the next receive ends the server


def _receive(control) -> tuple[bytes, list[int]]:
    data, ancillary, _flags, _addr = control.recvmsg(MAX_REQUEST, _socket.CMSG_SPACE(_FDS * 4))
    fds: list[int] = []
    for level, kind, blob in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(blob) - len(blob) % 4
            fds += [int.from_bytes(blob[i:i + 4], sys.byteorder, signed=True) for i in range(0, usable, 4)]
    return data, fds


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _first(control, request: dict, fds: list[int], sealed: list[str], run_sandbox) -> None:
    """Pid 1 of the sandbox: never returns into the server's loop. It does as little as it can
    (every page it touches is copied, then again in the runtime it forks): the runtime takes the
    request's environment and working folder (``become``)."""
    try:
        control.close()  # the sandbox never reaches the server
        settings_fd, channel_fd, diagnostics_fd = fds
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(diagnostics_fd, 2)
        os.close(null)
        os.close(diagnostics_fd)
        os.setsid()  # its own session: a handler's killpg(0, ...) reaches its own processes only

        def become() -> None:
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            sys.argv[:] = [os.path.join(os.path.dirname(os.path.realpath(inside.__file__)), "worker.py"),
                           str(settings_fd), str(channel_fd)]

        run_sandbox(settings_fd, channel_fd, sealed, become)
    except BaseException:  # noqa: BLE001 - the sandbox could not start: dorc shows its diagnostics
        import traceback

        try:
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        except OSError:
            pass
    os._exit(70)
