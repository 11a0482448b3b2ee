"""What a daemon loaded, as a short text: dorc's and dorc_sim's source files (names, sizes,
modification times), the site-packages folders' modification times (a package installed,
removed or upgraded changes them) and the Python executable. The daemon records it when it
starts; the client computes it again before each warm run and runs cold when they differ.

Stat calls only, no file contents read: a few hundred files cost about a millisecond.
Standard library only (the client runs it before anything heavy).
"""

from __future__ import annotations

import os
import sys
import zlib


def digest() -> str:
    parts = [sys.executable]
    for root in _source_roots():
        parts.append(root)
        _files(root, "", parts)
    for site_dir in _site_folders():
        try:
            parts.append(f"{site_dir}:{os.stat(site_dir).st_mtime_ns}")
        except OSError:
            pass
    text = "\n".join(parts).encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}{len(parts)}"


def _source_roots() -> list[str]:
    import dorc

    roots = [os.path.dirname(os.path.realpath(dorc.__file__))]
    try:
        import importlib.util

        spec = importlib.util.find_spec("dorc_sim")  # found, not imported
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        roots += [os.path.realpath(p) for p in spec.submodule_search_locations]
    return roots


def _files(root: str, relative: str, out: list[str]) -> None:
    try:
        entries = list(os.scandir(os.path.join(root, relative) if relative else root))
    except OSError:
        return
    for entry in sorted(entries, key=lambda e: e.name):
        name = f"{relative}/{entry.name}" if relative else entry.name
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__" and not entry.name.startswith("."):
                _files(root, name, out)
        elif entry.name.endswith(".py"):
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")


def _site_folders() -> list[str]:
    site = sys.modules.get("site")
    if site is None:
        return []
    folders = list(getattr(site, "getsitepackages", list)())
    user = getattr(site, "USER_SITE", None)
    return [*folders, *([user] if user else [])]


def startup_environment() -> dict[str, str]:
    """The variables Python reads only when it starts (``PYTHONPATH``, ``PYTHONHASHSEED``, ...):
    a run whose differ from the daemon's would not start as it did, so it runs cold."""
    return {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}
