"""How strongly this machine can make a handler's world Lambda's, and the mounts that do it.

Linux with unprivileged user namespaces (most distributions) gives the real thing without root:
the worker starts under ``unshare --user --map-root-user --mount --pid --fork --kill-child`` and,
inside, mounts a private tmpfs on ``/tmp`` capped at the function's ephemeral storage, binds its
task root read-only onto itself (writes fail with EROFS, as in Lambda), puts an empty read-only
tmpfs over ``/dev/shm`` and over the user's ``~/.aws``; killing ``unshare`` ends every process
the handler started (the PID namespace dies with its first process).

Elsewhere (macOS, hosts that forbid user namespaces, ``DORC_SANDBOX=portable``) the worker is an
ordinary process in its own session: ``TMPDIR`` is private but ``/tmp`` is the host's, the task
root is read-only by file modes only. ``probe()`` says which, so a run never claims more than held.

Standard library only: ``enter()`` runs inside the worker, on the function's Python.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

# What a full sandbox guarantees; the portable one says which of these it could not give.
GUARANTEES = {
    "root": "host files writable",
    "tmp": "/tmp shared",
    "task_root": "task root read-only by file modes only",
    "shm": "/dev/shm present",
    "processes": "children that leave the session outlive a timeout",
    "memory": "memory not enforced",
}

UNSHARE_ARGS = ("--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child")


@dataclass(frozen=True)
class Isolation:
    """What sandboxes on this machine guarantee."""

    namespaces: bool  # Linux namespaces (the full sandbox) are used
    missing: tuple[str, ...] = ()
    reason: str | None = None  # why the full sandbox is not available

    @property
    def level(self) -> str:
        return "partial" if self.missing else "full"

    @property
    def line(self) -> str:
        return f"sandbox: {self.level}" + (f" ({', '.join(self.missing)})" if self.missing else "")

    @property
    def how_to_fix(self) -> str | None:
        if not self.missing:
            return None
        if sys.platform != "linux":
            return ("the full sandbox needs Linux namespaces: run dorc in a Linux VM or container "
                    "(e.g. a dev container) for exactly Lambda's /tmp and read-only task root")
        if os.environ.get("DORC_SANDBOX", "").lower() == "portable":
            return "unset DORC_SANDBOX to use the full sandbox"
        return ("allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or on "
                "Ubuntu kernel.apparmor_restrict_unprivileged_userns=0) and install util-linux's `unshare`")

    def with_missing(self, more: list[str] | tuple[str, ...]) -> "Isolation":
        extra = tuple(m for m in more if m not in self.missing)
        return Isolation(self.namespaces, self.missing + extra, self.reason) if extra else self


_probed: Isolation | None = None


def probe() -> Isolation:
    """This machine's sandbox, tried once per process (``unshare`` running ``true``, ~3 ms)."""
    global _probed
    if _probed is None:
        _probed = _probe()
    return _probed


def _portable(reason: str) -> Isolation:
    missing = ["root", "tmp", "task_root", "shm", "processes"]
    if not os.path.isdir("/proc"):
        missing.append("memory")
    return Isolation(False, tuple(GUARANTEES[m] for m in missing), reason)


