"""Every mistake of the user or of the machine is one message naming the file and the fix, the
right exit code, the ``--json`` error document, and (once a run started) a run record: never a
traceback. A bug in dorc itself is one "internal error" line (exit 3), the traceback behind
``DORC_DEBUG=1``."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
from pathlib import Path

import pytest

from helpers import OK_HANDLER, chain_main, handler_returning
from dorc.records import read_records, write_record
from dorc.result import RunResult

# Ctrl-C while a handler runs: the terminal sends SIGINT to dorc (a KeyboardInterrupt the handler
# raises itself is the handler's failure, see tests/test_runtime_fidelity.py)
SLEEPING = "import time\n\ndef handler(event, context):\n    time.sleep(8)\n"


@pytest.fixture
def repo(project_factory) -> Path:
    return project_factory({"demo/main": {"main": chain_main("f1", "f2"),
                                          "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}}})


def _clean(r) -> None:
    assert "Traceback" not in r.output, r.output


def _error_doc(r) -> dict:
    """The one JSON document a failed ``--json`` command puts on stdout."""
    doc = json.loads(r.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == r.exit_code
    return doc["error"]


def _records(root: Path) -> list[dict]:
    return read_records(root / ".dorc")


def _strict(text: str):
    """JSON as jq or JavaScript read it: NaN and Infinity are not JSON."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


# -- text files saved in another encoding --------------------------------------------------

