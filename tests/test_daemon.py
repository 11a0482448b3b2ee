"""``dorc daemon``: the warm path. Each test starts its daemon in its own folder
(``DORC_DAEMON_DIR``), runs the ``dorc`` executable's entry in child processes with and without
it, and stops every daemon it started by its PID."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import OK_HANDLER, OUTSIDE_VARS, chain_main, make_project, processes_with

ENTRY = "import sys; from dorc.cli.entry import console_main; console_main()"
SLEEPER = """
import sys, time

def handler(event, context):
    print("handler sleeping", flush=True)
    time.sleep(60)
    return {"statusCode": 200, "body": {}}
"""
VOLATILE = {"started_at", "duration_ms", "request_id", "max_memory_mb"}


@pytest.fixture
def daemon_dir(tmp_path):
    folder = tmp_path / "daemon"
    yield folder
    # whatever a test left running (its recorded daemon, or one a background restart started):
    # each process serving this test's own folder, stopped by its PID
    for pid in processes_with("dorc.daemon", str(folder)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _env(daemon_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS and k != "DORC_DAEMON"}
    return {**env, "DORC_DAEMON_DIR": str(daemon_dir), "COLUMNS": "200", **extra}


def _dorc(daemon_dir: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", ENTRY, *args], check=False, cwd=cwd,
                          env=_env(daemon_dir, **env), capture_output=True, text=True, timeout=120)


def _runs_served(daemon_dir: Path) -> int:
    log = daemon_dir / "daemon.log"
    return sum(line.startswith("run ") for line in log.read_text().splitlines()) if log.exists() else 0


def _normalized(document: dict) -> dict:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(document)


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path, {"demo/main": {"main": chain_main("f1", "f2"),
                                                 "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}}})


def test_start_status_stop_and_a_private_socket(daemon_dir):
    assert _dorc(daemon_dir, "daemon", "status").returncode == 1
    started = _dorc(daemon_dir, "daemon", "start")
    assert started.returncode == 0, started.stderr
    record = json.loads((daemon_dir / "daemon.json").read_text())
    assert "started" in started.stdout and str(record["pid"]) in started.stdout
    assert stat.S_IMODE(os.stat(daemon_dir).st_mode) == 0o700
    sock = os.stat(daemon_dir / "daemon.sock")
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o600
    status = _dorc(daemon_dir, "daemon", "status")
    assert status.returncode == 0 and f"running (pid {record['pid']}" in status.stdout
    again = _dorc(daemon_dir, "daemon", "start")
    assert "already running" in again.stdout and json.loads((daemon_dir / "daemon.json").read_text()) == record
    stopped = _dorc(daemon_dir, "daemon", "stop")
    assert stopped.returncode == 0 and f"pid {record['pid']}" in stopped.stdout
    assert not Path(f"/proc/{record['pid']}").exists() or b"Z" in Path(f"/proc/{record['pid']}/stat").read_bytes()
    assert not (daemon_dir / "daemon.sock").exists()
    assert _dorc(daemon_dir, "daemon", "status").returncode == 1
    assert "no dorc daemon was running" in _dorc(daemon_dir, "daemon", "stop").stdout


def test_stop_never_signals_a_process_that_is_not_the_daemon(daemon_dir):
    daemon_dir.mkdir(mode=0o700)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (daemon_dir / "daemon.json").write_text(json.dumps({"pid": other.pid, "digest": "x", "started": 0}))
        stopped = _dorc(daemon_dir, "daemon", "stop")
        assert stopped.returncode == 0 and "no dorc daemon was running" in stopped.stdout
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_warm_run_gives_a_cold_runs_result(daemon_dir, project, census_repo):
    census = ("run", "census", "raw", "--local", "--json")  # S3 and a fixture, the AWS SDK in each handler
    cold = _dorc(daemon_dir, *census, cwd=census_repo)
    assert cold.returncode == 0, cold.stderr
    assert _dorc(daemon_dir, "daemon", "start").returncode == 0
    warm = _dorc(daemon_dir, *census, cwd=census_repo)
    assert warm.returncode == 0, warm.stderr
    assert _runs_served(daemon_dir) == 1  # it did run in the daemon
    assert _normalized(json.loads(warm.stdout)) == _normalized(json.loads(cold.stdout))
    assert json.loads(warm.stdout)["steps"][-1]["output"]["body"]["states"] == 51
    assert len(list((census_repo / ".dorc" / "runs").glob("*.json"))) == 2  # each recorded, the warm one too
    # invoke too; and what the daemon does not take runs cold
    invoked = _dorc(daemon_dir, "invoke", "demo", "main", "f2", "--event", '{"n": 1}', "--json", cwd=project)
    assert invoked.returncode == 0 and json.loads(invoked.stdout)["output"]["body"]["event"] == {"n": 1}
    assert _runs_served(daemon_dir) == 2
    off = _dorc(daemon_dir, "run", "demo", "main", "--local", "-q", cwd=project, DORC_DAEMON="off")
    assert off.returncode == 0 and _runs_served(daemon_dir) == 2
    # a failing command keeps its exit code and its message
    missing = _dorc(daemon_dir, "run", "demo", "nope", "--local", cwd=project)
    assert missing.returncode == 2 and "nope" in missing.stderr and _runs_served(daemon_dir) == 3
    assert _dorc(daemon_dir, "daemon", "stop").returncode == 0


def test_ctrl_c_reaches_the_warm_run(daemon_dir, tmp_path):
    root = make_project(tmp_path, {"demo/slow": {"main": chain_main("f1"), "functions": {"f1": SLEEPER}}},
                        dirname="slow")
    assert _dorc(daemon_dir, "daemon", "start").returncode == 0
    client = subprocess.Popen([sys.executable, "-c", ENTRY, "run", "demo", "slow", "--local", "--json"], cwd=root,
                              env=_env(daemon_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "handler sleeping" not in seen and time.monotonic() < deadline:
            line = client.stderr.readline()
            if not line:
                break
            seen += line
        assert "handler sleeping" in seen, seen
        client.send_signal(signal.SIGINT)
        out, _ = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 130
    assert json.loads(out)["status"] == "cancelled"
    assert _runs_served(daemon_dir) == 1
    shown = _dorc(daemon_dir, "runs", "show", "last", "--json", cwd=root)
    assert json.loads(shown.stdout)["status"] == "cancelled"
    assert _dorc(daemon_dir, "daemon", "stop").returncode == 0


def test_a_stale_daemon_is_not_used_and_is_replaced_in_the_background(daemon_dir, project):
    assert _dorc(daemon_dir, "daemon", "start").returncode == 0
    record_path = daemon_dir / "daemon.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "digest": "loaded-another-dorc"}))  # as if dorc changed since
    cold = _dorc(daemon_dir, "run", "demo", "main", "--local", "-q", cwd=project)
    assert cold.returncode == 0, cold.stderr
    assert "dorc daemon is stale (dorc or its packages changed): this run is cold; a fresh daemon is starting" \
        in cold.stderr
    assert _runs_served(daemon_dir) == 0
    deadline = time.monotonic() + 60  # the cold run started the replacement and did not wait for it
    while time.monotonic() < deadline:
        new = json.loads(record_path.read_text()) if record_path.exists() else {}
        if new.get("pid") not in (None, record["pid"]) and "stale" not in _dorc(daemon_dir, "daemon", "status").stdout:
            break
        time.sleep(0.2)
    assert new.get("pid") not in (None, record["pid"]), "no fresh daemon replaced the stale one"
    assert not _alive(record["pid"])
    warm = _dorc(daemon_dir, "run", "demo", "main", "--local", "-q", cwd=project)
    assert warm.returncode == 0 and "stale" not in warm.stderr and _runs_served(daemon_dir) == 1
    assert _dorc(daemon_dir, "daemon", "stop").returncode == 0


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


LEAKER = """
import os

