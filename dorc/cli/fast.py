"""Command lines answered without typer: importing it and building the command tree is about
60 ms, a fifth of a ``dorc validate``.

Only a command line read here completely: the command, its arguments, its options as ``--name
VALUE`` or ``--name=VALUE``, once each. Anything else (``--help``, an option not listed here, a
missing value, ``--``) goes to typer, which answers it as always, so a mistake is still said by
click. Each command here is a typer command too, with the same arguments, options and
environment variables; ``tests/test_cli_speed_paths.py`` keeps the two in step.
"""

from __future__ import annotations

import os
from typing import Callable

#: command -> (its arguments in order, {option: parameter}, {parameter: environment variable})
COMMANDS: dict[str, tuple[tuple[str, ...], dict[str, str], dict[str, str]]] = {
    "validate": (("instance", "layer"), {"--env": "env", "--config-repo": "config_repo"},
                 {"config_repo": "CONFIG_REPO_PATH"}),
}


def fast_command(argv: list[str]) -> Callable[[], int] | None:
    """The command ``argv`` (without the program name) asks for, ready to run; None: typer's to read."""
    if not argv or argv[0] not in COMMANDS:
        return None
    arguments, options, env_vars = COMMANDS[argv[0]]
    values: dict[str, str] = {}
    given: list[str] = []
    rest = argv[1:]
    while rest:
        token, rest = rest[0], rest[1:]
        if not token or token == "-":
            return None
        if not token.startswith("-"):
            given.append(token)
            continue
        name, eq, value = token.partition("=")
        if name not in options or options[name] in values:
            return None
        if not eq:
            if not rest or rest[0].startswith("-"):
                return None
            value, rest = rest[0], rest[1:]
        if not value:
            return None
        values[options[name]] = value
    if len(given) > len(arguments):
        return None
    values.update(zip(arguments, given))
    for param, var in env_vars.items():
        if param not in values and var in os.environ:
            if not os.environ[var]:
                return None  # how an empty variable reads is click's to say
            values[param] = os.environ[var]
    return lambda: _run(argv[0], values)


def _run(command: str, values: dict[str, str]) -> int:
    if command == "validate":
        from .validating import validate_and_show

        return validate_and_show(values.get("instance"), values.get("layer"), values.get("env"),
                                 values.get("config_repo"))
    raise AssertionError(f"no fast path for {command}")  # pragma: no cover
