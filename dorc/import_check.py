"""Imports a function's package cannot satisfy in AWS.

A handler runs locally with dorc's own environment on ``sys.path``; in AWS it has only the standard
library, its own folder, what the Lambda Python runtime ships and what requirements.txt vendors. So
"passes locally" would hide a ``Runtime.ImportModuleError``: this check finds it statically (``ast``;
the user's modules are never imported). Used by ``dorc validate``.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .errors import Problem
from .loader import LoadedPipeline
from .project import Project

#: Importable in every Lambda Python runtime without being packaged.
LAMBDA_RUNTIME_MODULES = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "awslambdaric"}
)
#: Standard-library modules removed in a Python version (a runtime at or above it lacks them).
_STDLIB_REMOVED = {
    (3, 12): frozenset({"asynchat", "asyncore", "distutils", "imp", "smtpd"}),
    (3, 13): frozenset({"aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "lib2to3", "mailcap",
                        "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib",
                        "uu", "xdrlib"}),
}
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def check_imports(p: LoadedPipeline) -> list[Problem]:
    """Every absolute import of a function's packaged ``.py`` files that AWS could not satisfy.

    Statically (``ast``): the user's modules are never imported. Imports guarded by ``try: ...
    except ImportError``, ``if TYPE_CHECKING:`` or ``if __name__ == "__main__":`` are not checked.
    """
    out: list[Problem] = []
    seen: set[str] = set()
    for fn in p.definition.functions:
        folder = p.function_dir(fn.name)
        if fn.name in seen or not folder.is_dir():
            continue
        seen.add(fn.name)
        out += function_import_problems(p.config.project, fn.name, folder, fn.runtime)
    return out


def function_import_problems(project: Project, function: str, folder: Path, runtime: str) -> list[Problem]:
    """Each import of one function that AWS could not satisfy. Cheap when every import is the
    standard library's, the function's own or the Lambda runtime's (the installed distributions
    are only read for the others)."""
    rel = project.display_path
    from .package import PackageError, source_files

    try:
        files = source_files(folder)  # what the package holds: the same files, the same exclusions
        declared = _declared(folder)
    except PackageError as exc:  # a link or a refused requirements option: no package could be built
        return [Problem(rel(folder), exc.message, function)]
    local = {arc.split("/", 1)[0].split(".", 1)[0] for arc, _ in files}
    provided: set[str] | None = None  # read lazily: it scans installed metadata
    stdlib = _stdlib_of(runtime)
    out: list[Problem] = []
    for arc, path in sorted(files):
        if not arc.endswith(".py"):
            continue
        try:
            imports = _imports_of(path.read_text())
        except (SyntaxError, ValueError, UnicodeDecodeError):
            continue  # lambda.py's own syntax errors are reported by the handler check
        reported: set[str] = set()
        for module, line in imports:
            if module in reported or module in local or module in LAMBDA_RUNTIME_MODULES or module in stdlib:
                continue
            if provided is None:
                provided = _closure(declared)
            msg = _import_problem(folder, runtime, module, line, declared, provided, rel)
            if msg:
                reported.add(module)
                out.append(Problem(rel(path), msg, function))
    return out


def _import_problem(folder: Path, runtime: str, module: str, line: int, declared: set[str], provided: set[str],
                    rel: Callable[[Path], str]) -> str | None:
    dists = _distributions().get(module, [])
    if any(_normalize(d) in provided for d in dists) or _normalize(module) in declared:
        return None
    requirements = rel(folder / "requirements.txt")
    if any(module in names for names in _STDLIB_REMOVED.values()):
        return (f"line {line}: imports {module!r}, which is not in the standard library of {runtime} (the "
                f"function's runtime: Python removed it); use a replacement, or declare a backport in {requirements}")
    if dists:
        dist, why = dists[0], "it imports here only because dorc's own environment has it"
    else:
        dist, why = module, "it is not installed here either"
    return (f"line {line}: imports {module!r}, which Lambda's {runtime} runtime does not provide and no "
            f"requirements.txt declares ({why}; in AWS the function fails with Runtime.ImportModuleError); "
            f"add {dist} to {requirements} (or to the layer's {rel(folder.parent.parent / 'requirements.txt')})")


@lru_cache(maxsize=1024)
def _imports_of(source: str) -> tuple[tuple[str, int], ...]:
    """``_absolute_imports`` of a module's text, parsed once: a layer is checked in every environment."""
    return tuple(_absolute_imports(ast.parse(source)))


