"""The daemon's fork servers: one per runtime Python found on this machine, long-lived, that has
imported the AWS SDK (``dorc_sim.sandbox.zygote`` with ``--preload``), so a handler's
``import boto3`` costs nothing. Each run forked from the daemon gets its own channel to each
(``ForkServer.open_channel``) and asks them for its sandboxes; every sandbox is still a fresh
fork per function and run, with its own environment, /tmp and task root.

Where a server cannot be used (no Linux namespaces, ``DORC_FORK_SERVER=off`` when the daemon
started, a Python not found), runs start their sandboxes as a cold run does.
"""

from __future__ import annotations

import socket
import sys

PRELOAD = ("boto3",)
RESTARTS = 3  # a server that keeps dying is left dead (its runs start sandboxes as cold ones do)


class WarmServers:
    def __init__(self) -> None:
        self._servers: dict = {}  # (python, runtime dir) -> ForkServer
        self._restarts: dict = {}  # (python, runtime dir) -> times started again
        self.notes: list[str] = []

    def start(self) -> None:
        """Start a server for each runtime Python found (a missing one is not an error: a run
        on it starts its sandboxes as cold)."""
        try:
            from dorc_sim.sandbox.forkserver import ForkServer, enabled
            from dorc_sim.sandbox.interpreters import all_interpreters
            from dorc_sim.sandbox.isolation import probe
            from dorc_sim.sandbox.sdk import compile_for, runtime_dir

            if not enabled(probe()):
                self.notes.append("no fork servers: the full sandbox (Linux namespaces) is not available")
                return
            runtime = str(runtime_dir())
            pythons = sorted({found.executable for found in all_interpreters()})
        except Exception as exc:  # noqa: BLE001 - runs still work without them
            self.notes.append(f"no fork servers: {type(exc).__name__}: {exc}")
            return
        for python in pythons:
            warning = compile_for(python, runtime).warning  # once per SDK version: a sandbox cannot write .pyc files
            if warning:
                self.notes.append(warning)
            try:
                self._servers[(python, runtime)] = ForkServer(python, runtime, preload=PRELOAD)
            except OSError as exc:
                self.notes.append(f"no fork server on {python}: {exc}")

    def wait_ready(self) -> None:
        for key, server in list(self._servers.items()):
            if not server.wait_ready():
                self.notes.append(f"fork server on {key[0]} did not start: {server.said()[-300:]}")
                server.close()
                del self._servers[key]

    @property
    def pythons(self) -> list[str]:
        """Each server's Python, and whether the SDK could be imported there."""
        return [python if "boto3" in server.preloaded else f"{python} (without the AWS SDK: it does not import there)"
                for (python, _), server in sorted(self._servers.items())]

    def channels(self) -> dict[tuple[str, str], socket.socket]:
        """A new channel to each live server, for one run (the daemon closes its ends once the run
        is forked)."""
        out = {}
        for key, server in self._servers.items():
            if not server.alive():
                continue
            try:
                out[key] = server.open_channel()
            except OSError as exc:
                sys.stderr.write(f"fork server on {key[0]}: {exc}\n")
        return out

    def restart_dead(self) -> None:
        """A server that ended (killed by hand, say) is started again for the next runs."""
        from dorc_sim.sandbox.forkserver import ForkServer

        for key, server in list(self._servers.items()):
            if not server.alive():
                server.close()
                self._restarts[key] = self._restarts.get(key, 0) + 1
                if self._restarts[key] > RESTARTS:
                    sys.stderr.write(f"fork server on {key[0]} keeps ending: not started again\n")
                    del self._servers[key]
                    continue
                try:
                    self._servers[key] = ForkServer(key[0], key[1], preload=PRELOAD)
                except OSError:
                    del self._servers[key]

    def in_child(self, channels: dict[tuple[str, str], socket.socket]) -> None:
        """In a run's process: let go of the servers (they are the daemon's) and use ``channels``."""
        from dorc_sim.sandbox.forkserver import adopt

        for server in self._servers.values():
            server.forget()
        self._servers = {}
        adopt(channels)

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers = {}
