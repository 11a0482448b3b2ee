"""Sandboxes started as forks of a fork server (``dorc_sim.sandbox.zygote``), through the
launcher's API as dorc's local target uses it: each is a fresh Lambda environment all the same
(its own /tmp, environment, modules, working folder; the handler pid 1's child; the SDK not
imported before the handler imports it), limits still end the whole sandbox, and whatever the
server cannot give (a variable read at a process's start, a server that died, the switch off)
starts the worker on its own instead."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from dorc_sim.runtime import FunctionSpec
from dorc_sim.sandbox.forkserver import ForkServers
from dorc_sim.sandbox.interpreters import find_interpreter
from dorc_sim.sandbox.isolation import probe
from dorc_sim.sandbox.launcher import Sandbox, SandboxSpec
from dorc_sim.sandbox.sdk import runtime_dir
from helpers import processes_with

pytestmark = pytest.mark.skipif(not probe().namespaces, reason=f"no full sandbox here: {probe().reason}")

LOOKS = """
import json, os, sys

def handler(event, context):
    first = {"sdk_before": "boto3" in sys.modules or "botocore" in sys.modules,
             "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
             "tmp": sorted(os.listdir("/tmp")), "env_mark": os.environ.get("LEFT_BY_F1"),
             "json_dumps_intact": json.dumps({"a": 1}) == '{"a": 1}',
             "own_module": getattr(sys.modules.get("left_by_f1"), "VALUE", None),
             "runtime_patched": getattr(sys.modules["dorc_sim.runtime"], "LEFT_BY_F1", None)}
    if event.get("leave"):  # what a careless handler leaves behind
        with open("/tmp/f1.txt", "w") as fh:
            fh.write("f1")
        os.environ["LEFT_BY_F1"] = "yes"
        sys.modules["dorc_sim.runtime"].LEFT_BY_F1 = True
        mod = type(sys)("left_by_f1")
        mod.VALUE = 1
        sys.modules["left_by_f1"] = mod
        os.chdir("/")
    return first
"""


@pytest.fixture(autouse=True)
def _default_switch(monkeypatch):
    """The fork server as a run uses it by default, whatever the caller's shell says."""
    monkeypatch.delenv("DORC_FORK_SERVER", raising=False)


@pytest.fixture(scope="module")
def python312():
    found = find_interpreter("python3.12")
    if not found.exact:
        pytest.skip("python3.12 is not on this machine")
    return found.executable


def ready_servers() -> ForkServers:
    """A run's fork servers, the 3.12 one started and ready (a run does not wait for it: its
    first sandboxes start on their own meanwhile)."""
    pool = ForkServers()
    server = pool.start(find_interpreter("python3.12").executable, str(runtime_dir()), probe())
    assert server is not None and server.wait_ready(30), server and server.said()
    return pool


@pytest.fixture
def servers(python312):
    pool = ready_servers()
    yield pool
    pool.close()


def sandbox(tmp_path: Path, python: str, source: str, servers, *, name: str = "f1", env: dict | None = None,
            **fn) -> Sandbox:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "lambda.py").write_text(source)
    spec = FunctionSpec(name=name, source_dir=str(folder), handler="lambda.handler", environment=env or {}, **fn)
    return Sandbox(SandboxSpec(function=spec, python=python, runtime_dir=str(runtime_dir())), probe(),
                   servers=servers)


def call(box: Sandbox, event: dict) -> dict:
    result = box.invoke(json.dumps(event))
    assert result.error is None, result.error
    return json.loads(result.payload)


def test_each_fork_is_a_fresh_environment(tmp_path, python312, servers):
    with sandbox(tmp_path, python312, LOOKS, servers, name="f1") as f1:
        first = call(f1, {"leave": True})
        assert f1.forked
    with sandbox(tmp_path, python312, LOOKS, servers, name="f2") as f2:
        second = call(f2, {})
        assert f2.forked
    for seen, folder in ((first, "f1"), (second, "f2")):
        assert seen["sdk_before"] is False  # the server never imported the SDK: Init is the cold import
        assert (seen["pid"], seen["ppid"]) == (2, 1)  # the handler is pid 1's child, as a started worker's
        assert seen["cwd"] == str(tmp_path / folder)
    assert "f1.txt" not in second["tmp"]
    assert second["env_mark"] is None
    assert second["json_dumps_intact"] is True
    assert second["own_module"] is None and second["runtime_patched"] is None


