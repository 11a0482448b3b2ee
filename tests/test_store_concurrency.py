"""The local S3 store under concurrent runs: several ``dorc run`` processes on one config repo
keep every write as S3 would, and a damaged store is reported and repaired, never emptied."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import OUTSIDE_VARS, make_project, run_dorc_subprocess
from dorc_sim.aws import list_store, stop_server

BUCKET = "conc-holding-local"
WRITER = f"""
import json, time, boto3

def handler(event, context):
    s3 = boto3.client("s3")
    if event.get("after"):  # wait for another run's put of the same key, then put over it
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if s3.get_object(Bucket={BUCKET!r}, Key=event["key"])["Body"].read() == event["after"].encode():
                    break
            except s3.exceptions.NoSuchKey:
                pass
            time.sleep(0.05)
    s3.put_object(Bucket={BUCKET!r}, Key=event["key"], Body=event["body"].encode())
    time.sleep(event.get("linger", 0))  # still running while the other run writes
    return {{"statusCode": 200, "body": {{"wrote": event["key"]}}}}
"""
MAIN = "from dorc import CreatePipeline, PipelineDefinition, Function, load_config\n" \
       "config = load_config(__file__)\n" \
       "CreatePipeline(config, PipelineDefinition(file_path=__file__, description='writes a key', " \
       "functions=[Function(name='w1')])).apply()\n"


def _project(tmp_path: Path) -> Path:
    return make_project(tmp_path, {"demo/writer": {"main": MAIN, "functions": {"w1": WRITER}},
                                   "demo/other": {"main": MAIN, "functions": {"w1": WRITER}}}, name="conc")


def _start_run(root: Path, layer: str, event: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
    return subprocess.Popen([sys.executable, "-m", "dorc", "run", "demo", layer, "--local", "-q", "--event",
                             json.dumps(event)], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out


def test_six_runs_of_one_layer_at_once_keep_all_six_keys(tmp_path):
    root = _project(tmp_path)
    state = root / ".dorc" / "local-aws"
    try:
        _wait_all([_start_run(root, "writer", {"key": f"out/k{i}", "body": f"run {i}"}) for i in range(6)])
        assert [k for _, k, _ in list_store(state)] == [f"out/k{i}" for i in range(6)]
        for i in range(6):
            done = run_dorc_subprocess("store", "cat", f"s3://{BUCKET}/out/k{i}", cwd=root)
            assert done.stdout == f"run {i}", done.stderr
    finally:
        stop_server(state)


def test_same_key_from_two_layers_ends_with_the_last_put(tmp_path):
    root = _project(tmp_path)
    state = root / ".dorc" / "local-aws"
    try:
        first = _start_run(root, "writer", {"key": "shared.txt", "body": "first", "linger": 2})
        second = _start_run(root, "other", {"key": "shared.txt", "body": "second", "after": "first"})
        _wait_all([first, second])  # the first run ends after the second put: its end must not undo it
        assert (state / "s3" / BUCKET / "objects" / "shared.txt").read_bytes() == b"second"
        stop_server(state)  # and a new server loads what S3 kept
        done = run_dorc_subprocess("store", "cat", f"s3://{BUCKET}/shared.txt", cwd=root)
        assert done.stdout == "second"
    finally:
        stop_server(state)


def test_a_truncated_index_is_reported_repaired_and_never_emptied(cli, tmp_path, monkeypatch):
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    (tmp_path / "a.csv").write_text("a,b\n1,2\n")
    for key in ("inbox/a.csv", "inbox/b.csv"):
        assert cli("store", "put", f"s3://{BUCKET}/{key}", tmp_path / "a.csv", "--no-trigger").exit_code == 0
    assert cli("sim", "stop").exit_code == 0
    index = root / ".dorc" / "local-aws" / "s3" / BUCKET / "index.json"
    index.write_bytes(index.read_bytes()[:40])  # a disk filled up mid-write, say

    checked = cli("store", "check")
    assert checked.exit_code == 1
    assert str(index) in checked.output and "not valid JSON" in checked.output and "dorc store repair" in checked.output

    ran = cli("run", "demo", "writer", "--local", "-q", "--event", '{"key": "out/x", "body": "x"}')
    assert ran.exit_code == 2, ran.output
    assert "damaged" in ran.output and "dorc store repair" in ran.output and "Traceback" not in ran.output
    assert sorted(p.name for p in index.parent.joinpath("objects").iterdir()) == ["inbox%2Fa.csv", "inbox%2Fb.csv"]
    assert cli("store", "ls").exit_code == 2  # an error, not "the local store is empty"

    repaired = cli("store", "repair")
    assert repaired.exit_code == 0, repaired.output
    assert "rebuilt" in repaired.output and "sound" in repaired.output
    assert cli("store", "check").output.strip() == "the local store is sound"
    assert cli("run", "demo", "writer", "--local", "-q", "--event", '{"key": "out/x", "body": "x"}').exit_code == 0
    listed = cli("store", "ls").output
    assert all(f"s3://{BUCKET}/{k}" in listed for k in ("inbox/a.csv", "inbox/b.csv", "out/x"))


def test_check_names_a_stray_folder_a_missing_object_and_an_ill_shaped_index(cli, tmp_path, monkeypatch):
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    (tmp_path / "f").write_text("data")
    for key in ("a", "b"):
        assert cli("store", "put", f"s3://{BUCKET}/{key}", tmp_path / "f", "--no-trigger").exit_code == 0
    cli("sim", "stop")
    s3 = root / ".dorc" / "local-aws" / "s3"
    (s3 / BUCKET / "objects" / "b").unlink()
    (s3 / "Not A Bucket").mkdir()
    (s3 / "other-bucket").mkdir()
    (s3 / "other-bucket" / "index.json").write_text("[1, 2]")
    out = cli("store", "check").output
    assert "object file of key 'b' is missing" in out
    assert "Not A Bucket: a folder whose name is not a bucket name" in out
    assert "other-bucket/index.json: not a map" in out
    assert cli("store", "repair").exit_code == 0
    assert list_store(root / ".dorc" / "local-aws") == [(BUCKET, "a", 4)]
    assert (root / ".dorc" / "local-aws" / "lost+found").is_dir()  # the stray folder, kept


def test_deletes_persist_and_store_ls_cat_rm(cli, tmp_path, monkeypatch):
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    (tmp_path / "f").write_text("hello")
    for key in ("in/a", "in/b", "out/c", "in/100% ünï?.csv"):
        assert cli("store", "put", f"s3://{BUCKET}/{key}", tmp_path / "f", "--no-trigger").exit_code == 0
    assert cli("store", "rm", f"s3://{BUCKET}/in/a").exit_code == 0
    cli("sim", "stop")  # a new server must not bring it back
    listed = cli("store", "ls", "--prefix", "in/").output
    assert f"s3://{BUCKET}/in/b" in listed and "in/a" not in listed and "out/c" not in listed
    assert f"s3://{BUCKET}/out/c" in cli("store", "ls", "--prefix", f"s3://{BUCKET}/out").output
    assert cli("store", "cat", f"s3://{BUCKET}/in/b").stdout == "hello"
    assert cli("store", "cat", f"s3://{BUCKET}/in/100% ünï?.csv").stdout == "hello"
    missing = cli("store", "cat", f"s3://{BUCKET}/in/a")
    assert missing.exit_code == 2 and "not in the local store" in missing.output
