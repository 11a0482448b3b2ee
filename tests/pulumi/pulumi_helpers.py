"""Helpers for the Pulumi target's tests (a module of its own: ``conftest`` is ambiguous
when imported by name, tests/conftest.py has it too)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import helpers

REPO = Path(__file__).resolve().parents[2]
PIPELINE_CONFIG = REPO / "pipeline-config"
ENVS = ("preprod", "prod")
# A recognisable stand-in for Pulumi ciphertext: it must never be printed.
CIPHERTEXT = "v1:U0VDUkVULURPLU5PVC1QUklOVA==:c2VjcmV0LWNpcGhlcnRleHQtbmV2ZXItc2hvd24="

OK_HANDLER = '''
def handler(event, context):
    return {"statusCode": 200, "body": event}
'''


def copy_pipeline_config(dest: Path) -> Path:
    """pipeline-config without its machine state (.dorc: builds, records, local store)."""
    return helpers.copy_pipeline_config(dest)


def write_project(root: Path, layers: dict[str, dict], *, name: str = "t", stack_files: dict | None = None) -> Path:
    """``layers``: ``{"inst/layer": {"main": <__main__.py>, "functions": {"f1": <lambda.py>}}}``;
    ``stack_files``: ``{"inst/layer": {"prod": <Pulumi.prod.yaml text>}}``."""
    root = helpers.make_project(root.parent, layers, name=name, dirname=root.name,
                                toml_extra='region = "eu-west-2"\n\n[tags]\nteam = "tests"\n')
    for key, envs in (stack_files or {}).items():
        inst, layer = key.split("/")
        for env, text in envs.items():
            (root / "src" / inst / layer / f"Pulumi.{env}.yaml").write_text(textwrap.dedent(text))
    return root
