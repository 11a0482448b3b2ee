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

A per-run server imports neither the user's code nor the AWS SDK (a handler's Init Duration stays
its cold import); no server holds a thread, so that a fork copies nothing but this state. What a sandbox
can tell apart from a started worker: its hash seed (``str`` hashes) is the server's, shared by
the run's sandboxes on the same Python; its session is its own (``os.getsid(0)`` is 1, where a
started worker's session leader is outside its namespace, 0).

A long-lived server (``dorc daemon``: ``--preload boto3``) imports the AWS SDK, parses botocore's
common data files, lists its service folders and works out its built-in event handlers' aliases
and signatures before it serves, so that a handler's ``import boto3`` is already done and its
first client is quicker (Init Duration and Duration are then lower than cold). It takes more
channels than its CONTROL socket: a ``{"t": "channel"}`` request on CONTROL carries one end of a
new socket pair, served like CONTROL (a ``hello`` first, then a request per sandbox, answered
there), one per run, until the run closes it or ends; the sandboxes forked for that channel are
then killed, as a per-run server's end kills its own. A sandbox whose task root holds its own copy
of a preloaded package gets none of the preloaded modules (its copy wins, as on Lambda).

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


def serve(control_fd: int, runtime_dir: str, run_sandbox, preload: tuple[str, ...] = ()) -> None:
    """Answer requests until dorc closes the socket; ``run_sandbox(settings_fd, channel_fd,
    sealed, become)`` is ``worker.serve_forked``. Ends the process (and with it, pid 1, every sandbox).
    ``preload``: modules to import first (a long-lived server's)."""
    os.set_inheritable(control_fd, False)
    control = _socket.socket(fileno=control_fd)
    channels: list = []  # more connections (a long-lived server's runs), served as ``control`` is
    owned: dict[int, list[int]] = {}  # a channel's fileno -> pidfds of the sandboxes forked for it
    try:
        loaded = _preload(preload)
        inside.own_files(runtime_dir)  # before /tmp is sealed, as a started worker looks
        sealed = isolation.seal_host()
        own_mounts = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        own_pids = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        os.close(os.pidfd_open(os.getpid()))  # dorc needs a pidfd of each sandbox
    except (OSError, AttributeError) as exc:
        _answer(control, {"t": "hello", "error": f"{type(exc).__name__}: {exc}"})
        os._exit(1)
    import gc

    gc.freeze()  # what is here now is never collected: a sandbox's GC does not copy these pages
    hello = {"t": "hello", "missing": sealed, **({"preloaded": sorted(loaded)} if preload else {})}
    _answer(control, hello)
    while True:
        _reap()
        ready, _, _ = select.select([control, *channels], [], [], REAP_EVERY)
        for sock in ready:
            try:
                data, fds = _receive(sock)
            except OSError:
                data, fds = b"", []
            if not data:  # dorc is done (or gone): on CONTROL, the server ends; a channel, only it
                if sock is control:
                    os._exit(0)
                _end_sandboxes(owned.pop(sock.fileno(), []))  # its run is over (or gone): so are they
                channels.remove(sock)
                sock.close()
                continue
            request = json.loads(data)
            if request.get("t") == "channel":  # a new connection (a run of a long-lived server)
                channel = _socket.socket(fileno=fds.pop()) if fds else None
                for fd in fds:
                    os.close(fd)
                if channel is not None:
                    channels.append(channel)
                    _answer(channel, hello)
                continue
            try:
                first = _fork([control, *channels], request, fds, sealed, run_sandbox, own_mounts, own_pids, loaded)
                pidfd = os.pidfd_open(first)
            except OSError as exc:
                _answer(sock, {"t": "forked", "error": f"{type(exc).__name__}: {exc}"})
            else:
                _answer(sock, {"t": "forked"}, [pidfd])
                if sock is control:
                    os.close(pidfd)
                else:
                    owned.setdefault(sock.fileno(), []).append(pidfd)
            finally:
                for fd in fds:
                    os.close(fd)


