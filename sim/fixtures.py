"""Local stand-ins for outside services, named in ``dorc.toml`` as ``{sim.<name>}``.

A value like ``CENSUS_API_URL = "{sim.census_api}/data/2020/dec/pl"`` under ``[local.environment]``
starts the named fixture (once, on 127.0.0.1, on a free port) and substitutes its base URL.
"""

from __future__ import annotations

import re
from typing import Callable

_PLACEHOLDER = re.compile(r"\{sim\.([a-z_][a-z0-9_]*)\}")


def _census_api(port: int = 0):
    from .census_api import CensusAPIServer

    return CensusAPIServer(port=port)


FIXTURES: dict[str, Callable[..., object]] = {"census_api": _census_api}
# Used when the URL is written into deployed configuration (LocalStack): a fixed port keeps the
# function's environment, and so its configuration, unchanged from one run to the next.
STABLE_PORTS = {"census_api": 4580}


class UnknownFixture(KeyError):
    pass


class Fixtures:
    """Starts fixtures on first use; ``close()`` stops every one it started."""

    def __init__(self, *, stable_ports: bool = False):
        self._running: dict[str, object] = {}
        self._stable = stable_ports

    def url(self, name: str) -> str:
        if name not in FIXTURES:
            raise UnknownFixture(f"unknown sim fixture {{sim.{name}}}; known: {', '.join(sorted(FIXTURES))}")
        if name not in self._running:
            server = None
            if self._stable and name in STABLE_PORTS:
                try:
                    server = FIXTURES[name](STABLE_PORTS[name])
                except OSError:  # taken (another run): any free port will do
                    server = None
            server = server or FIXTURES[name]()
            server.start()
            self._running[name] = server
        return self._running[name].url  # type: ignore[attr-defined]

    def render(self, value: str) -> str:
        return _PLACEHOLDER.sub(lambda m: self.url(m.group(1)), value)

    def close(self) -> None:
        for server in self._running.values():
            server.stop()  # type: ignore[attr-defined]
        self._running.clear()

    def __enter__(self) -> "Fixtures":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def placeholders(value: str) -> list[str]:
    return _PLACEHOLDER.findall(value)
