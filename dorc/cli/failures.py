"""What every command's failure looks like, and its exit code.

Exit codes: 0 success; 1 the pipeline ran and failed; 2 invalid definition, project, command
line or a missing tool (nothing ran); 3 an internal error in dorc (a bug: one line, and the
traceback with ``DORC_DEBUG=1``); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn

from ..errors import DorcError, FileSystemError

INTERNAL_ERROR = 3
DEBUG_VAR = "DORC_DEBUG"


def run_guarded(call: Callable[[], int | None]) -> NoReturn:
    """Runs a command and exits with its code: user mistakes become one message and exit code 2;
    a file the machine refuses (permissions, a full disk) one message naming it; anything else
    is a bug in dorc: one line asking for a report, exit 3, the traceback only with ``DORC_DEBUG=1``."""
    try:
        code = call()
    except DorcError as exc:
        from ..render import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.filename:  # the machine refused a file: say which, and the fix
            from ..render import print_error

            error = FileSystemError.from_os_error(exc)
            print_error(error)
            sys.exit(error.exit_code)
        if os.environ.get(DEBUG_VAR, "") not in ("", "0"):
            raise
        _internal_error(exc)
        sys.exit(INTERNAL_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


def _internal_error(exc: Exception) -> None:
    """A bug in dorc, not the user's mistake: say so in one line, where it broke, and how to see more."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = next((f" at {os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames)
                  if os.sep + "dorc" in f.filename), "")
    message = str(exc).splitlines()[0] if str(exc) else ""
    sys.stderr.write(f"internal error in dorc: {type(exc).__name__}{': ' + message if message else ''}{where}\n"
                     f"  this is a bug in dorc, please report it with the command you ran; "
                     f"{DEBUG_VAR}=1 shows the traceback\n")