#: botocore's data files every handler's first client reads (common, then S3's), parsed once
SDK_DATA = ("endpoints", "partitions", "sdk-default-configuration")
SDK_SERVICES = ("s3",)


def _parse_sdk_data() -> None:
    """botocore parses its JSON data anew for every session it makes: about half of a handler's
    first ``boto3.client("s3")``. Parsed here once, a sandbox's loaders read these files from the
    server's copy (its own copy-on-write pages: what one sandbox does to them no other sees);
    every other file is read as usual. Nothing else of botocore's is made here (no session)."""
    from botocore import loaders
    from botocore.exceptions import DataNotFoundError

    original = loaders.JSONFileLoader.load_file
    parsed: dict[str, object] = {}
    loader = loaders.create_loader()
    names = list(SDK_DATA)
    for service in SDK_SERVICES:
        try:
            version = loader.determine_latest_version(service, "service-2")
        except DataNotFoundError:  # not in this SDK: read as usual
            continue
        names += [f"{service}/{version}/{kind}" for kind in ("service-2", "service-2.sdk-extras", "endpoint-rule-set-1")]
    for name in names:
        for folder in loader.search_paths:
            path = os.path.join(folder, name)
            data = original(loader.file_loader, path)
            if data is not None:
                parsed[path] = data
                break

    def load_file(self, file_path):
        data = parsed.get(file_path)
        return data if data is not None else original(self, file_path)

    load_file.__doc__ = original.__doc__
    loaders.JSONFileLoader.load_file = load_file
    _list_services_once(loaders, loader)
    _share_hook_work()


#: the kinds of data whose services botocore lists for every new session's first client
LISTED_TYPES = ("service-2", "endpoint-rule-set-1")


def _list_services_once(loaders, loader) -> None:
    """A new session's first client lists every service folder of botocore's data (about 900
    folders: ~30 ms of ``listdir``/``stat``) to check that the service exists. The SDK's own data
    folders never change under a server, so they are listed here once; any other search path (a
    handler's ``AWS_DATA_PATH``, ``~/.aws/models``) is listed live, as botocore does."""
    if not (hasattr(loader, "is_builtin_path") and hasattr(loader, "_potential_locations")):
        return  # another botocore than the one this was written for: its sessions list as usual
    sdk = [path for path in loader.search_paths if loader.is_builtin_path(path)]
    boto3 = sys.modules.get("boto3")
    if boto3 is not None:  # boto3's own data folder, which its sessions add to the search path
        sdk.append(os.path.join(os.path.dirname(boto3.__file__), "data"))
    listed = {(path, kind): _services_under(path, kind, loader.file_loader)
              for path in sdk if os.path.isdir(path) for kind in LISTED_TYPES}
    original = loaders.Loader.list_available_services

    @loaders.instance_cache
    def list_available_services(self, type_name):
        services = set()
        for path in self._potential_locations():
            known = listed.get((path, type_name))
            services.update(known if known is not None else _services_under(path, type_name, self.file_loader))
        return sorted(services)

    list_available_services.__doc__ = original.__doc__
    loaders.Loader.list_available_services = list_available_services


