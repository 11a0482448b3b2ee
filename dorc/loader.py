"""Reading a pipeline's ``__main__.py``: run it with ``apply()`` in capture mode, take the definition.

Files written for the seed project import from ``infrastructure.core...``; those module paths
are provided as aliases of dorc's public API so such files load unchanged.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import contextlib
import os
import runpy
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .errors import DefinitionError, DorcError, Problem
from .models import InvalidFunction, PipelineDefinition, collected_invalid
from .pipeline import CAPTURE, Capture, PipelineConfig
from .project import Project

#: The name Pulumi's Python language host gives a program's ``__main__.py``; dorc loads it the same way.
PROGRAM_RUN_NAME = "__main__"
_LEGACY = {
    "infrastructure": None,
    "infrastructure.core": None,
    "infrastructure.core.models": None,
    "infrastructure.core.Creator": ("CreatePipeline", "load_config", "PipelineConfig"),
    "infrastructure.core.creator": ("CreatePipeline", "load_config", "PipelineConfig"),  # the seed's other spelling
    "infrastructure.core.models.definition": (
        "PipelineDefinition", "Function", "NextFunction", "FunctionType", "NextFunctionTypes", "CronTrigger",
        "S3Trigger", "Permission",
    ),
}
#: Seed modules with names common enough that a project may have its own (``utils``): served only
#: when nothing on ``sys.path`` provides them, and dropped from ``sys.modules`` after each load.
_FALLBACK: dict[str, dict[str, str]] = {  # module -> {seed name: dorc's}
    "utils": {},
    "utils.config": {"load_config": "load_config", "PipelineConfig": "PipelineConfig", "Config": "SeedConfig",
                     "UniversalConfig": "SeedConfig", "LayerConfig": "SeedConfig", "rAPIdConfig": "SeedConfig"},
}


def install_legacy_imports() -> None:
    """Make ``from infrastructure.core.Creator import CreatePipeline`` (the seed's paths) work."""
    from . import models, pipeline

    public = {**{n: getattr(models, n) for n in dir(models) if not n.startswith("_")},
              **{n: getattr(pipeline, n) for n in dir(pipeline) if not n.startswith("_")}}
    for name, exports in _LEGACY.items():
        if name in sys.modules:
            continue
        mod = types.ModuleType(name, f"alias of dorc's public API (seed import path {name})")
        mod.__path__ = []  # a package, so submodules resolve
        for attr in exports or ():
            setattr(mod, attr, public[attr])
        sys.modules[name] = mod
    for name in _LEGACY:
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])
    if not any(isinstance(f, _FallbackFinder) for f in sys.meta_path):
        sys.meta_path.append(_FallbackFinder(public))  # last: a project's own module wins


class _FallbackFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``from utils.config import load_config`` (the seed's generated ``__main__.py``), when no
    ``utils`` of the project's answers it."""

    #: Answers only while a definition is read (a handler's ``import utils`` must fail as in AWS).
    active = False

    def __init__(self, public: dict):
        self._public = public

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _FALLBACK or not _FallbackFinder.active:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec):
        return None  # the default module

    def exec_module(self, module) -> None:
        module.__doc__ = f"alias of dorc's public API (seed import path {module.__name__})"
        module.__dorc_alias__ = True
        for attr, ours in _FALLBACK[module.__name__].items():
            setattr(module, attr, self._public[ours])


def _drop_layer_modules(folder: Path, before: set[str]) -> None:
    """Modules a definition imported from its own folder (``utils.py`` beside ``__main__.py``): another
    layer's file of the same name, or a handler's, must not find them in ``sys.modules``."""
    prefix = str(folder.resolve()) + os.sep
    for name in set(sys.modules) - before:
        file = getattr(sys.modules.get(name), "__file__", None) or ""
        if file and os.path.realpath(file).startswith(prefix):
            del sys.modules[name]