def handler(event, context):
    with open("/tmp/left-by-f1", "w") as fh:
        fh.write("x")
    os.environ["LEFT_BY_F1"] = "1"
    return {"statusCode": 200, "body": {}}
"""
LOOKER = """
import os, sys
PRELOADED = "boto3" in sys.modules  # before this module imports it: the daemon's fork server did

import boto3

def handler(event, context):
    return {"statusCode": 200, "body": {
        "tmp": os.path.exists("/tmp/left-by-f1"), "env": "LEFT_BY_F1" in os.environ,
        "preloaded": PRELOADED, "vendored": getattr(boto3, "VENDORED", False)}}
"""


def test_warm_sandboxes_share_nothing_and_a_vendored_sdk_wins(daemon_dir, tmp_path):
    root = make_project(tmp_path, {
        "demo/iso": {"main": chain_main("f1", "f2", "f3"),
                     "functions": {"f1": LEAKER, "f2": LOOKER,
                                   "f3": {"lambda.py": LOOKER, "boto3.py": "VENDORED = True\n"}}}},
        dirname="iso")
    assert _dorc(daemon_dir, "daemon", "start").returncode == 0
    status = _dorc(daemon_dir, "daemon", "status")
    assert "sandbox fork servers (the AWS SDK imported):" in status.stdout
    warm_sdk = f"{sys.executable}," in status.stdout or status.stdout.rstrip().endswith(sys.executable)
    for _ in range(2):  # and the second run sees nothing of the first
        run = _dorc(daemon_dir, "run", "demo", "iso", "--local", "--json", "--no-iam", cwd=root)
        assert run.returncode == 0, run.stderr
        steps = {s["function"]: s["output"]["body"] for s in json.loads(run.stdout)["steps"]}
        assert steps["f2"]["tmp"] is False and steps["f2"]["env"] is False
        assert steps["f3"]["vendored"] is True and steps["f3"]["preloaded"] is False
        if warm_sdk:
            assert steps["f2"]["preloaded"] is True and steps["f2"]["vendored"] is False
    assert _runs_served(daemon_dir) == 2
    assert _dorc(daemon_dir, "daemon", "stop").returncode == 0


def _sandboxes_of(root: Path) -> list[int]:
    """Processes working in one of ``root``'s task roots: its functions' sandboxes."""
    task_roots = str(root / ".dorc" / "task-roots") + os.sep
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(task_roots):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_killed_client_ends_its_run_and_sandboxes(daemon_dir, tmp_path):
    root = make_project(tmp_path, {"daemonkilltest/slow": {"main": chain_main("f1"), "functions": {"f1": SLEEPER}}},
                        dirname="gone")
    assert _dorc(daemon_dir, "daemon", "start").returncode == 0
    client = subprocess.Popen([sys.executable, "-c", ENTRY, "run", "daemonkilltest", "slow", "--local", "--json"],
                              cwd=root, env=_env(daemon_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        while "handler sleeping" not in seen:
            line = client.stderr.readline()
            if not line:
                break
            seen += line
        assert "handler sleeping" in seen, seen
        assert _sandboxes_of(root)
        client.kill()  # no chance to forward anything: the daemon hangs its run up
        client.wait()
    finally:
        if client.poll() is None:
            client.kill()
    deadline = time.monotonic() + 30
    while _sandboxes_of(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandboxes_of(root) == []
    status = _dorc(daemon_dir, "daemon", "status")
    assert status.returncode == 0 and "0 run(s) in flight" in status.stdout
    assert _dorc(daemon_dir, "daemon", "stop").returncode == 0


SDK_VIEW = """
import hashlib, json, os, boto3

