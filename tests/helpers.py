"""Building throw-away pipeline-config projects for dorc's tests.

``make_project(tmp_path, layers={"demo/main": {"main": MAIN_PY, "functions": {"f1": LAMBDA_PY}}})``
writes::

    <tmp_path>/<dirname>/dorc.toml                      [project] name = "t"
    <tmp_path>/<dirname>/src/demo/main/__main__.py
    <tmp_path>/<dirname>/src/demo/main/src/f1/lambda.py

A function's value may also be a dict ``{"lambda.py": ..., "util.py": ...}`` to write several
files into its folder, or ``None`` to create no folder at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_CONFIG = REPO_ROOT / "pipeline-config"

# Variables of the user's shell that would change what dorc does or where it looks.
OUTSIDE_VARS = ("CONFIG_REPO_PATH", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "DORC_ENV")

HEADER = "from dorc import CreatePipeline, PipelineDefinition, Function, NextFunction, load_config\n"

# A handler that keeps the contract and passes its event on in its body.
OK_HANDLER = """
def handler(event, context):
    return {"statusCode": 200, "body": {"from": context.function_name, "event": event}}
"""


def handler_returning(expr: str, imports: str = "") -> str:
    """A lambda.py whose handler returns the Python expression ``expr`` (``event``/``context`` in scope)."""
    return f"{imports}\n\ndef handler(event, context):\n    return {expr}\n"


def main_py(functions: str, *, description: str = "test pipeline", extra: str = "", header: str = HEADER) -> str:
    """A __main__.py declaring ``functions`` (Python source of the list's items)."""
    return (
        f"{header}\n"
        f"{extra}\n"
        "config = load_config(__file__)\n"
        "CreatePipeline(config, PipelineDefinition(\n"
        "    file_path=__file__,\n"
        f"    description={description!r},\n"
        f"    functions=[{functions}],\n"
        ")).apply()\n"
    )


def chain_main(*names: str, handover: str | None = None, **function_kwargs: str) -> str:
    """A __main__.py for the straight chain ``names[0] -> names[1] -> ...``.

    ``handover``: the last function hands over to this pipeline. ``function_kwargs``: extra
    ``Function(...)`` arguments (source text) per function name.
    """
    items = []
    for i, name in enumerate(names):
        args = [f"name={name!r}"]
        if i + 1 < len(names):
            args.append(f"next_function={names[i + 1]!r}")
        elif handover:
            args.append(f"next_function=NextFunction(name={handover!r}, type='Pipeline')")
        if name in function_kwargs:
            args.append(function_kwargs[name])
        items.append(f"Function({', '.join(args)})")
    return main_py(", ".join(items))


def make_project(tmp_path: Path, layers: dict[str, dict], *, name: str = "t", dirname: str = "proj",
                 toml_extra: str = "") -> Path:
    root = Path(tmp_path) / dirname
    root.mkdir(parents=True, exist_ok=True)
    (root / "dorc.toml").write_text(f'[project]\nname = "{name}"\n{toml_extra}')
    for key, spec in layers.items():
        instance, layer = key.split("/")
        layer_dir = root / "src" / instance / layer
        layer_dir.mkdir(parents=True, exist_ok=True)
        (layer_dir / "__main__.py").write_text(textwrap.dedent(spec["main"]))
        for fn, files in spec.get("functions", {}).items():
            if files is None:
                continue
            fdir = layer_dir / "src" / fn
            fdir.mkdir(parents=True, exist_ok=True)
            if isinstance(files, str):
                files = {"lambda.py": files}
            for fname, text in files.items():
                (fdir / fname).write_text(textwrap.dedent(text))
    return root


def copy_pipeline_config(dest_parent: Path) -> Path:
    """A copy of the repository's pipeline-config without its state (.dorc) or bytecode, and with
    the census example only: pipelines a user adds there (as the README's walk-through does) must
    not change what dorc's own tests see."""
    dest = Path(dest_parent) / "pipeline-config"
    skip = shutil.ignore_patterns(".dorc", "__pycache__")

    def ignore(folder: str, names: list[str]) -> set[str]:
        if Path(folder) == PIPELINE_CONFIG / "src":
            return {n for n in names if n != "census"}
        return set(skip(folder, names))

    shutil.copytree(PIPELINE_CONFIG, dest, ignore=ignore)
    return dest


def run_dorc_subprocess(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m dorc ...`` in a real child process."""
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([sys.executable, "-m", "dorc", *map(str, args)], cwd=cwd or REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def build_wheel(folder: Path, name: str, version: str, files: dict[str, str], scripts: dict[str, str] | None = None) -> Path:
    """A minimal pure-Python wheel (py3-none-any) assembled by hand, so tests vendor requirements
    with no build tools and no index; ``scripts`` become console scripts."""
    import base64
    import hashlib
    import zipfile

    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: dorc-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if scripts:
        contents[f"{info}/entry_points.txt"] = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    contents[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in contents.items():
            zf.writestr(path, text)
    return wheel


def problems_of(root: Path, key: str = "demo/main", **kw):
    """``dorc.api.validate``'s problems of one layer of the project at ``root``."""
    from dorc.api import validate
    from dorc.project import find_project

    return validate(find_project(root), **kw)[key]


def only(problems, fragment: str):
    """The one problem whose message contains ``fragment`` (fails listing them all otherwise)."""
    hits = [p for p in problems if fragment in p.message]
    assert len(hits) == 1, f"expected one problem containing {fragment!r}, got: {[str(p) for p in problems]}"
    return hits[0]


def unavailable(message: str) -> None:
    """What a test needs is missing here: a skip with the way to get it, a failure under ``CI=true``
    (CI installs everything, so a skip there would hide a broken set-up)."""
    import pytest

    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI)", pytrace=False)
    pytest.skip(message)


def command_lines() -> dict[int, list[bytes]]:
    """This machine's processes (host pids) and their command lines (``/proc``)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                out[int(pid)] = fh.read().split(b"\0")[:-1]
        except OSError:
            continue
    return out


def processes_with(*args: str) -> list[int]:
    """The processes whose command line holds every one of ``args`` as an argument of its own."""
    wanted = [a.encode() for a in args]
    return [pid for pid, argv in command_lines().items() if all(w in argv for w in wanted)]