def _probe() -> Isolation:
    if os.environ.get("DORC_SANDBOX", "").lower() == "portable":
        return _portable("DORC_SANDBOX=portable")
    if sys.platform != "linux":
        return _portable(f"{sys.platform} has no Linux namespaces")
    unshare = shutil.which("unshare")
    if unshare is None:
        return _portable("`unshare` (util-linux) is not on PATH")
    try:
        done = subprocess.run([unshare, *UNSHARE_ARGS, "true"], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _portable(f"`unshare` cannot run: {exc}")
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        return _portable(f"unprivileged user namespaces are not allowed here ({said})")
    return Isolation(True)


def command_prefix(isolation: Isolation) -> list[str]:
    """What the worker's command starts with."""
    if not isolation.namespaces:
        return []
    return [shutil.which("unshare") or "unshare", *UNSHARE_ARGS]


# -- inside the worker ----------------------------------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
# statvfs's flags -> mount's: a remount inside a user namespace must keep these as they are
_KEPT = {1 << 1: MS_NOSUID, 1 << 2: MS_NODEV, 1 << 3: MS_NOEXEC, 1 << 10: MS_NOATIME,
         1 << 11: MS_NODIRATIME, 1 << 12: MS_RELATIME}
_SPECIAL = ("/proc", "/sys", "/dev")  # not files a handler could write: left as they are


@dataclass
class Mounts:
    """What ``enter`` was asked to set up (sent by dorc in the worker's settings)."""

    task_root: str
    tmp_mb: int = 512
    sealed: bool = False  # ``seal_host`` ran where this namespace was copied from: the host is read-only already
    keep: list[str] = field(default_factory=list)  # host paths under /tmp the worker needs
    hide: list[str] = field(default_factory=list)  # folders to cover with an empty read-only tmpfs
    writable: list[str] = field(default_factory=list)  # host folders the worker itself writes (its logs)


_loaded_libc = None


def _libc():
    global _loaded_libc
    if _loaded_libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        _loaded_libc = libc
    return _loaded_libc


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def _remount_read_only(libc, path: str) -> None:
    kept = 0
    flags = os.statvfs(path).f_flag
    for st, ms in _KEPT.items():
        if flags & st:
            kept |= ms
    _mount(libc, None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def _mount_points() -> list[str]:
    out = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 4:  # octal escapes (\040 for a space) as the kernel writes them
                    out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    except OSError:
        pass
    return out


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _private(libc) -> bool:
    try:
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)  # nothing below leaks to the host
        return True
    except OSError:
        return False


def _read_only_everywhere(libc) -> list[str]:
    try:
        _mount(libc, "/", "/", None, MS_BIND | MS_REC)  # "/" itself may not be a mount of its own
        for point in sorted(set(_mount_points()), key=len):
            if any(_under(point, special) for special in _SPECIAL):
                continue
            try:
                _remount_read_only(libc, point)
            except OSError:
                if point == "/":
                    raise
    except OSError:
        return [GUARANTEES["root"]]
    return []


_NOTHING_HELD = ("root", "tmp", "task_root", "shm")


def seal_host() -> list[str]:
    """Once per fork server (``dorc_sim.sandbox.zygote``), in its own mount namespace: the part of
    ``enter`` that is the same for every function (every host file system read-only, a remount
    per mount point; no /dev/shm). Its sandboxes then ``enter`` with ``Mounts(sealed=True)``."""
    libc = _libc()
    if not _private(libc):
        return [GUARANTEES[g] for g in _NOTHING_HELD]
    return _read_only_everywhere(libc) + _no_shm(libc)


def _no_shm(libc, folders: tuple[str, ...] = ("/dev/shm",)) -> list[str]:
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        try:
            _mount(libc, "tmpfs", folder, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=555")
        except OSError:
            if folder == "/dev/shm":
                return [GUARANTEES["shm"]]
    return []


def under_tmp(paths: list[str]) -> list[str]:
    """The existing ones of ``paths`` that are under ``/tmp``, resolved, none under another."""
    keep = sorted({real for real in map(os.path.realpath, paths) if _under(real, "/tmp") and os.path.exists(real)},
                  key=len)
    return [p for i, p in enumerate(keep) if not any(_under(p, q) for q in keep[:i])]


def enter(mounts: Mounts) -> list[str]:
    """Inside the namespaces: make the file system Lambda's. Returns what could not be done (as
    phrases of ``GUARANTEES``); the worker goes on with what held and dorc reports it."""
    missing: list[str] = []
    libc = _libc()
    if not mounts.sealed:
        if not _private(libc):
            return [GUARANTEES[g] for g in _NOTHING_HELD]
        missing += _read_only_everywhere(libc)  # before /tmp's tmpfs, which stays writable
    # /tmp: private and capped; what the worker itself needs from the host's /tmp is bound back
    keep = under_tmp(mounts.keep)
    held = {p: os.open(p, os.O_PATH) for p in keep}
    try:
        _mount(libc, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(mounts.tmp_mb)}m,mode=1777")
        for path, fd in held.items():
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").close()
            _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    except OSError:
        missing.append(GUARANTEES["tmp"])
    finally:
        for fd in held.values():
            os.close(fd)
    root = os.path.realpath(mounts.task_root)
    try:
        _mount(libc, root, root, None, MS_BIND | MS_REC)
        _remount_read_only(libc, root)
    except OSError:
        missing.append(GUARANTEES["task_root"])
    for folder in mounts.writable:
        if os.path.isdir(folder):
            try:
                _mount(libc, folder, folder, None, MS_BIND | MS_REC)
                kept = 0
                for st, ms in _KEPT.items():
                    kept |= ms if os.statvfs(folder).f_flag & st else 0
                _mount(libc, None, folder, None, MS_REMOUNT | MS_BIND | kept)
            except OSError:
                pass
    missing += _no_shm(libc, tuple(mounts.hide) if mounts.sealed else ("/dev/shm", *mounts.hide))
    try:  # the PID namespace's own /proc: the handler sees its processes, not the host's
        _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass
    return missing


# -- namespaces for the fork server (Linux) ---------------------------------------------------------

CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000


def unshare(flags: int) -> None:
    """unshare(2) (``os.unshare`` exists only from Python 3.12)."""
    if _libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "unshare")


def setns(fd: int, nstype: int) -> None:
    """setns(2): back into a namespace this process holds ``fd`` of."""
    if _libc().setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "setns")