def test_an_event_file_saved_as_utf16_is_read_and_one_in_latin1_is_named(cli, repo, tmp_path):
    """Windows editors save "Unicode" as UTF-16 with a byte-order mark: that is still the event."""
    event = tmp_path / "event.json"
    event.write_text('{"year": 2020, "place": "Zürich"}', encoding="utf-16")
    r = cli("run", "demo", "main", "--event", f"@{event}", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 0
    assert json.loads(r.stdout)["steps"][0]["input"] == {"year": 2020, "place": "Zürich"}

    event.write_bytes('{"place": "Zürich"}'.encode("latin-1"))
    r = cli("run", "demo", "main", "--event", f"@{event}", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 2
    err = _error_doc(r)
    assert str(event) in err["message"] and "not UTF-8" in err["message"] and "save it as UTF-8" in err["hint"]
    assert _records(repo) == [_records(repo)[0]]  # only the first run is recorded


def test_dorc_toml_saved_as_utf16_with_a_bom_is_read(cli, repo):
    settings = repo / "dorc.toml"
    settings.write_text(settings.read_text() + 'region = "eu-west-1"\n', encoding="utf-16")
    r = cli("run", "demo", "main", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "succeeded"

    settings.write_bytes(b'[project]\nname = "caf\xe9"\n')  # Latin-1: neither UTF-8 nor marked
    r = cli("run", "demo", "main", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 2
    assert f"{settings}: the settings file is not UTF-8 text (byte 0xe9" in r.stderr and "fix: save it as UTF-8" in r.stderr


# -- settings that cannot be used ---------------------------------------------------------

def test_an_unknown_key_in_a_dorc_toml_template_is_named(cli, repo):
    (repo / "dorc.toml").write_text('[project]\nname = "t"\n[buckets]\nholding = "{project}-{team}"\n')
    r = cli("run", "demo", "main", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 2
    err = _error_doc(r)
    assert err["message"] == f"{repo / 'dorc.toml'}: [buckets] holding = '{{project}}-{{team}}': unknown key {{team}}"
    assert "{project}, {env} and {region}" in err["hint"]
    assert _records(repo) == []  # nothing ran


def test_a_region_that_is_not_text_in_a_stack_file_is_named(cli, repo):
    stack = repo / "src/demo/main/Pulumi.preprod.yaml"
    stack.write_text("config:\n  aws:region: 5\n")
    r = cli("run", "demo", "main", "--env", "preprod", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 2
    err = _error_doc(r)
    assert err["message"] == f"{stack}: aws:region: 5 is not a region name"
    assert "aws:region: eu-west-2" in err["hint"]


def test_a_file_name_that_is_not_utf8_stops_the_run_before_it_starts(cli, repo):
    """Such a name cannot go into a Lambda zip (nor a run record): say so before running, not after."""
    odd = os.path.join(os.fsencode(repo / "src/demo/main/src/f1"), b"caf\xe9.py")
    with open(odd, "wb") as f:
        f.write(b"X = 1\n")
    r = cli("run", "demo", "main", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 2
    err = _error_doc(r)
    assert err["message"] == (f"{repo.name}/src/demo/main/src/f1/caf\\xe9.py: the file name is not valid UTF-8, "
                              "so it cannot go into a Lambda package")
    assert err["hint"].startswith("rename the file")
    assert _records(repo) == []


# -- the machine refuses a write: read-only folders, a full disk ---------------------------

def _refuse_writes(monkeypatch, under: Path, code: int) -> None:
    """Writes under ``under`` fail as the machine would fail them (tests run as root, for which a
    read-only folder is writable): EROFS/EACCES before writing; ENOSPC after half the bytes."""
    real = {name: getattr(Path, name) for name in ("write_bytes", "write_text", "mkdir")}
    strerror = os.strerror(code)

    def inside(path: Path) -> bool:
        return Path(os.path.abspath(path)).is_relative_to(under)

    def write(name):
        def patched(self, data, *args, **kwargs):
            if inside(self):
                if code == errno.ENOSPC:  # the disk fills half way: a partial file is left to clean up
                    real[name](self, data[: len(data) // 2], *args, **kwargs)
                raise OSError(code, strerror, str(self))
            return real[name](self, data, *args, **kwargs)
        return patched

    def mkdir(self, *args, **kwargs):
        if inside(self) and code != errno.ENOSPC and not self.exists():
            raise OSError(code, strerror, str(self))
        return real["mkdir"](self, *args, **kwargs)

    real_open = Path.open

    def open_for_writing(self, mode="r", *args, **kwargs):  # a run record is written step by step
        if inside(self) and any(c in mode for c in "wax+"):
            if code == errno.ENOSPC:  # created, then the disk is full
                real_open(self, mode, *args, **kwargs).close()
            raise OSError(code, strerror, str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_for_writing)
    monkeypatch.setattr(Path, "write_bytes", write("write_bytes"))
    monkeypatch.setattr(Path, "write_text", write("write_text"))
    monkeypatch.setattr(Path, "mkdir", mkdir)


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in (root / ".dorc").rglob("*") if p.name.endswith(".tmp")]


def test_a_read_only_dorc_folder_is_named_with_the_fix(cli, repo, monkeypatch):
    _refuse_writes(monkeypatch, repo / ".dorc", errno.EROFS)
    r = cli("run", "demo", "main", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 2  # nothing ran: the functions' task roots are unpacked under .dorc/
    err = _error_doc(r)
    assert err["type"] == "FileSystemError"
    assert err["message"].startswith(f"before the run: Read-only file system: {repo}/.dorc/")
    assert "make " in err["hint"] and "writable" in err["hint"]
    monkeypatch.undo()
    assert _records(repo) == []


def test_a_read_only_local_store_stops_the_run_before_it_starts(cli, repo, monkeypatch):
    # the local AWS server keeps its address and the store there: without them nothing can run
    _refuse_writes(monkeypatch, repo / ".dorc" / "local-aws", errno.EACCES)
    r = cli("run", "demo", "main", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 2
    assert f"error: before the run: Permission denied: {repo}/.dorc/local-aws" in " ".join(r.stderr.split())
    assert "fix: make " in r.stderr
    assert "Traceback" not in r.stderr


def test_a_full_disk_is_named_and_leaves_no_temporary_file(cli, repo, monkeypatch):
    _refuse_writes(monkeypatch, repo / ".dorc", errno.ENOSPC)
    r = cli("run", "demo", "main", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 2  # nothing ran: the functions' task roots are unpacked under .dorc/
    err = _error_doc(r)
    assert "No space left on device" in err["message"] and f"{repo}/.dorc/" in err["message"]
    assert err["hint"].startswith("free disk space on the drive that holds")
    monkeypatch.undo()
    assert _tmp_files(repo) == []


def test_a_record_that_cannot_be_written_is_a_warning_on_the_shown_run(cli, repo, monkeypatch):
    """The run happened: its result is still shown (and its exit code kept); the lost record is said."""
    _refuse_writes(monkeypatch, repo / ".dorc" / "runs", errno.ENOSPC)
    r = cli("run", "demo", "main", "--json", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["status"] == "succeeded"
    [warning] = [w for w in doc["warnings"] if "run record" in w]
    assert warning.startswith("the run record could not be written to ") and "No space left on device" in warning
    assert "free disk space" in warning
    monkeypatch.undo()
    assert _tmp_files(repo) == [] and _records(repo) == []


# -- records ------------------------------------------------------------------------------

def test_runs_skips_records_of_the_wrong_shape(cli, repo):
    assert cli("run", "demo", "main", "--config-repo", repo).exit_code == 0
    runs = repo / ".dorc" / "runs"
    (runs / "00000000T000000-000-a.json").write_text("[1, 2, 3]")
    (runs / "00000000T000000-000-b.json").write_text('{"pipeline": "demo", "steps": 5}')
    (runs / "00000000T000000-000-c.json").write_text('{"pipeline": "demo", "steps": [{"error": "boom"}]}')
    (runs / "00000000T000000-000-d.json").write_text('{"pipeline": ["demo"], "status": "failed"}')
    r = cli("runs", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 0
    assert "demo/main" in r.stdout and "succeeded" in r.stdout and "failed" not in r.stdout
    assert [d["pipeline"] for d in _records(repo)] == ["demo"]


def test_records_started_in_the_same_millisecond_never_overwrite_each_other(tmp_path):
    """Names are taken exclusively (a hard link, or ``open(..., "x")``): threads racing for one
    name, and a file already there, each keep their own record."""
    state = tmp_path / ".dorc"
    started = 1_790_000_000.5
    first = write_record(state, RunResult("demo", "main", "local", "local", started_at=started))
    first.write_text('{"written": "by another process"}')
    barrier = threading.Barrier(12)
    paths: list[Path] = []

    def write():
        barrier.wait()
        paths.append(write_record(state, RunResult("demo", "main", "local", "local", started_at=started)))

    threads = [threading.Thread(target=write) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 12 and first not in paths
    assert first.read_text() == '{"written": "by another process"}'
    assert all(json.loads(p.read_text())["status"] == "succeeded" for p in paths)
    assert not [p for p in (state / "runs").iterdir() if p.suffix != ".json"]  # no temporary file left


# -- Ctrl-C and values JSON cannot hold ----------------------------------------------------

def _ctrl_c_in(seconds: float) -> threading.Timer:
    """Ctrl-C reaching dorc (this process: the cli fixture runs it here) while f2 sleeps."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_says_interrupted_exits_130_and_records_the_run_as_cancelled(cli, project_factory):
    root = project_factory({"demo/main": {"main": chain_main("f1", "f2", "f3"), "functions": {
        "f1": OK_HANDLER, "f2": SLEEPING, "f3": OK_HANDLER}}})
    _ctrl_c_in(2.0)
    r = cli("run", "demo", "main", "--config-repo", root)
    _clean(r)
    assert r.exit_code == 130
    assert "pipeline cancelled: interrupted (Ctrl-C) while demo/main f2 was running" in r.stdout
    [record] = _records(root)
    assert r.stderr.rstrip().endswith(f"interrupted; recorded as cancelled: {record['record_path']}")
    assert record["status"] == "cancelled" and [s["function"] for s in record["steps"]] == ["f1"]
    assert record["error"]["type"] == "Interrupted"

    _ctrl_c_in(2.0)
    r = cli("run", "demo", "main", "--json", "--config-repo", root)
    assert r.exit_code == 130
    doc = json.loads(r.stdout)
    assert doc["status"] == "cancelled" and [s["function"] for s in doc["steps"]] == ["f1"]
    assert "cancelled" in cli("runs", "--config-repo", root).stdout


def test_nan_and_infinity_in_a_result_still_give_valid_json(cli, project_factory):
    """Lambda's runtime lets a handler return NaN (it writes the token ``NaN``); JSON has no such
    value, so dorc's documents write it as a string and say so."""
    root = project_factory({"demo/main": {"main": chain_main("f1"), "functions": {"f1": handler_returning(
        "{'statusCode': 200, 'body': {'mean': float('nan'), 'max': float('inf'), 'min': float('-inf')}}")}}})
    r = cli("run", "demo", "main", "--json", "--config-repo", root)
    _clean(r)
    assert r.exit_code == 0
    doc = _strict(r.stdout)
    assert doc["output"]["body"] == {"mean": "NaN", "max": "Infinity", "min": "-Infinity"}
    assert any("NaN or Infinity" in w and "Step Functions" in w for w in doc["warnings"])
    [record] = _records(root)
    assert _strict(Path(record["record_path"]).read_text())["steps"][0]["output"]["body"]["max"] == "Infinity"


# -- a bug in dorc ------------------------------------------------------------------------

def test_an_internal_error_is_one_line_and_the_traceback_is_behind_dorc_debug(cli, repo, monkeypatch):
    from dorc import api

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(api, "run_records", broken)
    r = cli("runs", "--config-repo", repo)
    _clean(r)
    assert r.exit_code == 3
    first_line = r.stderr.splitlines()[0]  # where in dorc it broke: the last frame of dorc's own code
    assert first_line.startswith("internal error in dorc: ZeroDivisionError: division by zero at pipelines.py:")
    assert first_line.endswith(" in runs")
    assert "DORC_DEBUG=1 shows the traceback" in r.stderr

    monkeypatch.setattr(api, "run_pipeline", broken)
    r = cli("run", "demo", "main", "--json", "--config-repo", repo)
    assert r.exit_code == 3
    assert _error_doc(r)["type"] == "InternalError"

    monkeypatch.setenv("DORC_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli("runs", "--config-repo", repo)


def test_a_real_ctrl_c_in_a_dorc_process_is_recorded_as_cancelled(project_factory):
    """SIGINT to a running ``dorc run``, as a terminal sends it: exit 130, the cancelled document
    on stdout, "interrupted" on stderr, and the record."""
    import signal
    import subprocess
    import sys

    from helpers import OUTSIDE_VARS

    sleeper = ("import time\n\ndef handler(event, context):\n    print('handler is running', flush=True)\n"
               "    time.sleep(30)\n    return {'statusCode': 200, 'body': 'late'}\n")
    root = project_factory({"demo/main": {"main": chain_main("f1", "f2"), "functions": {
        "f1": OK_HANDLER, "f2": sleeper}}})
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
    proc = subprocess.Popen([sys.executable, "-m", "dorc", "run", "demo", "main", "--json", "--config-repo", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stderr:
            if "handler is running" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted; recorded as cancelled" in err
    doc = json.loads(out)
    assert doc["status"] == "cancelled" and [s["function"] for s in doc["steps"]] == ["f1"]
    assert doc["error"]["message"] == "interrupted (Ctrl-C) while demo/main f2 was running"
    [record] = _records(root)
    assert record["status"] == "cancelled"
