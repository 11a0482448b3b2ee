"""What a front end (the terminal view, a test) hears while a run is going, from any target."""

from __future__ import annotations

from typing import Callable, Protocol

from .result import StepResult

Progress = Callable[[str], None]
"""Progress messages: a step (``"installing ..."``) or, indented by two spaces, a detail of it."""


class Observer(Protocol):
    def progress(self, message: str) -> None:
        """A deployment stage (LocalStack, Pulumi): "created function …"."""

    def step_started(self, layer: str, function: str, deployed_name: str) -> None: ...

    def log(self, line: str) -> None:
        """One line of the running function's log (START, its own lines, END, REPORT), as it is
        written. In-process, the handler waits while this runs (the runtime does not count that
        time against its timeout or Duration): keep it cheap, a handler may print 100,000 lines."""

    def step_finished(self, step: StepResult) -> None: ...

    def engine_output(self, text: str) -> None:
        """Raw output of an outside engine (Pulumi's ``up``), as it comes, newlines included."""


class NullObserver:
    def progress(self, message: str) -> None:
        pass

    def step_started(self, layer: str, function: str, deployed_name: str) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    def step_finished(self, step: StepResult) -> None:
        pass

    def engine_output(self, text: str) -> None:
        pass
