"""A compiled dependency built for the declared runtime: numpy's cp312 wheel, vendored from
``requirements.txt`` for a ``python3.12`` function, imports and runs locally and in host-mode
LocalStack although dorc itself runs on another Python (3.11 here and in CI).

No test reaches the network: numpy comes from ``tests/.wheelhouse``, which ``tests/wheelhouse.sh``
fills once (CI runs it before the tests). Without it these tests skip with that command, and fail
under ``CI=true``, as LocalStack tests do when LocalStack cannot be started.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from dorc.api import run_pipeline
from helpers import chain_main, make_project, run_dorc_subprocess, unavailable

NUMPY = "2.1.3"  # keep in step with tests/wheelhouse.sh
WHEELHOUSE = Path(__file__).resolve().parent / ".wheelhouse"
RUNTIME = "python3.12"

COMPUTE = """
import os
import sys

import numpy as np


def handler(event, context):
    a = np.arange(1, 11, dtype=np.float64)
    return {"statusCode": 200, "body": {
        "sum": float(a.sum()), "dot": float(a @ a), "std": round(float(a.std()), 6),
        "numpy": np.__version__, "python": list(sys.version_info[:2]),
        "from_task_root": np.__file__.startswith(os.environ["LAMBDA_TASK_ROOT"] + os.sep),
    }}
"""

CHECK = """
import sys


def handler(event, context):
    body = event["body"]
    if (body["sum"], body["dot"], body["std"]) != (55.0, 385.0, 2.872281):
        raise ValueError(f"numpy computed {body!r}")
    return {"statusCode": 200, "body": {"checked": True, "numpy": body["numpy"],
                                        "python": list(sys.version_info[:2])}}
"""


@pytest.fixture(scope="session")  # set up before dorc_localstack: no LocalStack started to skip
def wheelhouse() -> Path:
    if not list(WHEELHOUSE.glob(f"numpy-{NUMPY}-cp312-cp312-*manylinux*x86_64*.whl")):
        unavailable(f"no numpy {NUMPY} wheel for python3.12 in tests/.wheelhouse: run tests/wheelhouse.sh")
    from dorc_sim.sandbox.interpreters import find_interpreter, install_hint

    if not find_interpreter(RUNTIME).exact:  # numpy's cp312 build cannot import on another Python
        unavailable(f"{RUNTIME} is not on this machine: {install_hint(RUNTIME)}")
    return WHEELHOUSE


@pytest.fixture(autouse=True)
def _own_pip_settings(monkeypatch):
    """pip reads only what the project's requirements.txt says (the wheelhouse, no index): not the
    machine's pip.conf or PIP_* variables (an index, find-links, a constraints file)."""
    for var in [v for v in os.environ if v.startswith("PIP_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def _project(tmp_path: Path, wheelhouse: Path, instance: str = "demo") -> Path:
    kwargs = {name: f"runtime={RUNTIME!r}" for name in ("compute", "check")}
    return make_project(tmp_path, {f"{instance}/main": {
        "main": chain_main("compute", "check", **kwargs),
        "functions": {"compute": {
            "lambda.py": COMPUTE,
            "requirements.txt": f"--no-index\n--find-links {wheelhouse}\nnumpy=={NUMPY}\n",
        }, "check": CHECK},
    }}, name=instance, dirname=instance)


def _assert_numpy_ran(compute: dict, check: dict) -> None:
    assert compute["body"]["python"] == [3, 12], compute
    assert compute["body"]["numpy"] == NUMPY
    assert compute["body"]["from_task_root"] is True  # vendored into the package, not the host's numpy
    assert check["body"] == {"checked": True, "numpy": NUMPY, "python": [3, 12]}


def test_numpy_for_python312_runs_locally_on_another_python(wheelhouse, tmp_path):
    root = _project(tmp_path, wheelhouse)
    # dorc's CLI in a child process (as a user runs it): the package is built, numpy vendored
    first = run_dorc_subprocess("run", "demo", "main", "--local", "--json", "--config-repo", root, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    doc = json.loads(first.stdout)
    assert doc["status"] == "succeeded" and doc["sandbox"], doc
    compute, check = (step["output"] for step in doc["steps"])
    _assert_numpy_ran(compute, check)
    assert not [w for w in doc["warnings"] if RUNTIME in w], doc["warnings"]  # ran on 3.12 itself

    # again through the library, from the cached task root: the same result
    again = run_pipeline("demo", "main", config_repo=root)
    assert again.succeeded, again.error
    _assert_numpy_ran(again.step("compute").output, again.step("check").output)


@pytest.mark.localstack
def test_numpy_for_python312_runs_in_host_mode_localstack(wheelhouse, dorc_localstack, tmp_path):
    instance = f"np{uuid.uuid4().hex[:6]}"  # one LocalStack is shared: names of this test only
    root = _project(tmp_path, wheelhouse, instance)
    result = run_pipeline(instance, "main", target="localstack", config_repo=root,
                          endpoint=dorc_localstack.endpoint, record=False)
    assert result.succeeded, result.failure_report()
    _assert_numpy_ran(result.step("compute").output, result.step("check").output)