def _share_hook_work() -> None:
    """Each new session registers ~140 built-in event handlers, working out again for each its
    aliased event name and whether it takes ``**kwargs`` (``inspect``): about half of a warm
    first client. Both are pure functions of their input, so the answers are worked out here once
    (a throwaway session registers them) and handed to every session: its aliaser starts with them
    (only with botocore's own aliases), and a plain function's signature is looked at once.
    Visible only in botocore's debug log, which says "Changing event name" for those once here."""
    import types

    from botocore import hooks, session

    if not (hasattr(hooks, "EventAliaser") and hasattr(hooks, "accepts_kwargs")
            and hasattr(hooks, "EVENT_ALIASES")):
        return  # another botocore than the one this was written for: its sessions work as usual
    try:
        known_aliases = dict(session.Session()._events._alias_name_cache)
    except AttributeError:
        return
    aliaser_init, accepts_kwargs = hooks.EventAliaser.__init__, hooks.accepts_kwargs
    signatures: dict = {}

    def __init__(self, event_emitter, event_aliases=None):
        aliaser_init(self, event_emitter, event_aliases)
        if self._event_aliases is hooks.EVENT_ALIASES:
            self._alias_name_cache.update(known_aliases)

    def accepts_kwargs_once(func):
        if type(func) is not types.FunctionType:  # a bound method, a partial: new ones keep coming
            return accepts_kwargs(func)
        answer = signatures.get(func)
        if answer is None:
            answer = signatures[func] = accepts_kwargs(func)
        return answer

    hooks.EventAliaser.__init__ = __init__
    hooks.accepts_kwargs = accepts_kwargs_once


def _services_under(path: str, type_name: str, file_loader) -> set[str]:
    """What botocore's ``Loader.list_available_services`` finds in one search path."""
    found = set()
    for service in os.listdir(path):
        folder = os.path.join(path, service)
        if os.path.isdir(folder) and any(file_loader.exists(os.path.join(folder, version, type_name))
                                         for version in os.listdir(folder)):
            found.add(service)
    return found


def _end_sandboxes(pidfds: list[int]) -> None:
    """SIGKILL each sandbox (pid 1 of its namespace: all of its processes end with it)."""
    import signal

    for pidfd in pidfds:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass  # ended already
        os.close(pidfd)


def _preload(names: tuple[str, ...]) -> dict[str, list[str]]:
    """Import ``names``; {top-level name: the modules outside the standard library its import
    added} (a sandbox whose task root has its own copy of one drops them all)."""
    if not names:
        return {}
    import importlib

    before = set(sys.modules)
    try:
        for name in names:
            importlib.import_module(name)
        if "boto3" in names or "botocore" in names:
            _parse_sdk_data()  # its last step replaces botocore's file loader: nothing half done
    except Exception:  # noqa: BLE001 - not on this Python: its handlers import it (and fail) as cold
        for name in [m for m in sys.modules if m not in before]:
            del sys.modules[name]
        return {}
    added = [m for m in sys.modules if m not in before and m.partition(".")[0] not in sys.stdlib_module_names]
    return {top: added for top in {m.partition(".")[0] for m in added}}


def _fork(sockets: list, request: dict, fds: list[int], sealed: list[str], run_sandbox, own_mounts: int,
          own_pids: int, loaded: dict[str, list[str]]) -> int:
    """The sandbox's first process, in new mount and PID namespaces; this process stays in its own."""
    isolation.unshare(isolation.CLONE_NEWNS | isolation.CLONE_NEWPID)
    try:
        first = os.fork()
        if first == 0:
            _first(sockets, request, fds, sealed, run_sandbox, loaded)  # never returns
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


def _first(sockets: list, request: dict, fds: list[int], sealed: list[str], run_sandbox,
           loaded: dict[str, list[str]]) -> None:
    """Pid 1 of the sandbox: never returns into the server's loop. It does as little as it can
    (every page it touches is copied, then again in the runtime it forks): the runtime takes the
    request's environment and working folder (``become``)."""
    try:
        for sock in sockets:
            sock.close()  # the sandbox never reaches the server
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
            _own_copies_win(request["cwd"], loaded)
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


def _own_copies_win(task_root: str, loaded: dict[str, list[str]]) -> None:
    """A task root that vendors a preloaded package (its own boto3, say) imports its copy, as on
    Lambda: every preloaded module is dropped (they import one another)."""
    for top, modules in loaded.items():
        if os.path.exists(os.path.join(task_root, top)) or os.path.exists(os.path.join(task_root, top + ".py")):
            for name in modules:
                sys.modules.pop(name, None)
            return
