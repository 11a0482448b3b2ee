"""LocalAWS, dorc's side of the local AWS server: a handler in another process reaches the same
server as dorc's own clients, its writes and deletes are on disk when its call returns, nothing
is printed, and dorc's own environment is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dorc_sim.aws import (FAKE_CREDENTIALS, LocalAWS, LocalAWSServerError, LocalStoreDamaged, list_store,
                          put_stored_object, stop_server)

REGION = "eu-west-1"
BUCKET = "holding-bucket"

# What a handler does: its own boto3, configured only by the environment it is given.
HANDLER = """
import json, boto3
s3 = boto3.client("s3", region_name=%r)
s3.put_object(Bucket=%r, Key="raw/new.json", Body=b'{"n": 1}')
s3.put_object(Bucket=%r, Key="raw/tmp.json", Body=b"scratch")
s3.delete_object(Bucket=%r, Key="raw/tmp.json")
s3.delete_object(Bucket=%r, Key="raw/old.json")
print(json.dumps(sorted(o["Key"] for o in s3.list_objects_v2(Bucket=%r).get("Contents", []))))
""" % (REGION, BUCKET, BUCKET, BUCKET, BUCKET, BUCKET)


@pytest.fixture
def state(tmp_path):
    yield tmp_path / "local-aws"
    stop_server(tmp_path / "local-aws")


def _run_handler(env: dict[str, str]) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-c", HANDLER], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_handler_process_writes_are_seen_and_persisted_and_nothing_is_printed(state, capfd):
    put_stored_object(state, BUCKET, "raw/old.json", b"from an earlier run")
    before = dict(os.environ)
    with LocalAWS(state, REGION, [BUCKET]) as aws:
        env = aws.sandbox_environment()
        assert set(env) == {*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL"}
        assert env["AWS_ENDPOINT_URL"] == aws.endpoint_url
        assert aws.endpoint_url.startswith("http://127.0.0.1:")
        assert dict(os.environ) == before  # dorc's own clients get the endpoint explicitly

        assert _run_handler(env) == ["raw/new.json"]
        assert list_store(state) == [(BUCKET, "raw/new.json", 8)]  # on disk as each call returned

        s3 = aws.client("s3")
        assert s3.get_object(Bucket=BUCKET, Key="raw/new.json")["Body"].read() == b'{"n": 1}'
    with pytest.raises(RuntimeError, match="only available inside"):
        aws.endpoint_url
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_a_run_in_a_process_of_its_own_prints_nothing(state):
    """As in ``dorc run --json``: stdout a JSON document, the server's own lines in its log."""
    script = f"""
import os, subprocess, sys
from dorc_sim.aws import LocalAWS
with LocalAWS({str(state)!r}, {REGION!r}, [{BUCKET!r}]) as aws:
    env = {{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}}
    subprocess.run([sys.executable, "-c", {HANDLER!r}], env={{**env, **aws.sandbox_environment()}},
                   check=True, stdout=subprocess.DEVNULL)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert list_store(state) == [(BUCKET, "raw/new.json", 8)]
    assert "serving" in (state / "server.log").read_text()


def test_blocks_share_the_server_which_outlives_them(state):
    with LocalAWS(state, REGION, [BUCKET]) as outer:
        with LocalAWS(state, REGION, [BUCKET]) as inner:
            assert inner.endpoint_url == outer.endpoint_url
            inner.client("s3").put_object(Bucket=BUCKET, Key="seeded", Body=b"abc")
        assert outer.client("s3").get_object(Bucket=BUCKET, Key="seeded")["Body"].read() == b"abc"
        url = outer.endpoint_url
    with LocalAWS(state, REGION) as again:
        assert again.endpoint_url == url  # still the same server: later runs reuse it


def test_a_damaged_store_is_an_error_naming_the_repair_not_an_empty_store(state):
    put_stored_object(state, BUCKET, "k", b"kept")
    stop_server(state)
    (state / "s3" / BUCKET / "index.json").write_text("{")
    with pytest.raises(LocalStoreDamaged, match="index.json: not valid JSON") as caught:
        with LocalAWS(state, REGION, [BUCKET]):
            pass
    assert "dorc store repair" in caught.value.hint
    assert (state / "s3" / BUCKET / "objects" / "k").read_bytes() == b"kept"


def test_a_server_that_cannot_start_says_why(state, monkeypatch):
    monkeypatch.setenv("DORC_SIM_IDLE_MINUTES", "soon")
    with pytest.raises(LocalAWSServerError, match="not a number of minutes"):
        with LocalAWS(state, REGION, [BUCKET]):
            pass
