"""Local stand-ins for outside services: declared by the pipeline-config, named as ``{sim.<name>}``.

``dorc.toml`` declares each fixture with a module of its own (a file in the pipeline-config folder)::

    [fixtures.weather_api]
    module = "fixtures/weather_api.py"   # relative to the folder of dorc.toml
    factory = "WeatherAPIServer"         # callable(port=0) -> object with start(), stop(), url
    port = 4581                          # optional: fixed port for deployed configuration

and a value under ``[local.environment]`` such as ``"{sim.weather_api}/v1/forecast"`` starts it
(once per run, on first use) and is replaced by its ``url``. ``Fixtures`` is that mechanism and
knows nothing of any particular fixture: the module is loaded by its file path, under a name of its
own (``dorc_fixture_<name>_<hash of the path>``), never as a top-level module of the user's.

Standard library only, and no import of ``dorc``: errors are ``FixtureError`` (message and hint),
which dorc turns into its own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Protocol

NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")  # a fixture's name, as ``{sim.<name>}`` can spell it
_PLACEHOLDER = re.compile(r"\{sim\.([a-z_][a-z0-9_]*)\}")
_MENTION = re.compile(r"\{sim\.([^{}]*)\}")  # anything written like a placeholder, well-formed or not


class FixtureSpecLike(Protocol):
    """What a declaration provides (``dorc.project.FixtureSpec``)."""

    name: str
    module: str  # absolute path of the module file
    factory: str
    port: int | None
    declared_in: str  # the settings file, for messages


class FixtureError(Exception):
    """A fixture that cannot be named, loaded, built or started. ``hint`` says what to change."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UnknownFixture(FixtureError):
    """``{sim.<name>}`` names no declared fixture."""


class Fixtures:
    """The declared fixtures of a run: each starts on first use; ``close()`` stops every one started.

    ``stable_ports``: start a fixture on its declared ``port`` (any free port if that one is taken),
    for URLs written into deployed configuration (LocalStack), which then stays the same between runs.
    """

    def __init__(self, specs: Mapping[str, FixtureSpecLike] | None = None, *, stable_ports: bool = False):
        self._specs = dict(specs or {})
        self._running: dict[str, _Running] = {}
        self._stable = stable_ports

    @classmethod
    def for_plans(cls, plans: Mapping[str, Any] | Iterable[Any], *, stable_ports: bool = False) -> "Fixtures":
        """The fixtures declared for these plans (``LayerPlan.local_fixtures``; one project's, so the same)."""
        specs: dict[str, FixtureSpecLike] = {}
        for plan in (plans.values() if isinstance(plans, Mapping) else plans):
            specs.update(getattr(plan, "local_fixtures", None) or {})
        return cls(specs, stable_ports=stable_ports)

    @property
    def declared(self) -> list[str]:
        return sorted(self._specs)

    def url(self, name: str) -> str:
        if name not in self._specs:
            raise UnknownFixture(
                f"{{sim.{name}}} names no declared fixture; declared: {', '.join(self.declared) or 'none'}",
                hint=f"declare it in dorc.toml as [fixtures.{name}] with module and factory, or correct the name")
        if name not in self._running:
            self._running[name] = _start(self._specs[name], self._stable)
        return self._running[name].url

    def render(self, value: str) -> str:
        """``value`` with each ``{sim.<name>}`` replaced by that fixture's URL (started if need be)."""
        return _PLACEHOLDER.sub(lambda m: self.url(m.group(1)), value)

    def close(self) -> None:
        """Stops every fixture started, even when one of them fails to stop (that error is raised last)."""
        running, self._running = self._running, {}
        failed: BaseException | None = None
        for fixture in running.values():
            try:
                fixture.server.stop()
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    def __enter__(self) -> "Fixtures":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def placeholders(value: str) -> list[str]:
    """The fixture names a value refers to, well-formed or not (``{sim.Bad-Name}`` gives ``Bad-Name``)."""
    return _MENTION.findall(value)


