"""The ``dorc`` executable.

Nothing here imports typer: a local ``run``/``invoke`` goes to a running ``dorc daemon``
(``dorc.daemon.client``) when there is one; a command line ``dorc.cli.fast`` reads completely is
answered without typer; any other goes to ``dorc.cli.app.main``. Failures and exit codes: ``dorc.cli.failures``.
"""

from __future__ import annotations

import gc
import sys


def console_main() -> None:
    """The ``dorc`` executable: the command, then a faster exit.

    What a run loaded (moto, botocore's service models) lives until the process ends; the
    interpreter's last garbage collections would walk all of it, about 0.3 s of a 1.5 s local run.
    Freezing moves it out of their way; files are still flushed and closed as usual. Only for the
    process entry point: ``main()`` called in-process (tests) keeps collecting normally.
    """
    try:
        if sys.argv[1:2] in (["run"], ["invoke"]):  # a local run: a running dorc daemon runs it warm
            from ..daemon.client import warm_run

            code = warm_run(sys.argv)
            if code is not None:
                sys.exit(code)
        from .fast import fast_command

        call = fast_command(sys.argv[1:])
        if call is not None:
            from .failures import run_guarded

            run_guarded(call)
        from .app import main

        main()
    finally:
        gc.freeze()
