"""Helpers for the Pulumi target's tests (a module of its own: ``conftest`` is ambiguous
when imported by name, tests/conftest.py has it too)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

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
    target = dest / "pipeline-config"
    shutil.copytree(PIPELINE_CONFIG, target, ignore=shutil.ignore_patterns(".dorc", "__pycache__"))
    return target


def write_project(root: Path, layers: dict[str, dict], *, name: str = "t", stack_files: dict | None = None) -> Path:
    """``layers``: ``{"inst/layer": {"main": <__main__.py>, "functions": {"f1": <lambda.py>}}}``;
    ``stack_files``: ``{"inst/layer": {"prod": <Pulumi.prod.yaml text>}}``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dorc.toml").write_text(f'[project]\nname = "{name}"\nregion = "eu-west-2"\n\n[tags]\nteam = "tests"\n')
    for key, spec in layers.items():
        inst, layer = key.split("/")
        layer_dir = root / "src" / inst / layer
        layer_dir.mkdir(parents=True, exist_ok=True)
        (layer_dir / "__main__.py").write_text(textwrap.dedent(spec["main"]))
        for fn, code in spec.get("functions", {}).items():
            (layer_dir / "src" / fn).mkdir(parents=True, exist_ok=True)
            (layer_dir / "src" / fn / "lambda.py").write_text(code)
        for env, text in (stack_files or {}).get(key, {}).items():
            (layer_dir / f"Pulumi.{env}.yaml").write_text(textwrap.dedent(text))
    return root
