"""A function's execution environment: the process (tree) that runs its handler, never dorc's.

Started by ``dorc_sim.sandbox.launcher`` as ``<the runtime's python> -I -S worker.py SETTINGS_FD
CHANNEL_FD`` in the function's task root, with Lambda's environment only. It reads its settings
(the first JSON line on SETTINGS_FD), then forks: the child makes the file system Lambda's
(``isolation.enter`` when in namespaces) and is the runtime (``FunctionRuntime``, one call per
JSON line on SETTINGS_FD), the parent stays as the sandbox's first process, reaps orphans as an
init does and tells dorc how the runtime ended (an exit status, a signal) when it ends unasked.

Everything the runtime says goes to dorc as JSON lines on CHANNEL_FD, in order: ``ready`` (with
what the sandbox could not enforce), ``log`` (each line as CloudWatch frames it), ``init`` (the
Init Duration: the invocation's clock starts then), ``done`` (the result), ``exit``.

Started as ``worker.py --zygote CONTROL_FD RUNTIME_DIR`` it is a fork server instead
(``dorc_sim.sandbox.zygote``): each sandbox is then a fork of it that runs ``serve`` as a
started worker would, without an interpreter's start-up of its own.

Standard library and ``dorc_sim`` only: it runs on the function's Python, which is not dorc's.
What it shares with LocalStack's worker is in ``dorc_sim.sandbox.inside``.
"""

from __future__ import annotations

import json
import os
import sys


def _runtime(settings: dict, commands) -> None:
    from dorc_sim.runtime import FunctionRuntime, FunctionSpec
    from dorc_sim.sandbox.inside import FdLog, send

    attached = settings.get("attached", False)

    def emit(line: str) -> None:
        send({"t": "log", "l": line})

    fd_log = None if attached else FdLog(emit)  # fds 1 and 2: their lines join the log, as in Lambda
    if attached:  # the terminal's: each line shows at once (the sandbox may be killed, not exited)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
    spec = FunctionSpec(**settings["spec"])
    runtime = FunctionRuntime(spec, emit, log_stream=settings["log_stream"], attached=attached,
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


def serve(settings_fd: int, channel: int) -> None:
    """A started worker, from its settings on. Never returns: this process stays as the sandbox's
    init and forks the runtime, which makes the file system Lambda's, says ``ready`` and serves
    the calls."""
    commands = os.fdopen(settings_fd, "r", encoding="utf-8")
    settings = json.loads(commands.readline())
    runtime_dir = settings["runtime_dir"]
    sys.path.insert(0, runtime_dir)
    from dorc_sim.sandbox import inside

    inside.private_fds(settings_fd, channel)
    inside.open_channel(channel)
    inside.init(inside.fork_runtime(lambda: _sandbox(settings, commands, None)))


def serve_forked(settings_fd: int, channel: int, sealed: list[str], become) -> None:
    """A fork server's sandbox: as ``serve``, but this process (pid 1) forks the runtime at once
    and does nothing else, as every page it touches is copied; the runtime takes its own
    environment (``become()``), reads its settings and goes on as a started worker's.
    ``sealed``: what the server's read-only host could not guarantee."""
    from dorc_sim.sandbox import inside

    inside.open_channel(channel)

    def runtime() -> None:
        become()
        inside.private_fds(settings_fd, channel)
        commands = os.fdopen(settings_fd, "r", encoding="utf-8")
        _sandbox(json.loads(commands.readline()), commands, sealed)

    inside.init(inside.fork_runtime(runtime))


def _sandbox(settings: dict, commands, sealed: list[str] | None) -> None:
    from dorc_sim.sandbox import inside

    task_root = settings["spec"]["source_dir"]
    missing = inside.enter(task_root, settings["runtime_dir"], namespaces=bool(settings.get("namespaces")),
                           tmp_mb=settings["tmp_mb"], hide=settings.get("hide", []), keep=settings.get("keep", []),
                           host_sealed=sealed is not None)
    missing = [*(sealed or []), *(m for m in missing if m not in (sealed or []))]
    if "LC_CTYPE" not in settings["spec"]["environment"]:
        os.environ.pop("LC_CTYPE", None)  # Python's own locale coercion (no en_US.UTF-8 here), not Lambda's
    inside.send({"t": "ready", "missing": missing, "python": "%d.%d.%d" % sys.version_info[:3], "pid": os.getpid()})
    _runtime(settings, commands)


def main(argv: list[str]) -> None:
    if argv[1:2] == ["--zygote"]:  # a fork server of sandboxes: dorc_sim.sandbox.zygote
        sys.path.insert(0, argv[3])
        from dorc_sim.sandbox import zygote

        preload = tuple(argv[5].split(",")) if argv[4:5] == ["--preload"] and len(argv) > 5 else ()
        zygote.serve(int(argv[2]), argv[3], serve_forked, preload)
    else:
        serve(int(argv[1]), int(argv[2]))


if __name__ == "__main__":
    main(sys.argv)
