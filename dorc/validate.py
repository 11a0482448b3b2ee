"""Whole-definition rules: folders, handlers and the shape of the chain, checked once, here.

Every rule adds a ``Problem`` instead of raising, so ``dorc validate`` can list them all.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

from .errors import Problem
from .loader import LoadedPipeline
from .graph import chain, handover_key
from .models import FunctionType

# What an instance or layer folder may be called: the characters of a Lambda function's name.
AWS_NAME_PART_RE = re.compile(r"[A-Za-z0-9_-]+")

HANDLER_FILE = "lambda.py"
_IGNORED_DIRS = {"__pycache__"}


def check_definition(pipeline: LoadedPipeline, known_layers: set[str]) -> list[Problem]:
    """``known_layers``: ``instance/layer`` keys that exist, to check hand-overs."""
    problems: list[Problem] = []
    problems += _check_folder_names(pipeline)
    problems += _check_folders(pipeline)
    problems += _check_graph(pipeline, known_layers)
    return problems


def _check_folder_names(p: LoadedPipeline) -> list[Problem]:
    """The instance and layer folders name the deployed Lambda functions, state machine and rules,
    whose names AWS limits to ASCII letters, digits, '-' and '_'."""
    out = []
    for what, name, folder in (("instance", p.instance, p.layer_dir.parent), ("layer", p.layer, p.layer_dir)):
        if not AWS_NAME_PART_RE.fullmatch(name):
            out.append(Problem(rel_path(p, p.main_file), f"{what} folder {name!r} ({rel_path(p, folder)}) cannot be part "
                                                         "of AWS names (Lambda functions, state machine, rules): rename "
                                                         "the folder with letters, digits, '-' and '_' only"))
    return out


def _check_folders(p: LoadedPipeline) -> list[Problem]:
    out: list[Problem] = []
    file = rel_path(p, p.main_file)
    declared = {f.name for f in p.definition.functions}
    for fn in p.definition.functions:
        handler = p.function_dir(fn.name) / HANDLER_FILE
        if not handler.is_file():
            out.append(Problem(file, f"{rel_path(p, handler)} does not exist; create it with "
                                     "`def handler(event, context):`", fn.name))
            continue
        msg = handler_problem(handler)
        if msg:
            out.append(Problem(rel_path(p, handler), msg, fn.name))
    src = p.layer_dir / "src"
    if src.is_dir():
        for d in sorted(src.iterdir()):
            if d.is_dir() and d.name not in _IGNORED_DIRS and not d.name.startswith(".") and d.name not in declared:
                out.append(Problem(file, f"folder {rel_path(p, d)} is not declared as a function; "
                                         f"add Function(name={d.name!r}) or remove the folder"))
    return out


def handler_problem(path: Path) -> str | None:
    """Checks ``handler(event, context)`` statically: loading the user's module could have effects."""
    return _source_problem(path.read_text())


@lru_cache(maxsize=1024)
def _source_problem(source: str) -> str | None:
    """Parsed once per text: a layer is checked in every environment it meets, and generated
    handlers are often alike."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"syntax error at line {exc.lineno}: {exc.msg}"
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "handler":
            return f"line {node.lineno}: handler is `async def`; Lambda's Python runtime calls a plain `def handler(event, context)`"
        if isinstance(node, ast.FunctionDef) and node.name == "handler":
            a = node.args
            positional = len(a.posonlyargs) + len(a.args)
            required = positional - len(a.defaults)
            takes_two = positional >= 2 or a.vararg is not None
            kwonly_required = any(d is None for d in a.kw_defaults)
            if not takes_two or required > 2 or kwonly_required:
                return (f"line {node.lineno}: handler must take two positional parameters, "
                        "`def handler(event, context):`")
            return None
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.ImportFrom, ast.Import)):
            targets = []
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            else:
                targets = [(al.asname or al.name) for al in node.names]
            if "handler" in targets:
                return None  # bound dynamically; checked when it runs
    return "defines no `handler(event, context)` function"


def _check_graph(p: LoadedPipeline, known_layers: set[str]) -> list[Problem]:
    out: list[Problem] = []
    file = rel_path(p, p.main_file)
    fns = p.definition.functions
    names = [f.name for f in fns]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            out.append(Problem(file, f"function name {n!r} is declared more than once", n))
        seen.add(n)
    by_name = {f.name: f for f in fns}
    incoming: dict[str, list[str]] = {n: [] for n in by_name}
    for f in fns:
        nxt = f.next
        if nxt is None:
            continue
        if nxt.type == FunctionType.Pipeline.value:
            target = handover_key(p.instance, nxt.name)
            if target == p.key:
                out.append(Problem(file, f"hands over to its own pipeline {target}", f.name))
            elif target not in known_layers:
                out.append(Problem(file, f"hands over to pipeline {target}, which does not exist "
                                         f"(known: {', '.join(sorted(known_layers)) or 'none'})", f.name))
            continue
        if nxt.name not in by_name:
            out.append(Problem(file, f"next_function {nxt.name!r} is not a declared function "
                                     f"(declared: {', '.join(names)})", f.name))
            continue
        if nxt.name == f.name:
            out.append(Problem(file, "next_function points at itself (a cycle)", f.name))
            continue
        incoming[nxt.name].append(f.name)
    for target, sources in incoming.items():
        if len(sources) > 1:
            out.append(Problem(file, f"is the next_function of {', '.join(sources)}; a pipeline is one chain", target))
    if out:
        return out
    starts = [n for n, src in incoming.items() if not src]
    ends = [f.name for f in fns if f.next is None or f.next.type == FunctionType.Pipeline.value]
    if len(starts) != 1:
        out.append(Problem(file, "a pipeline needs exactly one start function (one that no next_function "
                                 f"points to); found {len(starts)}: {', '.join(starts) or 'none (cycle)'}"))
    if len(ends) != 1:
        out.append(Problem(file, "a pipeline needs exactly one end function (without a next function, or "
                                 f"handing over to a pipeline); found {len(ends)}: {', '.join(ends) or 'none (cycle)'}"))
    if out:
        return out
    reached = {f.name for f in chain(fns)}
    missing = [n for n in names if n not in reached]
    if missing:
        out.append(Problem(file, f"unreachable from the start function {starts[0]!r} (part of a cycle): "
                                 f"{', '.join(missing)}"))
    return out


def rel_path(p: LoadedPipeline, path: Path) -> str:
    return p.config.project.display_path(path)
