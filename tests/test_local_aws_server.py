"""LocalAWS over HTTP: a handler in another process reaches the same moto backends as dorc's
in-process clients, its writes are persisted, and the server is silent and gone after the block."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from dorc_sim.aws import FAKE_CREDENTIALS, LocalAWS, LocalAWSServerError, list_store, put_stored_object

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


def _run_handler(env: dict[str, str]) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-c", HANDLER], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _refused(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_handler_process_writes_are_seen_and_persisted_and_nothing_is_printed(tmp_path, capfd):
    put_stored_object(tmp_path, BUCKET, "raw/old.json", b"from an earlier run")
    with LocalAWS(tmp_path, REGION, [BUCKET], serve=True) as aws:
        env = aws.sandbox_environment()
        assert set(env) == {*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL"}
        assert env["AWS_ENDPOINT_URL"] == aws.endpoint_url
        assert aws.endpoint_url.startswith("http://127.0.0.1:")
        assert "AWS_ENDPOINT_URL" not in os.environ  # dorc's own clients stay in-process

        assert _run_handler(env) == ["raw/new.json"]

        s3 = aws.client("s3")
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["raw/new.json"]
        assert s3.get_object(Bucket=BUCKET, Key="raw/new.json")["Body"].read() == b'{"n": 1}'
        url = aws.endpoint_url

    assert list_store(tmp_path) == [(BUCKET, "raw/new.json", 8)]
    assert _refused(url)
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


def test_server_is_silent_in_a_process_of_its_own(tmp_path):
    """As in ``dorc run --json``: no logging configured, stdout a JSON document. (Under pytest,
    its logging capture would hide werkzeug's request lines from capfd.)"""
    script = f"""
import os, subprocess, sys
from dorc_sim.aws import LocalAWS
with LocalAWS({str(tmp_path)!r}, {REGION!r}, [{BUCKET!r}], serve=True) as aws:
    env = {{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}}
    subprocess.run([sys.executable, "-c", {HANDLER!r}], env={{**env, **aws.sandbox_environment()}},
                   check=True, stdout=subprocess.DEVNULL)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert list_store(tmp_path) == [(BUCKET, "raw/new.json", 8)]


def test_nested_blocks_share_the_outer_server_which_stops_with_the_outer(tmp_path):
    with LocalAWS(tmp_path, REGION, [BUCKET]) as outer:  # as the pytest plugin's dorc_aws
        with LocalAWS(tmp_path, REGION, [BUCKET], serve=True) as inner:  # as a run inside it
            url = inner.endpoint_url
            with LocalAWS(tmp_path, REGION, [BUCKET], serve=True) as innermost:
                assert innermost.endpoint_url == url
        assert outer.endpoint_url == url  # still serving: the outer block owns it
        outer.client("s3").put_object(Bucket=BUCKET, Key="seeded", Body=b"abc")
        env = outer.sandbox_environment()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        code = (f"import boto3; print(boto3.client('s3', region_name={REGION!r})"
                f".get_object(Bucket={BUCKET!r}, Key='seeded')['Body'].read().decode())")
        done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
                              text=True, timeout=60)
        assert done.stdout.strip() == "abc", done.stderr
    assert _refused(url)
    with pytest.raises(RuntimeError, match="only available inside"):
        outer.endpoint_url


def test_endpoint_is_started_on_demand_without_serve(tmp_path):
    with LocalAWS(tmp_path, REGION, [BUCKET]) as aws:
        url = aws.endpoint_url
        assert not _refused(url)
    assert _refused(url)


def _saved_env(monkeypatch) -> dict[str, str]:
    want = {"AWS_ACCESS_KEY_ID": "mine", "AWS_DEFAULT_REGION": "us-west-2"}
    for k, v in want.items():
        monkeypatch.setenv(k, v)
    return want


def test_missing_flask_says_what_to_install_and_the_block_still_cleans_up(tmp_path, monkeypatch):
    want = _saved_env(monkeypatch)
    for name in ("flask", "moto.moto_server.werkzeug_app", "moto.moto_server.threaded_moto_server"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(LocalAWSServerError, match=r"pip install 'moto\[s3,server\]'") as caught:
        with LocalAWS(tmp_path, REGION, [BUCKET], serve=True) as aws:
            aws.client("s3").put_object(Bucket=BUCKET, Key="k", Body=b"kept")
            aws.endpoint_url
    assert isinstance(caught.value, RuntimeError) and "moto[s3,server]" in caught.value.hint
    assert {k: os.environ.get(k) for k in want} == want
    assert list_store(tmp_path) == [(BUCKET, "k", 4)]  # the run's own writes are still saved
    with LocalAWS(tmp_path / "other", REGION, [BUCKET]):  # the failed block is no longer active
        pass


def test_a_failed_bind_is_reported_not_waited_for(tmp_path, monkeypatch):
    import werkzeug.serving

    def no_port(*args, **kwargs):
        raise OSError(98, "Address already in use")

    want = _saved_env(monkeypatch)
    monkeypatch.setattr(werkzeug.serving, "make_server", no_port)
    with pytest.raises(LocalAWSServerError, match="could not listen on 127.0.0.1.*Address already in use"):
        with LocalAWS(tmp_path, REGION, [BUCKET], serve=True) as aws:
            aws.sandbox_environment()
    assert {k: os.environ.get(k) for k in want} == want