def _absolute_imports(tree: ast.AST) -> list[tuple[str, int]]:
    """``(top-level module, line)`` of each absolute import that runs unguarded, at any depth."""
    out: list[tuple[str, int]] = []
    try_types = tuple(t for t in (ast.Try, getattr(ast, "TryStar", None)) if t is not None)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            out.extend((a.name.split(".")[0], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                out.append((node.module.split(".")[0], node.lineno))
        elif isinstance(node, try_types) and any(_catches_import_error(h) for h in node.handlers):
            for child in (*node.handlers, *node.orelse, *node.finalbody):
                visit(child)
        elif isinstance(node, ast.If) and (_is_type_checking(node.test) or _is_main_guard(node.test)):
            for child in node.orelse:
                visit(child)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)

    visit(tree)
    return out


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(_dotted_tail(t) in _IMPORT_ERRORS for t in types)


def _is_type_checking(test: ast.expr) -> bool:
    return _dotted_tail(test) == "TYPE_CHECKING"


def _is_main_guard(test: ast.expr) -> bool:
    """``if __name__ == "__main__":``: the Lambda runtime imports lambda.py as a module, never as the script."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def _dotted_tail(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _stdlib_of(runtime: str) -> frozenset[str]:
    """This interpreter's standard-library names, corrected to the function's runtime version."""
    import sys

    try:
        version = tuple(int(x) for x in runtime.removeprefix("python").split(".")[:2])
    except ValueError:
        version = sys.version_info[:2]
    names = set(sys.stdlib_module_names).union(*_STDLIB_REMOVED.values())
    for removed_in, modules in _STDLIB_REMOVED.items():
        if version >= removed_in:
            names -= modules
    return frozenset(names)


def _normalize(name: str) -> str:
    """PEP 503."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str | None:
    """The distribution a requirements.txt line installs: ``name[extra]>=1 ; marker``, ``name @ url``,
    ``...#egg=name``, a wheel's or an archive's file name, a repository URL; None for options (``-r``)."""
    import re

    egg = re.search(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    if egg:
        return egg.group(1)
    if line.startswith("-"):
        return None
    if "://" in line.split(" @ ", 1)[0] or line.endswith((".whl", ".tar.gz", ".zip")):
        tail = line.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].split("@", 1)[0]
        tail = re.sub(r"(\.git|\.whl|\.tar\.gz|\.zip)$", "", tail)
        return re.split(r"-(?=\d)", tail, maxsplit=1)[0] or None  # name-1.0-py3-none-any -> name
    m = re.match(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", line)
    return m.group(1) if m else None


def _declared(folder: Path) -> set[str]:
    """Normalized names in the function's and the layer's requirements.txt (as packaging reads them)."""
    from .package import requirements_for

    names = (_requirement_name(line.strip()) for line in requirements_for(folder))
    return {_normalize(n) for n in names if n}


def _closure(declared: set[str]) -> set[str]:
    """``declared`` and what they depend on, as far as the distributions installed here tell: pip
    vendors those too, so importing one works in AWS."""
    import importlib.metadata as md
    import re

    out, todo = set(declared), list(declared)
    while todo:
        try:
            requires = md.distribution(todo.pop()).requires or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            if re.search(r"\bextra\s*==", req):
                continue
            name = _requirement_name(req)
            if name and _normalize(name) not in out:
                out.add(_normalize(name))
                todo.append(_normalize(name))
    return out


_DISTRIBUTIONS: dict[str, list[str]] | None = None


def _distributions() -> dict[str, list[str]]:
    """Top-level import name -> distributions installed here (read once; scanning is slow)."""
    global _DISTRIBUTIONS
    if _DISTRIBUTIONS is None:
        import importlib.metadata as md

        _DISTRIBUTIONS = md.packages_distributions()
    return _DISTRIBUTIONS


#: Modules imported under another name than the distribution that installs them.
_KNOWN_DISTRIBUTIONS = {"yaml": "pyyaml", "pil": "pillow", "sklearn": "scikit-learn", "bs4": "beautifulsoup4",
                        "cv2": "opencv-python", "dateutil": "python-dateutil", "dotenv": "python-dotenv",
                        "jwt": "pyjwt", "magic": "python-magic", "attr": "attrs", "google": "protobuf"}


def install_hint(function_dir: Path, error_message: str) -> str | None:
    """For a ``Runtime.ImportModuleError`` (local runs import from the function's package, as
    Lambda does): what to change in requirements.txt, which local runs and deployments alike
    vendor into the package."""
    import os
    import re

    m = re.search(r"No module named '([^']+)'", error_message)
    if not m:
        return None
    module = m.group(1).split(".")[0]

    def shown(path: Path) -> str:
        try:
            rel = os.path.relpath(path)
        except ValueError:
            return str(path)
        return str(path) if rel.startswith("..") else rel

    wanted = {_normalize(module), _normalize(_KNOWN_DISTRIBUTIONS.get(module.lower(), module))}
    for req in (function_dir / "requirements.txt", function_dir.parent.parent / "requirements.txt"):
        try:
            lines = req.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        names = {_normalize(n) for n in (_requirement_name(line.split(" #", 1)[0].strip()) for line in lines
                                         if line.strip() and not line.lstrip().startswith("#")) if n}
        if names & wanted:
            return (f"{module!r} is declared in {shown(req)}, but the function's package has no module {module!r}: "
                    "check that the distribution provides it and has a wheel for the function's runtime")
    if module in _stdlib_of(f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        return None  # a standard module of another Python: the runtime is the fix, not requirements
    return (f"add the distribution that provides {module!r} to {shown(function_dir / 'requirements.txt')} "
            "(local runs and deployments vendor it into the function's package)")
