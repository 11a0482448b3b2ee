"""Errors that mean "the user must change something": the CLI prints them without a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition, said the way the user can act on it."""

    file: str
    message: str
    function: str | None = None

    @property
    def function_label(self) -> str:
        """`` [function f1]``, or "" for a layer-wide problem. A name with a newline or other
        control character (a mistake worth showing) is quoted, so it cannot break the line."""
        if not self.function:
            return ""
        name = self.function if self.function.isprintable() else repr(self.function)
        return f" [function {name}]"

    def __str__(self) -> str:
        return f"{self.file}{self.function_label}: {self.message}"


class DorcError(Exception):
    """A user mistake or a missing tool; ``exit_code`` 2 means nothing ran."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  fix: {self.hint}" if self.hint else "")

    def to_dict(self) -> dict:
        """For ``--json``: the error as a document, so a script reading stdout is never left empty."""
        doc: dict = {"status": "error", "exit_code": self.exit_code,
                     "error": {"type": type(self).__name__, "message": self.message, "hint": self.hint}}
        problems = getattr(self, "problems", None)
        if problems:
            doc["error"]["problems"] = [{"file": p.file, "function": p.function, "message": p.message}
                                        for p in problems]
        return doc


class ProjectError(DorcError):
    """The pipeline-config folder or its settings are missing or malformed."""


class DefinitionError(DorcError):
    """One or more pipeline definitions are invalid; every problem is listed."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the pipeline definition:\n{lines}")


class ToolMissingError(DorcError):
    """An external tool (Docker, the Pulumi CLI, Python 3.13 for LocalStack) is not available."""


class LocalStackError(DorcError):
    """LocalStack could not be installed, started, reached or stopped (exit 2: nothing ran).
    ``except LocalStackError`` also catches ``LocalStackRunError``."""


class LocalStackRunError(LocalStackError):
    """Something was attempted against LocalStack (a deployment, a run) and did not work."""

    exit_code = 1


class FileSystemError(DorcError):
    """The machine refused a file operation (read-only folder, permissions, full disk): said with
    the file and the fix instead of a traceback. ``exit_code`` 1 once a run had started."""

    @classmethod
    def from_os_error(cls, exc: OSError, *, doing: str = "", ran: bool = False) -> "FileSystemError":
        import errno
        import os

        name = os.fsencode(exc.filename).decode("utf-8", "backslashreplace") if exc.filename else ""
        folder = os.path.dirname(name) or name or "the folder"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = f"free disk space on the drive that holds {folder}, then run again"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = (f"make {folder} writable (e.g. `chmod -R u+w {folder}`); dorc keeps its state (run records, "
                    "the local store, builds) in .dorc/ beside dorc.toml")
        else:
            hint = f"check {name or 'the file'} and its folder"
        what = f"{doing}: " if doing else ""
        err = cls(f"{what}{exc.strerror or exc}" + (f": {name}" if name else ""), hint=hint)
        err.exit_code = 1 if ran else 2
        return err
