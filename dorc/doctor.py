"""``dorc doctor``: what this machine supports, and for each thing missing how to get it.

Every check only looks (directories, ``stat``, a local socket, LocalStack's health URL on
loopback): nothing is installed, started or downloaded, and a check that breaks reports itself
as not ok instead of stopping the others.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import asdict, dataclass
from typing import Callable

#: The Lambda runtimes dorc runs locally.
RUNTIMES = ("python3.11", "python3.12", "python3.13")
DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_HINT = ("install Docker (https://docs.docker.com/engine/install/) and start it; only "
               "`dorc localstack start --mode docker` needs it, host mode does not")


@dataclass(frozen=True)
class Check:
    group: str  # "runtimes", "sandbox", "localstack", "docker", "pulumi"
    name: str
    ok: bool
    detail: str
    hint: str | None = None  # how to get what is missing

    def to_dict(self) -> dict:
        return asdict(self)


def checks() -> list[Check]:
    """Every check, in the order ``dorc doctor`` prints them."""
    out = [_guarded("runtimes", r, lambda r=r: runtime_check(r)) for r in RUNTIMES]
    other = _guarded("runtimes", "other Pythons", other_pythons_check)
    if other.detail:
        out.append(other)
    for group, name, check in (("runtimes", "AWS SDK", sdk_check), ("sandbox", "sandbox", sandbox_check),
                               ("localstack", "LocalStack", localstack_install_check),
                               ("localstack", "LocalStack running", localstack_running_check),
                               ("docker", "Docker", docker_check), ("pulumi", "Pulumi CLI", pulumi_cli_check),
                               ("pulumi", "Pulumi SDK", pulumi_sdk_check)):
        out.append(_guarded(group, name, check))
    return out


def _guarded(group: str, name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        return Check(group, name, False, f"could not be checked: {type(exc).__name__}: {exc}",
                     getattr(exc, "hint", None))


# --------------------------------------------------------------------------------------------
# runtimes
# --------------------------------------------------------------------------------------------

def runtime_check(runtime: str) -> Check:
    from dorc_sim.sandbox.interpreters import InterpreterError, find_interpreter, install_hint

    try:
        found = find_interpreter(runtime)
    except InterpreterError as exc:
        return Check("runtimes", runtime, False, exc.message, exc.hint)
    if found.exact:
        return Check("runtimes", runtime, True, f"Python {found.version_text} at {found.executable} ({found.source})")
    return Check("runtimes", runtime, False,
                 f"missing (looked in uv, pyenv and PATH): its handlers run on Python {found.version_text} "
                 f"({found.source}) instead", install_hint(runtime))


def other_pythons_check() -> Check:
    """Interpreters of runtimes dorc does not target (3.9, 3.10, 3.14): worth knowing, never missing."""
    from dorc_sim.sandbox.interpreters import all_interpreters

    others = [i for i in all_interpreters() if i.runtime not in RUNTIMES]
    return Check("runtimes", "other Pythons", True, ", ".join(f"{i.runtime} ({i.source})" for i in others))


def sdk_check() -> Check:
    from dorc_sim.sandbox.sdk import RuntimeDirError, runtime_dir, sdk_versions

    try:
        folder = runtime_dir()
    except RuntimeDirError as exc:
        return Check("runtimes", "AWS SDK", False, exc.message, exc.hint)
    versions = ", ".join(f"{k} {v}" for k, v in sdk_versions().items())
    compiled, failed = _bytecode(folder)
    return Check("runtimes", "AWS SDK", True, f"{versions} for handlers, as Lambda's runtime ships it ({folder}); "
                 f"byte-compiled for {compiled}", failed)


def _bytecode(folder) -> tuple[str, str | None]:
    """Whether each runtime's Python has the SDK's .pyc files (the stamps only), and the warning
    of one that could not get them."""
    from dorc_sim.sandbox.interpreters import InterpreterError, find_interpreter
    from dorc_sim.sandbox.sdk import bytecode_state

    parts, failed = [], None
    for runtime in RUNTIMES:
        try:
            python = find_interpreter(runtime).executable
        except InterpreterError:
            continue
        state = bytecode_state(python, folder)
        parts.append(f"{runtime}: " + ("not yet (its first run does it)" if state is None else "yes" if state.ok else "no"))
        if state is not None and not state.ok:
            failed = failed or state.warning
    return ", ".join(parts) or "no runtime Python found", failed


# --------------------------------------------------------------------------------------------
# sandbox
# --------------------------------------------------------------------------------------------

def sandbox_check() -> Check:
    from dorc_sim.sandbox.isolation import probe

    isolation = probe()
    return Check("sandbox", "sandbox", isolation.level == "full", isolation.line.removeprefix("sandbox: "),
                 isolation.how_to_fix)


# --------------------------------------------------------------------------------------------
# LocalStack, Docker, Pulumi
# --------------------------------------------------------------------------------------------

def localstack_install_check() -> Check:
    from .localstack.install import LOCALSTACK_VERSION, install_state, is_installed, localstack_home, python_hint

    home = localstack_home()
    if is_installed(home):
        state = install_state(home) or {}
        return Check("localstack", "LocalStack", True,
                     f"host mode installed: LocalStack {LOCALSTACK_VERSION} on Python "
                     f"{state.get('python_version', '?')} in {home}")
    partly = " (an older or unfinished install is there)" if install_state(home) else ""
    if _has_python_313():
        hint = "dorc localstack install (about two minutes, once)"
    else:
        hint = "it needs Python 3.13: " + python_hint()
    return Check("localstack", "LocalStack", False,
                 f"host mode not installed{partly} (LocalStack {LOCALSTACK_VERSION}, for `dorc run --localstack`)", hint)


def _has_python_313() -> bool:
    from dorc_sim.sandbox.interpreters import InterpreterError, find_interpreter

    for runtime in ("python3.13", "python3.14"):
        try:
            if find_interpreter(runtime).exact:
                return True
        except InterpreterError:
            pass
    return False


def localstack_running_check() -> Check:
    from .localstack.service import status

    st = status()
    if st.ready:
        how = f" ({st.info.mode} mode)" if st.info else f" ({st.note})" if st.note else ""
        return Check("localstack", "LocalStack running", True, f"answers at {st.endpoint}{how}")
    detail = f"not running at {st.endpoint}" + (f": {st.note}" if st.note else "")
    return Check("localstack", "LocalStack running", False, detail, "dorc localstack start")


def docker_check() -> Check:
    cli = shutil.which("docker")
    where, answered = docker_ping()
    cli_text = f"`docker` CLI at {cli}" if cli else "no `docker` CLI on PATH"
    if answered:
        return Check("docker", "Docker", True, f"engine answers at {where}; {cli_text}")
    hint = ("start the Docker engine (or point DOCKER_HOST at one); only `dorc localstack start --mode docker` "
            "needs it, host mode does not") if cli else DOCKER_HINT
    return Check("docker", "Docker", False, f"no engine answers at {where}; {cli_text}", hint)


def docker_ping(timeout: float = 2.0) -> tuple[str, bool]:
    """(where the engine is looked for, whether it answers ``GET /_ping``), over its socket: the
    docker SDK is not imported for this."""
    host = os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host[len("unix://"):]
        elif host.startswith("tcp://"):
            name, _, port = host[len("tcp://"):].rstrip("/").rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port))
        else:
            return host, False
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(256)
        return host, reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0]
    except (OSError, ValueError):
        return host, False


def pulumi_cli_check() -> Check:
    from .targets.pulumi.engine import PULUMI_MISSING_HINT, find_pulumi_cli

    cli = find_pulumi_cli()
    if cli:
        return Check("pulumi", "Pulumi CLI", True, f"at {cli} (dorc deploy, destroy, promote)")
    return Check("pulumi", "Pulumi CLI", False, "not installed: `dorc deploy`, `destroy` and `promote` need it",
                 PULUMI_MISSING_HINT)


def pulumi_sdk_check() -> Check:
    """Found without importing them (``import pulumi`` alone takes most of a second)."""
    import importlib.util

    from .targets.pulumi.engine import PULUMI_EXTRA_HINT

    missing = [name for name in ("pulumi", "pulumi_aws") if importlib.util.find_spec(name) is None]
    if not missing:
        return Check("pulumi", "Pulumi SDK", True, "pulumi and pulumi_aws importable (dorc plan, deploy)")
    return Check("pulumi", "Pulumi SDK", False, f"{', '.join(missing)} not installed: `dorc plan` and `dorc deploy` "
                 f"need them", PULUMI_EXTRA_HINT)
