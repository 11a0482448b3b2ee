"""What a front end (the terminal view, a test) hears while a run is going, from any target."""

from __future__ import annotations

from typing import Protocol

from .result import StepResult


class Observer(Protocol):
    def progress(self, message: str) -> None:
        """A deployment stage (LocalStack, Pulumi): "created function …"."""

    def step_started(self, layer: str, function: str, deployed_name: str) -> None: ...
    def log(self, line: str) -> None: ...
    def step_finished(self, step: StepResult) -> None: ...


class NullObserver:
    def progress(self, message: str) -> None:
        pass

    def step_started(self, layer: str, function: str, deployed_name: str) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    def step_finished(self, step: StepResult) -> None:
        pass