def handler(event, context):
    models = os.path.join(os.environ["LAMBDA_TASK_ROOT"], "models")  # model files of its own, listed live
    os.environ["AWS_DATA_PATH"] = models
    session = boto3.session.Session()
    loader = session._session.get_component("data_loader")
    return {"statusCode": 200, "body": {
        "clients": sorted(session.get_available_services()),
        "rulesets": hashlib.sha256(json.dumps(loader.list_available_services("endpoint-rule-set-1")).encode()).hexdigest(),
        "own_model_seen": "dorcdemo" in loader.list_available_services("service-2"),
        "s3": boto3.client("s3").meta.service_model.service_name}}
"""


def test_a_warm_sandbox_lists_the_same_sdk_services_as_a_cold_one(daemon_dir, tmp_path):
    """The daemon's fork servers list botocore's own data once; a handler's session sees the same
    services as a cold one, and a model folder of its own (``AWS_DATA_PATH``) is still listed."""
    root = make_project(tmp_path, {"demo/sdk": {"main": chain_main("f1"), "functions": {"f1": SDK_VIEW}}},
                        dirname="sdk")
    model = next(p for p in root.rglob("f1") if (p / "lambda.py").is_file()) / "models" / "dorcdemo" / "2020-01-01"
    model.mkdir(parents=True)
    (model / "service-2.json").write_text(json.dumps({
        "version": "2.0", "metadata": {"apiVersion": "2020-01-01", "endpointPrefix": "dorcdemo", "protocol": "json",
                                       "serviceId": "dorcdemo", "signatureVersion": "v4", "jsonVersion": "1.1",
                                       "targetPrefix": "Demo"}, "operations": {}, "shapes": {}}))
    cold = _dorc(daemon_dir, "run", "demo", "sdk", "--local", "--json", cwd=root)
    assert cold.returncode == 0, cold.stderr + cold.stdout
    assert _dorc(daemon_dir, "daemon", "start").returncode == 0
    warm = _dorc(daemon_dir, "run", "demo", "sdk", "--local", "--json", cwd=root)
    assert warm.returncode == 0, warm.stderr + warm.stdout
    assert _runs_served(daemon_dir) == 1
    cold_body, warm_body = (json.loads(r.stdout)["steps"][0]["output"]["body"] for r in (cold, warm))
    assert warm_body == cold_body
    assert cold_body["own_model_seen"] and cold_body["s3"] == "s3"
    assert "s3" in cold_body["clients"] and "dorcdemo" in cold_body["clients"] and len(cold_body["clients"]) > 300
    assert _dorc(daemon_dir, "daemon", "stop").returncode == 0


def test_a_background_restart_never_brings_back_a_stopped_daemon(daemon_dir):
    """The restart a stale run starts replaces a daemon that still runs; one the user stopped
    meanwhile stays stopped."""
    assert _dorc(daemon_dir, "daemon", "start").returncode == 0
    record_path = daemon_dir / "daemon.json"
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()), "digest": "loaded-another-dorc"}))
    assert _dorc(daemon_dir, "daemon", "stop").returncode == 0
    restart = subprocess.run([sys.executable, "-m", "dorc.daemon", "restart", str(daemon_dir)], env=_env(daemon_dir),
                             capture_output=True, text=True, timeout=120)
    assert restart.returncode == 0, restart.stderr
    assert not record_path.exists()
    assert "not running" in _dorc(daemon_dir, "daemon", "status").stdout