def test_a_warm_fork_keeps_its_own_state_between_calls(tmp_path, python312, servers):
    with sandbox(tmp_path, python312, LOOKS, servers) as box:
        call(box, {"leave": True})
        again = call(box, {})
    assert box.forked
    assert again["env_mark"] == "yes" and "f1.txt" in again["tmp"]  # as Lambda's warm start keeps them


SPAWNS = """
import subprocess, time

def handler(event, context):
    subprocess.Popen(["sleep", event["marker"]])
    while True:
        try:
            time.sleep(10)
        except BaseException:
            pass
"""


def test_the_timeout_ends_the_forked_sandbox_with_its_children(tmp_path, python312, servers):
    marker = f"1000.{uuid.uuid4().int % 10**9:09d}"
    with sandbox(tmp_path, python312, SPAWNS, servers, timeout=1.0) as box:
        box.start()
        assert box.forked
        result = box.invoke(json.dumps({"marker": marker}))
    leftovers = processes_with(marker)
    for pid in leftovers:
        os.kill(pid, 9)
    assert result.error is not None and result.error.type == "Sandbox.Timedout", result.error
    assert leftovers == []


HOG = """
def handler(event, context):
    hog = b"\\x01" * (300 * 1024 * 1024)
    import time
    time.sleep(3)
    return len(hog)
"""


def test_the_memory_size_ends_the_forked_sandbox(tmp_path, python312, servers):
    with sandbox(tmp_path, python312, HOG, servers, memory=128, timeout=10.0) as box:
        result = box.invoke("{}")
        assert box.forked
    assert result.error is not None and result.error.type == "Runtime.OutOfMemory", result.error


def test_a_variable_read_at_start_up_gets_a_worker_of_its_own(tmp_path, python312, servers):
    source = "import os\n\ndef handler(event, context):\n    return os.environ.get('LC_ALL')\n"
    with sandbox(tmp_path, python312, source, servers, env={"LC_ALL": "C.UTF-8"}) as box:
        assert box.invoke("{}").payload == b'"C.UTF-8"'
        assert box.forked is False


def test_a_dead_server_falls_back_to_a_worker_of_its_own(tmp_path, python312, servers):
    with sandbox(tmp_path, python312, LOOKS, servers, name="f1") as f1:
        call(f1, {})
        assert f1.forked
    server = servers.server(python312, str(runtime_dir()), probe())
    server._proc.kill()  # the fork server dies mid-run (unshare --kill-child takes the server with it)
    server._proc.wait()
    with sandbox(tmp_path, python312, LOOKS, servers, name="f2") as f2:
        seen = call(f2, {})
        assert f2.forked is False
    assert (seen["pid"], seen["ppid"]) == (2, 1)


def test_the_switch_turns_the_fork_server_off(tmp_path, python312, monkeypatch):
    monkeypatch.setenv("DORC_FORK_SERVER", "off")
    with sandbox(tmp_path, python312, LOOKS, ForkServers()) as box:
        call(box, {})
        assert box.forked is False


def test_closing_the_servers_ends_their_sandboxes(tmp_path, python312):
    pool = ready_servers()
    marker = f"1000.{uuid.uuid4().int % 10**9:09d}"
    source = ("import subprocess\n\ndef handler(event, context):\n"
              "    subprocess.Popen(['sleep', event['marker']])\n    return 1\n")
    box = sandbox(tmp_path, python312, source, pool)
    try:
        box.invoke(json.dumps({"marker": marker}))
        assert box.forked
        assert processes_with(marker)  # still running after the call, as a child may
    finally:
        box.close()
        pool.close()
    leftovers = processes_with(marker)
    for pid in leftovers:
        os.kill(pid, 9)
    assert leftovers == []


def test_a_runs_first_sandboxes_start_on_their_own_then_they_are_forked(tmp_path, python312):
    pool = ForkServers()
    try:
        f1 = sandbox(tmp_path, python312, LOOKS, pool, name="f1")
        f2 = sandbox(tmp_path, python312, LOOKS, pool, name="f2")
        f1.start()
        f2.start()  # started while f1 starts, as a run starts the next function's sandbox
        assert (f1.forked, f2.forked) == (False, False)  # no server competes with a run's first functions
        call(f1, {})
        call(f2, {})
        with sandbox(tmp_path, python312, LOOKS, pool, name="f3") as f3:
            assert call(f3, {})["pid"] == 2
            assert f3.forked  # its request waited for the server's start-up
        f1.close()
        f2.close()
    finally:
        pool.close()
