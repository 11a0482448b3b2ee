"""What typer would import for features dorc's command line does not use, left unimported.

- ``--help``: typer's help formatter (``typer.rich_utils``) imports rich's Markdown (markdown-it)
  and Traceback (pygments' syntax machinery), about 50 ms of a 0.2 s ``dorc --help``, for the
  ``"markdown"`` markup mode and pretty exceptions, neither of which dorc uses. They are imported
  when first used instead.
- Option values: typer converts each one with a pydantic ``TypeAdapter``; building the first
  imports much of pydantic (about 20 ms beyond what dorc's models need, 70 ms for a command that
  needs no models). A text option given text, or an option left at its default, needs no
  conversion; anything else still goes through typer's own.

Both lean on typer's internals; if those change, typer simply does its own thing (same output,
slower).
"""

from __future__ import annotations

import sys
import types
from typing import Any

try:
    from typer._coercion import RuntimeParam, build_runtime_param, resolve_type_descriptor
except ImportError:  # another typer: it converts values in its own way
    RuntimeParam = None

_DEFERRED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


def lean_help(format_help):
    """``format_help`` of a typer command, importing ``typer.rich_utils`` without what it defers."""
    def wrapper(ctx, formatter):
        if "typer.rich_utils" not in sys.modules:
            _import_rich_utils()
        return format_help(ctx, formatter)

    return wrapper


def _import_rich_utils() -> None:
    """Imports ``typer.rich_utils`` with stand-ins for the names in ``_DEFERRED``, then takes the
    stand-ins out of ``sys.modules`` again: later imports of those modules get the real ones."""
    placed = []
    for module, name in _DEFERRED.items():
        if module not in sys.modules:
            stand_in = _StandIn(module)
            setattr(stand_in, name, _Deferred(name, (), {"_module": module}))
            sys.modules[module] = stand_in
            placed.append(module)
    try:
        import typer.rich_utils  # noqa: F401
    finally:
        for module in placed:
            if isinstance(sys.modules.get(module), _StandIn):
                del sys.modules[module]


class _StandIn(types.ModuleType):
    """A module in ``sys.modules`` only while ``typer.rich_utils`` is imported."""


class _Deferred(type):
    """A class standing for rich's class of the same name: using it (calling it, reading an
    attribute) imports the real one and uses that."""

    def _real(cls) -> type:
        from importlib import import_module

        return getattr(import_module(cls._module), cls.__name__)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._real(), name)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls._real())


def lean_values(param) -> None:
    """Gives ``param`` (a typer parameter) a converter that skips pydantic when nothing needs converting."""
    descriptor = getattr(param, "type_descriptor", None)
    if RuntimeParam is None or descriptor is None or getattr(param, "_runtime_param", False) is not None:
        return  # another typer, or one that converts in its own way: left alone
    info, kind = descriptor.parameter_info, descriptor.annotation
    if kind not in (str, int, float, bool) or info.parser is not None or descriptor.file_annotation is not None or (
            kind in (int, float) and (info.min is not None or info.max is not None or info.clamp)):
        return
    param._runtime_param = _Lean(parameter_info=info, annotation=kind)


if RuntimeParam is not None:
    class _Lean(RuntimeParam):
        """A value already of the option's type (text as given, a default) as it is; anything else:
        typer's own conversion."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is self.annotation:
                return value
            full = self.__dict__.get("_full")
            if full is None:
                full = build_runtime_param(resolve_type_descriptor(self.annotation, self.parameter_info))
                object.__setattr__(self, "_full", full)
            return full._coerce_value(value, param=param, ctx=ctx)
