"""``python -m dorc.daemon serve FOLDER``: the daemon process (``dorc daemon start`` starts it).
``python -m dorc.daemon restart FOLDER``: replace a stale daemon (a run that found it stale
starts this in the background)."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        from .server import main

        main(sys.argv[2:])
    elif sys.argv[1:2] == ["restart"] and len(sys.argv) == 3:
        import os

        from . import control, paths

        os.environ[paths.DIR_VAR] = sys.argv[2]
        try:
            control.replace_stale()
        except control.DaemonError as exc:
            sys.exit(f"dorc daemon restart: {exc.message}")
    else:
        sys.exit("usage: python -m dorc.daemon serve|restart FOLDER (dorc daemon start runs it)")