def _drop_fallback_modules() -> None:
    """A handler's own ``utils`` must not find the seed alias that a definition imported."""
    for name in _FALLBACK:
        if getattr(sys.modules.get(name), "__dorc_alias__", False):
            del sys.modules[name]


@dataclass(frozen=True)
class LoadedPipeline:
    instance: str
    layer: str
    main_file: Path
    config: PipelineConfig
    definition: PipelineDefinition

    @property
    def layer_dir(self) -> Path:
        return self.main_file.parent

    @property
    def key(self) -> str:
        return f"{self.instance}/{self.layer}"

    def function_dir(self, name: str) -> Path:
        """Where a function's code lives: ``<layer>/src/<name>/``."""
        return self.layer_dir / "src" / name


def load_pipeline(project: Project, instance: str, layer: str, env: str) -> LoadedPipeline:
    """Execute ``__main__.py`` in capture mode. Any failure becomes a ``DefinitionError``."""
    main_file = project.main_file(instance, layer)
    rel = project.display_path(main_file)
    install_legacy_imports()
    cap = Capture(env=env, project=project)
    token = CAPTURE.set(cap)
    invalid: list[InvalidFunction] = []
    invalid_token = collected_invalid.set(invalid)
    saved_path = list(sys.path)
    sys.path.insert(0, str(main_file.parent))
    exits: list[_ProcessExit] = []
    exit_guard = _ExitWhileLoading.active(exits)  # os._exit would end dorc at once, silently
    exit_guard.__enter__()
    _FallbackFinder.active = True
    modules_before = set(sys.modules)
    try:
        # As Pulumi's Python language host runs a program: as the ``__main__`` module, so the common
        # ``if __name__ == "__main__": CreatePipeline(...).apply()`` guard holds here too. runpy puts
        # a fresh ``__main__`` in sys.modules while the file runs and restores the real one after.
        runpy.run_path(str(main_file), run_name=PROGRAM_RUN_NAME)
    except ValidationError as exc:
        raise DefinitionError(_problems_from_validation(rel, exc)) from None
    except DorcError:  # a missing Pulumi.<env>.yaml, an invalid dorc.toml: said as it is
        raise
    except SystemExit as exc:  # would end dorc itself (silently, with the file's exit code)
        raise DefinitionError(_function_problems(rel, invalid) + [_exit_problem(rel, main_file, exc)]) from None
    except _ProcessExit as exc:
        raise DefinitionError(_function_problems(rel, invalid) + [_exit_problem(rel, main_file, exc)]) from None
    except Exception as exc:  # the user's file itself is broken
        raise DefinitionError(_function_problems(rel, invalid) + [_load_failure(rel, main_file, exc)]) from None
    finally:
        exit_guard.__exit__(None, None, None)
        _FallbackFinder.active = False
        CAPTURE.reset(token)
        collected_invalid.reset(invalid_token)
        sys.path[:] = saved_path
        _drop_fallback_modules()
        _drop_layer_modules(main_file.parent, modules_before)
    if exits:  # called, and the exception it raised was caught by the file: in Pulumi the process is gone
        raise DefinitionError(_function_problems(rel, invalid) + [_exit_problem(rel, main_file, exits[0])])
    if invalid:
        raise DefinitionError(_function_problems(rel, invalid))
    if not cap.definitions:
        raise DefinitionError(
            [Problem(rel, "defines no pipeline: it must call CreatePipeline(config, definition).apply()")]
        )
    if len(cap.definitions) > 1:
        raise DefinitionError([Problem(rel, "calls CreatePipeline(...).apply() more than once; one layer per file")])
    config, definition = cap.definitions[0]
    return LoadedPipeline(instance, layer, main_file, config, definition)


