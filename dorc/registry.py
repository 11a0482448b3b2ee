"""Targets and other pluggable parts, by name, loaded on first use.

The local run, LocalStack and Pulumi each sit in a package of their own; the layers above find
them here by name instead of ``if target == ...`` chains, and modules below them (the
``CreatePipeline`` of a user's ``__main__.py``) reach the Pulumi program without importing it.
Adding a target is one module and one line in ``RUN_TARGETS``.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from .errors import DorcError

RUN_TARGETS = {
    # name -> module exposing run(plans, start, event_json, *, project, observer, **options) -> RunResult
    "local": "dorc.targets.local",
    "localstack": "dorc.targets.localstack",
}
DEPLOY_TARGETS = {
    # name -> module exposing backend(project, **options) -> Backend
    "localstack": "dorc.targets.localstack.backend",
    "pulumi": "dorc.targets.pulumi.backend",
}
PULUMI_PROGRAM = "dorc.targets.pulumi.program"


def _load(table: dict[str, str], name: str, what: str) -> ModuleType:
    if name not in table:
        raise DorcError(f"unknown {what} {name!r}", hint=f"use one of {', '.join(table)}")
    return import_module(table[name])


def run_target(name: str) -> ModuleType:
    return _load(RUN_TARGETS, name, "target")


def deploy_target(name: str) -> ModuleType:
    return _load(DEPLOY_TARGETS, name, "deployment target")


def pulumi_program() -> ModuleType:
    """The Pulumi components, for a ``__main__.py`` that the Pulumi engine runs."""
    return import_module(PULUMI_PROGRAM)
