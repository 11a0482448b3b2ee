"""Where the daemon lives: a folder only its user can open, one per user and dorc installation.

    daemon.sock   the unix socket (0600) runs connect to; no TCP port is ever bound
    daemon.json   {"pid", "digest", "python", "started"}: what stop checks and clients compare
    daemon.log    the daemon's own output (a failed start is explained there)
    daemon.lock   held by whoever starts or stops it

``DORC_DAEMON_DIR`` names the folder itself (tests; several installations side by side).
Standard library only: the client reads these paths before importing anything heavy.
"""

from __future__ import annotations

import os
import sys
import zlib

DIR_VAR = "DORC_DAEMON_DIR"
SOCKET = "daemon.sock"
RECORD = "daemon.json"
LOG = "daemon.log"
LOCK = "daemon.lock"


class FolderError(Exception):
    """The daemon's folder is not private to this user; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message = message
        self.hint = hint


def folder() -> str:
    """The daemon's folder for this user and this dorc installation (not created here)."""
    given = os.environ.get(DIR_VAR, "")
    if given:
        return os.path.abspath(given)
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime):
        base = os.path.join(runtime, "dorc")
    else:
        base = os.path.join(os.path.expanduser("~"), ".cache", "dorc", "daemon")
    import dorc

    installation = f"{os.path.realpath(os.path.dirname(dorc.__file__))}\0{sys.executable}"
    return os.path.join(base, f"{zlib.crc32(installation.encode('utf-8', 'surrogateescape')):08x}")


def private_folder() -> str:
    """The folder, created 0700 if missing; one another user could open is refused."""
    path = folder()
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise FolderError(f"the dorc daemon's folder {path} belongs to another user",
                          hint=f"remove it, or set {DIR_VAR} to a folder of your own")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours: make it private before a socket goes in
    return path


def file(name: str, base: str | None = None) -> str:
    return os.path.join(base or folder(), name)