def _function_problems(file: str, invalid: list[InvalidFunction]) -> list[Problem]:
    out = []
    for exc in invalid:
        for e in exc.error.errors():
            where = '.'.join(map(str, e['loc'])) or 'function'
            messages = _environment_messages(e) or [e['msg'].removeprefix('Value error, ')]
            out += [Problem(file, f"{where}: {msg}", exc.name) for msg in messages]
    return out


def _environment_messages(error: dict) -> list[str]:
    """``Function.environment``'s rule stops at the first bad name; the user needs every one, so
    the same rule is asked again about each name on its own."""
    data = error.get("input")
    if tuple(error.get("loc", ())) != ("environment",) or error.get("type") != "value_error" or not isinstance(data, dict):
        return []
    from .models import Function

    messages = []
    for key, value in data.items():
        try:
            Function._env({key: value})
        except ValueError as exc:
            messages.append(str(exc))
    return messages


def _user_line(main_file: Path, exc: BaseException) -> str:
    """`` (line N: source)`` of the innermost frame in the user's file, or ``""``."""
    import traceback

    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == main_file.resolve():
            return f" (line {frame.lineno}: {(frame.line or '').strip()})"
    return ""


def _load_failure(file: str, main_file: Path, exc: Exception) -> Problem:
    """Where in the user's file it broke, not where in dorc."""
    return Problem(file, f"loading failed: {type(exc).__name__}: {exc}{_user_line(main_file, exc)}")


class _ProcessExit(BaseException):
    """What ``os._exit(code)`` raises while dorc loads a definition (BaseException: an
    ``except Exception`` in the file must not swallow it)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class _ExitWhileLoading:
    """``os._exit`` replaced while any thread loads a definition (two runs in threads load at
    once): a call from a loading thread fails that load, a call from any other thread is the
    real ``os._exit``. The real one is put back when the last load ends, whatever the order."""

    _lock = threading.Lock()
    _real = None
    _loading: dict[int, list[_ProcessExit]] = {}

    @classmethod
    @contextlib.contextmanager
    def active(cls, calls: list[_ProcessExit]):
        me = threading.get_ident()
        with cls._lock:
            if not cls._loading:
                cls._real = os._exit
                os._exit = cls._exit
            cls._loading[me] = calls
        try:
            yield
        finally:
            with cls._lock:
                cls._loading.pop(me, None)
                if not cls._loading:
                    os._exit = cls._real

    @classmethod
    def _exit(cls, code: int) -> None:
        calls = cls._loading.get(threading.get_ident())
        if calls is None:
            cls._real(code)
        exc = _ProcessExit(code)
        calls.append(exc)
        raise exc


def _exit_problem(file: str, main_file: Path, exc: SystemExit | _ProcessExit) -> Problem:
    code = "" if exc.code is None else repr(exc.code)
    call = "os._exit" if isinstance(exc, _ProcessExit) else "sys.exit"
    return Problem(file, f"called {call}({code}) while dorc loaded it{_user_line(main_file, exc)}; remove it: "
                         "a pipeline definition must run to its end, under dorc as under Pulumi")


def _problems_from_validation(file: str, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = err.get("loc", ())
        function = None
        # loc like ('functions', 2, 'timeout'): name the function by its index when we can
        if len(loc) >= 2 and loc[0] == "functions" and isinstance(loc[1], int):
            inp = err.get("input")
            function = f"#{loc[1] + 1}"
            if isinstance(inp, dict) and "name" in inp:
                function = str(inp["name"])
        field = ".".join(str(p) for p in loc if not isinstance(p, int) and p not in ("functions",)) or "definition"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        problems.append(Problem(file, f"{field}: {msg}", function))
    return problems


def run_as_pulumi_program(main_file: str) -> None:
    """Entry of the generated Pulumi workspace: the user's file, with the seed's import paths."""
    from pathlib import Path as _Path

    install_legacy_imports()
    _FallbackFinder.active = True  # this process runs the program only
    folder = str(_Path(main_file).parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    runpy.run_path(main_file, run_name=PROGRAM_RUN_NAME)
