"""The AWS SDK's byte code for each runtime's Python: a sandbox cannot write ``.pyc`` files, so
dorc compiles what the runtime dir links to once per interpreter and SDK version, outside any
sandbox, and records it in a stamp; a failure is recorded too and never fails a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dorc.api import run_pipeline
from dorc.observer import NullObserver
from dorc_sim.sandbox.sdk import STAMP_PREFIX, bytecode_state, compile_for
from helpers import OUTSIDE_VARS, REPO_ROOT, chain_main, unavailable

RUNTIME = "python3.12"
TAG = "cpython-312"

# what the sandbox's importer sees: where boto3, botocore and six come from, and whether the .pyc
# it looks for beside each (its __cached__) is there
PROBE = """
import os, boto3, botocore, botocore.client, six

def handler(event, context):
    mods = (boto3, botocore, botocore.client, six)
    return {"statusCode": 200, "body": {
        "files": [m.__file__ for m in mods],
        "cached": [os.path.exists(m.__cached__) for m in mods]}}
"""


@pytest.fixture
def python312() -> str:
    from dorc_sim.sandbox.interpreters import find_interpreter, install_hint

    found = find_interpreter(RUNTIME)
    if not found.exact:
        unavailable(f"{RUNTIME} is not on this machine: {install_hint(RUNTIME)}")
    return found.executable


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """A cache of dorc's own: a new runtime dir, with no stamp yet."""
    for var in ("DORC_SANDBOX", "DORC_PYTHON3_12"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


class Progress(NullObserver):
    def __init__(self):
        self.lines: list[str] = []

    def progress(self, message: str) -> None:
        self.lines.append(message)


def _stamps(runtime_dir: Path) -> list[Path]:
    return sorted(p for p in runtime_dir.glob(f"{STAMP_PREFIX}*.json"))


def test_a_run_compiles_the_sdk_once_for_the_runtimes_python(project_factory, fresh_cache, python312):
    root = project_factory({"demo/main": {"main": chain_main("f1", f1=f"runtime={RUNTIME!r}"),
                                          "functions": {"f1": PROBE}}})
    first = Progress()
    result = run_pipeline("demo", "main", config_repo=root, observer=first)
    assert result.succeeded, result.error
    assert result.warnings == []
    body = result.step("f1").output["body"]
    [runtime_dir] = (fresh_cache / "dorc" / "runtime").iterdir()
    assert all(Path(f).is_relative_to(runtime_dir) for f in body["files"]), body["files"]
    assert body["cached"] == [True, True, True, True], body  # boto3, botocore, botocore.client, six
    assert f"compiling the AWS SDK for {RUNTIME} (once per SDK version)" in first.lines

    botocore = Path(os.path.realpath(runtime_dir / "botocore"))
    missing = [p.name for p in botocore.glob("*.py") if not (botocore / "__pycache__" / f"{p.stem}.{TAG}.pyc").exists()]
    assert missing == []
    assert (runtime_dir / "__pycache__" / f"six.{TAG}.pyc").exists()  # beside the link the worker imports
    [stamp] = _stamps(runtime_dir)
    data = json.loads(stamp.read_text())
    assert (data["ok"], data["tag"], data["python"]) == (True, TAG, python312)
    assert set(data["targets"]) >= {"boto3", "botocore", "six.py", "dorc_sim"}
    state = bytecode_state(python312, runtime_dir)
    assert state is not None and state.ok and not state.fresh

    before = stamp.stat().st_mtime_ns
    second = Progress()
    again = run_pipeline("demo", "main", config_repo=root, observer=second)
    assert again.succeeded, again.error
    assert stamp.stat().st_mtime_ns == before  # not compiled again: the stamp held
    assert not any("compiling" in line for line in second.lines), second.lines


def _small_runtime_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A runtime dir of one link, to a copy of a small package (jmespath) that the test may change."""
    import jmespath

    package = tmp_path / "site" / "jmespath"
    shutil.copytree(Path(jmespath.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    folder = tmp_path / "runtime"
    folder.mkdir()
    (folder / "jmespath").symlink_to(package, target_is_directory=True)
    return folder, package


def test_a_changed_package_is_compiled_again(tmp_path, python312):
    folder, package = _small_runtime_dir(tmp_path)
    heard: list[str] = []
    first = compile_for(python312, folder, label=RUNTIME, on_compile=heard.append)
    assert (first.ok, first.fresh, first.tag) == (True, True, TAG)
    assert (package / "__pycache__" / f"functions.{TAG}.pyc").exists()
    [stamp] = _stamps(folder)
    before = stamp.stat().st_mtime_ns

    assert compile_for(python312, folder, on_compile=heard.append).fresh is False
    assert stamp.stat().st_mtime_ns == before
    assert heard == [f"compiling the AWS SDK for {RUNTIME} (once per SDK version)"]

    # an upgrade: a new module, a new __init__.py
    (package / "added.py").write_text("VALUE = 1\n")
    init = package / "__init__.py"
    init.write_text(init.read_text() + "\n# upgraded\n")
    again = compile_for(python312, folder, on_compile=heard.append)
    assert (again.ok, again.fresh) == (True, True)
    assert (package / "__pycache__" / f"added.{TAG}.pyc").exists()
    assert len(heard) == 2
    assert compile_for(python312, folder).fresh is False


def test_an_interpreter_that_cannot_run_is_recorded_and_not_tried_again(tmp_path):
    folder, package = _small_runtime_dir(tmp_path)
    missing = str(tmp_path / "no-such" / "python3.12")
    outcome = compile_for(missing, folder)
    assert (outcome.ok, outcome.fresh) == (False, True)
    assert "No such file or directory" in outcome.reason
    assert "compile the AWS SDK from source at each cold start" in outcome.warning
    [stamp] = _stamps(folder)
    assert json.loads(stamp.read_text())["ok"] is False
    before = stamp.stat().st_mtime_ns
    later = compile_for(missing, folder)
    assert (later.ok, later.fresh, later.reason) == (False, False, outcome.reason)
    assert stamp.stat().st_mtime_ns == before
    assert not (package / "__pycache__").exists()


UNSHARE = shutil.which("unshare")


def _mounts_work() -> bool:
    if UNSHARE is None:
        return False
    probe = subprocess.run([UNSHARE, "--mount", "--map-root-user", "sh", "-c",
                            "mount -t tmpfs -o ro tmpfs \"$0\"", str(REPO_ROOT / "tests")],
                           capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def test_a_package_folder_that_cannot_be_written_does_not_fail_the_run(project_factory, tmp_path, python312):
    """jmespath's __pycache__ read-only and empty (a read-only mount, in a mount namespace of this
    run's own): compileall cannot write there; the run says so once, in a warning, and succeeds."""
    if not _mounts_work():
        unavailable("no mount namespace here (unshare --mount --map-root-user), to make a folder read-only")
    import jmespath

    pycache = Path(jmespath.__file__).parent / "__pycache__"
    if not pycache.is_dir():
        pytest.skip(f"{pycache} does not exist: nothing to mount over")
    root = project_factory({"demo/main": {"main": chain_main("f1", f1=f"runtime={RUNTIME!r}"),
                                          "functions": {"f1": "import jmespath\n" + PROBE}}})
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS and k not in ("DORC_SANDBOX", "DORC_PYTHON3_12")}
    env.update(XDG_CACHE_HOME=str(cache), PYTHONDONTWRITEBYTECODE="1", DORC_DAEMON="off", COLUMNS="2000")
    script = 'mount -t tmpfs -o ro tmpfs "$0" && shift && exec "$@"'
    proc = subprocess.run([UNSHARE, "--mount", "--map-root-user", "sh", "-c", script, str(pycache),
                           "placeholder", sys.executable, "-m", "dorc", "run", "demo", "main", "--local", "--json",
                           "--config-repo", str(root)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    warnings = [w for w in doc["warnings"] if "compile the AWS SDK from source at each cold start" in w]
    assert len(warnings) == 1 and "Read-only file system" in warnings[0], doc["warnings"]
    [runtime_dir] = (cache / "dorc" / "runtime").iterdir()
    [stamp] = _stamps(runtime_dir)
    data = json.loads(stamp.read_text())
    assert data["ok"] is False and "Read-only file system" in data["reason"], data
