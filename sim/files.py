"""Files several processes share: replaced whole, never seen half-written, and locked across
processes. Used by the local AWS server's store and its start-up, and by the runtime dir's
byte-code stamps. Standard library only."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".tmp-"  # a temporary file of ``write_atomic`` (a crash can leave one: the store's check knows it)


def write_atomic(target: Path, data: bytes) -> None:
    """``target`` holds either its old bytes or ``data``, never a part; the temporary file has a
    unique name (several writers may replace one file at once) and is gone on failure."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
    try:
        os.fchmod(fd, 0o644)  # as a plain write would leave it (mkstemp's is 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: Path, mode: int = fcntl.LOCK_EX):
    """An ``flock`` on ``path`` (created with its folder), across processes; released on exit, or
    when the process ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, mode)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