def module_name(spec: FixtureSpecLike) -> str:
    """The name the module is loaded under: its own, so two projects' ``fixtures/api.py`` never meet."""
    digest = hashlib.sha256(str(Path(spec.module).resolve()).encode()).hexdigest()[:12]
    return f"dorc_fixture_{spec.name}_{digest}"


def load_module(spec: FixtureSpecLike) -> ModuleType:
    """Execute the module file afresh (an edit shows in the next run)."""
    where = f"{spec.declared_in}: [fixtures.{spec.name}] module = {spec.module!r}"
    path = Path(spec.module)
    if not path.is_file():
        raise FixtureError(f"{where}: the file does not exist", hint="create it, or correct the path")
    name = module_name(spec)
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise FixtureError(f"{where}: cannot be loaded as a Python module", hint="give the path of a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses, pickle and typing look a module up by its name
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise FixtureError(f"{where}: loading it failed: {type(exc).__name__}: {exc}",
                           hint="fix the module (it runs in dorc's own interpreter)") from exc
    return module


def load_factory(spec: FixtureSpecLike) -> Callable[..., Any]:
    module = load_module(spec)
    where = f"{spec.declared_in}: [fixtures.{spec.name}] factory = {spec.factory!r}"
    if not hasattr(module, spec.factory):
        raise FixtureError(f"{where}: {spec.module} defines no {spec.factory!r}",
                           hint="define it there (a class or function taking port=0), or correct the name")
    factory = getattr(module, spec.factory)
    if not callable(factory):
        raise FixtureError(f"{where}: {spec.factory!r} is a {type(factory).__name__}, not something to call",
                           hint="name a class or function taking port=0 that returns an object with start(), "
                                "stop() and url")
    import inspect  # only when a run starts a fixture

    try:
        inspect.signature(factory).bind(port=0)
    except TypeError:
        raise FixtureError(f"{where}: {spec.factory}{inspect.signature(factory)} does not take port=",
                           hint="accept a keyword argument port (0: any free port)") from None
    except ValueError:  # no signature to read (some built-ins): the call will tell
        pass
    return factory


def _start(spec: FixtureSpecLike, stable: bool) -> "_Running":
    factory = load_factory(spec)
    if stable and spec.port:
        try:
            return _build(spec, factory, spec.port)
        except FixtureError as exc:
            if not isinstance(exc.__cause__, OSError):
                raise
            # taken (another run): any free port will do
    return _build(spec, factory, 0)


def _build(spec: FixtureSpecLike, factory: Callable[..., Any], port: int) -> "_Running":
    where = f"{spec.declared_in}: [fixtures.{spec.name}]"
    try:
        server = factory(port=port)
    except Exception as exc:
        raise FixtureError(f"{where}: {spec.factory}(port={port}) failed: {type(exc).__name__}: {exc}",
                           hint=f"fix {spec.module}") from exc
    missing = [a for a in ("start", "stop") if not callable(getattr(server, a, None))]
    if missing:
        raise FixtureError(f"{where}: {spec.factory}(port={port}) returned a {type(server).__name__} without "
                           f"{' or '.join(f'{m}()' for m in missing)}",
                           hint="return an object with start(), stop() and url")
    try:
        server.start()
        url = server.url
    except Exception as exc:
        _stop_quietly(server)
        raise FixtureError(f"{where}: starting it failed: {type(exc).__name__}: {exc}",
                           hint=f"fix {spec.module}") from exc
    if not isinstance(url, str) or not url:
        _stop_quietly(server)
        raise FixtureError(f"{where}: its url is {url!r}, not a URL", hint="make url a string such as http://127.0.0.1:PORT")
    return _Running(server, url.rstrip("/"))


def _stop_quietly(server: Any) -> None:
    try:
        server.stop()
    except Exception:
        pass


class _Running:
    def __init__(self, server: Any, url: str):
        self.server = server
        self.url = url
