"""Which Python runs a Lambda runtime (``dorc_sim.sandbox.interpreters``) and the runtime dir the
worker imports the AWS SDK and dorc's runtime from (``dorc_sim.sandbox.sdk``).

The search tests build a machine of their own: pyenv, uv and PATH folders in tmp_path holding
fake interpreters (shell scripts that print a version and log each start), for runtimes such as
python3.21 that no real machine has; so they do not depend on what is installed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dorc_sim.sandbox.interpreters import (
    InterpreterError, all_interpreters, cache_file, find_interpreter, override_var,
)
from dorc_sim.sandbox.sdk import SDK_NAMES, runtime_dir, sdk_versions

OWN_MINOR = sys.version_info[1]
OWN_RUNTIME = f"python3.{OWN_MINOR}"


class Machine:
    """A pretend machine: ``pyenv("3.21.3")``, ``uv("3.21.2")``, ``on_path("3.21.0")`` install a
    fake interpreter there; ``starts`` counts how often any of them was run."""

    def __init__(self, root: Path):
        self.root = root
        self.log = root / "starts.log"
        self.pyenv_root = root / "pyenv"
        self.uv_dir = root / "uv"
        self.bin = root / "bin"
        self.cache = root / "cache"
        for folder in (self.pyenv_root / "versions", self.uv_dir, self.bin, self.cache):
            folder.mkdir(parents=True)

    def fake(self, path: Path, version: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\necho {path} >> {self.log}\necho {version.replace('.', ' ')}\n")
        path.chmod(0o755)
        return path

    def pyenv(self, version: str) -> Path:
        minor = version.split(".")[1]
        return self.fake(self.pyenv_root / "versions" / version / "bin" / f"python3.{minor}", version)

    def uv(self, version: str) -> Path:
        minor = version.split(".")[1]
        return self.fake(self.uv_dir / f"cpython-{version}-linux-x86_64-gnu" / "bin" / f"python3.{minor}", version)

    def on_path(self, version: str, folder: Path | None = None) -> Path:
        minor = version.split(".")[1]
        return self.fake((folder or self.bin) / f"python3.{minor}", version)

    @property
    def starts(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def env(self) -> dict:
        return {"PYENV_ROOT": str(self.pyenv_root), "UV_PYTHON_INSTALL_DIR": str(self.uv_dir),
                "PATH": str(self.bin), "XDG_CACHE_HOME": str(self.cache)}


@pytest.fixture
def machine(tmp_path, monkeypatch) -> Machine:
    m = Machine(tmp_path)
    for key, value in m.env().items():
        monkeypatch.setenv(key, value)
    for key in list(os.environ):
        if key.startswith("DORC_PYTHON"):
            monkeypatch.delenv(key)
    return m


def test_dorc_own_python_serves_its_own_runtime(machine):
    found = find_interpreter(OWN_RUNTIME)
    assert (found.executable, found.source, found.exact, found.note) == (sys.executable, "dorc's own", True, None)
    assert found.version == tuple(sys.version_info[:3])
    assert machine.starts == 0  # nothing was run to learn that


def test_search_order_override_uv_pyenv_highest_patch_then_path(machine, monkeypatch):
    machine.on_path("3.21.0")
    machine.pyenv("3.21.1")
    best_pyenv = machine.pyenv("3.21.3")
    uv = machine.uv("3.21.2")

    found = find_interpreter("python3.21")
    assert (found.executable, found.source, found.version, found.exact) == (str(uv), "uv 3.21.2", (3, 21, 2), True)

    uv.unlink()  # the cached one is gone: searched again
    found = find_interpreter("python3.21")
    assert (found.executable, found.source) == (str(best_pyenv), "pyenv 3.21.3")

    for version in ("3.21.1", "3.21.3"):
        (machine.pyenv_root / "versions" / version / "bin" / "python3.21").unlink()
    found = find_interpreter("python3.21")
    assert (found.executable, found.source, found.exact) == (str(machine.bin / "python3.21"), "PATH python3.21", True)

    mine = machine.fake(machine.root / "elsewhere" / "python", "3.21.9")
    monkeypatch.setenv(override_var("python3.21"), str(mine))
    assert override_var("python3.21") == "DORC_PYTHON3_21"
    found = find_interpreter("python3.21")
    assert (found.executable, found.source, found.version) == (str(mine), "$DORC_PYTHON3_21", (3, 21, 9))


def test_pyenv_shims_on_path_are_never_run(machine, monkeypatch):
    shims = machine.pyenv_root / "shims"
    machine.on_path("3.21.5", folder=shims)
    monkeypatch.setenv("PATH", os.pathsep.join([str(shims), str(machine.bin)]))

    found = find_interpreter("python3.21")
    assert not found.exact and found.source == "dorc's own"
    assert machine.starts == 0


def test_a_missing_runtime_runs_on_the_nearest_and_says_so(machine):
    machine.pyenv("3.20.4")
    machine.uv("3.22.1")  # as near as 3.20: the higher wins

    found = find_interpreter("python3.21")
    assert (found.version, found.source, found.exact) == ((3, 22, 1), "uv 3.22.1", False)
    assert found.note == ("python3.21 is not on this machine (looked in uv, pyenv and PATH); running on Python "
                          "3.22.1 (uv 3.22.1) instead — install it with `pyenv install 3.21` or "
                          "`uv python install 3.21`")


def test_with_no_python_at_all_it_is_dorc_own_not_exact(machine):
    found = find_interpreter("python3.40")
    assert (found.executable, found.source, found.exact) == (sys.executable, "dorc's own", False)
    assert f"running on Python {found.version_text} (dorc's own) instead" in found.note


def test_a_cached_find_runs_nothing_and_is_fast(machine):
    exe = machine.pyenv("3.21.3")
    assert find_interpreter("python3.21").exact
    assert machine.starts == 1
    doc = json.loads(cache_file().read_text())
    assert doc["python3.21"]["executable"] == str(exe)

    t0 = time.perf_counter()
    for _ in range(50):
        again = find_interpreter("python3.21")
    per_call = (time.perf_counter() - t0) / 50
    assert again.source == "pyenv 3.21.3" and machine.starts == 1
    assert per_call < 0.01, f"a cached find took {per_call * 1000:.2f} ms"

    stat = exe.stat()
    os.utime(exe, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # reinstalled: asked again
    assert find_interpreter("python3.21").exact
    assert machine.starts == 2


def test_installing_the_missing_python_is_noticed_on_the_next_call(machine):
    machine.pyenv("3.20.4")
    assert not find_interpreter("python3.21").exact
    assert not find_interpreter("python3.21").exact  # the cached fallback

    machine.pyenv("3.21.0")
    found = find_interpreter("python3.21")
    assert (found.exact, found.source) == (True, "pyenv 3.21.0")


def test_a_name_that_lies_about_its_version_is_not_taken(machine):
    machine.fake(machine.bin / "python3.21", "3.20.1")  # a python3.21 that is really 3.20
    found = find_interpreter("python3.21")
    assert not found.exact and found.version == (3, 20, 1)


def test_a_wrong_override_is_a_clear_error(machine, monkeypatch):
    monkeypatch.setenv("DORC_PYTHON3_21", str(machine.root / "nope" / "python"))
    with pytest.raises(InterpreterError) as exc:
        find_interpreter("python3.21")
    assert "$DORC_PYTHON3_21=" in exc.value.message and "no such executable" in exc.value.message
    assert "unset it" in exc.value.hint

    monkeypatch.setenv("DORC_PYTHON3_21", str(machine.pyenv("3.20.1")))
    with pytest.raises(InterpreterError, match=r"is Python 3\.20\.1, not 3\.21"):
        find_interpreter("python3.21")


def test_a_runtime_that_is_not_python_is_refused(machine):
    with pytest.raises(InterpreterError, match="nodejs20.x"):
        find_interpreter("nodejs20.x")


def test_all_interpreters_lists_the_exact_finds(machine):
    machine.pyenv("3.9.5")
    machine.uv("3.10.1")  # dorc itself needs 3.11+: these never collide with dorc's own
    found = {i.runtime: i.source for i in all_interpreters()}
    assert found == {"python3.9": "pyenv 3.9.5", "python3.10": "uv 3.10.1", OWN_RUNTIME: "dorc's own"}


def test_concurrent_runs_leave_a_whole_cache(machine):
    for minor in range(20, 26):
        machine.pyenv(f"3.{minor}.0")
    env = {**os.environ, **machine.env()}
    code = "import sys; from dorc_sim.sandbox.interpreters import find_interpreter as f; print(f(sys.argv[1]).source)"
    procs = [subprocess.Popen([sys.executable, "-c", code, f"python3.{minor}"], env=env, stdout=subprocess.PIPE, text=True)
             for minor in range(20, 26) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(set(outputs)) == [f"pyenv 3.{m}.0" for m in range(20, 26)]
    doc = json.loads(cache_file().read_text())  # whole JSON, whoever wrote last
    assert set(doc) <= {f"python3.{m}" for m in range(20, 26)} and doc
    assert not [p.name for p in cache_file().parent.iterdir() if p.name != cache_file().name]


# --------------------------------------------------------------------------------------------
# the runtime dir
# --------------------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_runtime_dir_links_the_sdk_and_dorc_sim(cache):
    import importlib.util

    import dorc_sim

    folder = runtime_dir()
    assert folder.parent == cache / "dorc" / "runtime"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["dorc_sim", *[n for n in SDK_NAMES if n != "six"], "six.py"])
    assert (folder / "dorc_sim").resolve() == Path(dorc_sim.__file__).resolve().parent
    assert (folder / "botocore").resolve() == Path(importlib.util.find_spec("botocore").origin).resolve().parent
    assert (folder / "six.py").is_file()
    assert runtime_dir() == folder  # reused
    assert set(sdk_versions()) == {"boto3", "botocore"} and "missing" not in sdk_versions().values()


@pytest.mark.parametrize("runtime", ["python3.12", "python3.13"])
def test_another_runtimes_python_imports_the_sdk_and_dorc_runtime_from_it(cache, runtime, tmp_path):
    """On the runtime's own interpreter when it is installed (the nearest one otherwise), isolated
    (``-I -S``: no site-packages), as the worker starts."""
    python = find_interpreter(runtime)
    folder = runtime_dir()
    code = (f"import json, sys; sys.path.insert(0, {str(folder)!r})\n"
            "import boto3, dorc_sim.runtime\n"
            "s3 = boto3.client('s3', region_name='eu-west-1', aws_access_key_id='x', aws_secret_access_key='y',"
            " endpoint_url='http://127.0.0.1:9')\n"
            "print(json.dumps([list(sys.version_info[:3]), boto3.__version__, dorc_sim.runtime.__file__,"
            " type(s3).__name__, any('site-packages' in p for p in sys.path)]))\n")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([python.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    version, boto3_version, runtime_file, client, site = json.loads(done.stdout)
    assert tuple(version) == python.version
    assert boto3_version == sdk_versions()["boto3"]
    assert runtime_file.startswith(str(folder / "dorc_sim"))
    assert client == "S3" and site is False


def test_concurrent_runs_make_one_whole_runtime_dir(cache):
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    code = "from dorc_sim.sandbox.sdk import runtime_dir; print(runtime_dir())"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(6)]
    paths = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(paths) == 1
    folder = Path(paths.pop())
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temp folders left
    assert len(list(folder.iterdir())) == len(SDK_NAMES) + 1


def test_threads_racing_for_the_runtime_dir_agree(cache):
    with ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(lambda _: runtime_dir(), range(16)))) == 1


def _sdk_error(code: str, cache: Path, pythonpath: str | None = None) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run([sys.executable, "-c", code + "\nfrom dorc_sim.sandbox.sdk import runtime_dir, RuntimeDirError\n"
                           "try:\n    runtime_dir()\nexcept RuntimeDirError as exc:\n    print(exc.message); print(exc.hint)\n"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_missing_sdk_package_is_a_clear_error(cache):
    out = _sdk_error("import sys; sys.modules['six'] = None; sys.modules['dateutil'] = None", cache)
    assert "dateutil, six cannot be found" in out and "sim/sandbox/sdk.py" in out
    assert "pip install python-dateutil six" in out


def test_a_compiled_sdk_package_is_refused(cache, tmp_path):
    fake = tmp_path / "shadow" / "jmespath"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "_speedups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    out = _sdk_error("", cache, pythonpath=str(fake.parent))
    assert "jmespath in dorc's environment is not pure Python" in out and "_speedups" in out
    assert not (cache / "dorc" / "runtime").exists() or not any((cache / "dorc" / "runtime").iterdir())
