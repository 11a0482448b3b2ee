"""Packages are contained and reproducible: only the function's regular files and the vendored
distributions, requirements read as requirements files without letting pip write elsewhere, and
the same bytes whichever Python (at whichever path) builds them. pip runs offline here: wheels are
assembled by hand and found through ``--find-links`` with ``--no-index``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from dorc.package import PackageError, build_zip, package_plan, source_digest
from helpers import OK_HANDLER, build_wheel, chain_main, copy_pipeline_config, make_project

HANDLER = "import dorc_probe\n\n\ndef handler(event, context):\n    return dorc_probe.main()\n"


@pytest.fixture(autouse=True)
def _offline_pip(monkeypatch):
    """pip never asks an index, whatever the user's pip.conf says."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")


def _project(tmp_path: Path, files: dict[str, str], *, dirname: str = "cfg") -> tuple[Path, Path]:
    """(config repo, function folder) of a one-function project whose wheels are in ``<repo>/wheels``:
    ``dorc-probe`` (with a console script) and ``dorc-extra`` (installed by path)."""
    root = make_project(tmp_path, {"demo/main": {"main": chain_main("f1"), "functions": {"f1": {}}}},
                        dirname=dirname)
    fn = root / "src" / "demo" / "main" / "src" / "f1"
    for name, text in files.items():
        (fn / name).parent.mkdir(parents=True, exist_ok=True)
        (fn / name).write_text(text)
    wheels = root / "wheels"
    build_wheel(wheels, "dorc-probe", "1.0.0", {"dorc_probe/__init__.py": "def main():\n    return 'probe'\n"},
           scripts={"dorc-probe": "dorc_probe:main"})
    build_wheel(wheels, "dorc-extra", "2.0.0", {"dorc_extra/__init__.py": "X = 2\n"})
    return root, fn


def _names(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.namelist()


# ---- only regular files of the function's folder --------------------------------------------------------------


def test_a_link_to_a_file_outside_is_refused_never_followed(tmp_path):
    root, fn = _project(tmp_path, {"lambda.py": OK_HANDLER})
    (fn / "passwd").symlink_to("/etc/passwd")
    for build in (lambda: build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache"),
                  lambda: source_digest(fn)):
        with pytest.raises(PackageError, match=r"cfg/src/demo/main/src/f1/passwd is a symbolic link \(to /etc/passwd\)"):
            build()
    assert not (tmp_path / "out" / "f1.zip").exists()


def test_links_inside_the_folder_and_linked_folders_are_refused_too(tmp_path):
    """One rule, whatever the link points to: a package holds the folder's regular files."""
    root, fn = _project(tmp_path, {"lambda.py": OK_HANDLER, "data/real.csv": "a,b\n"})
    (fn / "copy.csv").symlink_to(fn / "data" / "real.csv")
    with pytest.raises(PackageError, match="f1/copy.csv is a symbolic link") as err:
        build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")
    assert "replace the link with a copy" in err.value.hint
    (fn / "copy.csv").unlink()
    (fn / "lib").symlink_to(tmp_path)  # a linked folder would take everything under it
    with pytest.raises(PackageError, match="f1/lib is a symbolic link"):
        source_digest(fn)
    (fn / "lib").unlink()
    (fn / "requirements.txt").symlink_to("/etc/hostname")
    with pytest.raises(PackageError, match="f1/requirements.txt is a symbolic link"):
        build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")


def test_a_linked_function_folder_and_special_files_are_refused(tmp_path):
    root, fn = _project(tmp_path, {"lambda.py": OK_HANDLER})
    os.mkfifo(fn / "pipe")  # reading it would hang the build
    with pytest.raises(PackageError, match="f1/pipe is not a regular file"):
        build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")
    (fn / "pipe").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lambda.py").write_text(OK_HANDLER)
    linked = fn.parent / "f2"
    linked.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PackageError, match="src/f2 is a symbolic link"):
        build_zip("f2", linked, "python3.12", tmp_path / "out", tmp_path / "cache")


def test_cli_refuses_a_linked_file_before_running_and_validate_lists_it(tmp_path, cli):
    root, fn = _project(tmp_path, {"lambda.py": OK_HANDLER})
    (fn / "secret").symlink_to("/etc/passwd")
    res = cli("run", "demo", "main", "--local", "--config-repo", root)
    assert res.exit_code == 2, res.output  # nothing ran: what runs must be what could be deployed
    assert "cfg/src/demo/main/src/f1/secret is a symbolic link" in res.output
    assert "root:" not in res.output
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert "[function f1]: cfg/src/demo/main/src/f1/secret is a symbolic link (to /etc/passwd)" in res.stdout


# ---- requirements files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line, option", [
    ("--target=/tmp/dorc-escape", "--target"), ("-t /tmp/dorc-escape", "--target"),
    ("--prefix /tmp/dorc-escape", "--prefix"), ("--root=/tmp/dorc-escape", "--root"),
    ("-e ../../../../../somewhere", "--editable"), ("--src /tmp/dorc-escape", "--src"), ("--user", "--user"),
])
def test_options_that_make_pip_write_elsewhere_are_refused_with_file_and_line(tmp_path, line, option):
    root, fn = _project(tmp_path, {"lambda.py": OK_HANDLER, "requirements.txt": f"# pinned\ndorc-probe==1.0.0\n{line}\n"})
    with pytest.raises(PackageError) as err:
        build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")
    assert err.value.message.startswith(f"cfg/src/demo/main/src/f1/requirements.txt:3: {option} is not allowed")
    assert "outside the package" in err.value.message
    assert not (tmp_path / "cache").exists()  # refused before pip ran
    with pytest.raises(PackageError, match="requirements.txt:3"):
        source_digest(fn)


def test_unknown_options_and_includes_outside_the_config_repo_are_refused(tmp_path):
    root, fn = _project(tmp_path, {"lambda.py": OK_HANDLER})
    (tmp_path / "outside.txt").write_text("dorc-probe==1.0.0\n")
    layer = fn.parent.parent
    cases = {
        "--no-binary=:all:\n": "requirements.txt:1: --no-binary is not supported",
        "dorc-probe==1.0.0 --config-settings=x=y\n": "requirements.txt:1: --config-settings is not supported",
        "\n\n-r ../../../../../../outside.txt\n": "requirements.txt:3: --requirement ../../../../../../outside.txt is outside "
                                                  "the config repo",
        f"-c {tmp_path / 'outside.txt'}\n": "requirements.txt:1: --constraint .* is outside the config repo",
        "-r https://example.com/r.txt\n": "requirements.txt:1: --requirement https://example.com/r.txt: only files",
        "-r missing.txt\n": r"requirements.txt:1: --requirement missing.txt: no such file",
        "-r ../../requirements.txt\n": "main/requirements.txt includes itself",
    }
    for text, message in cases.items():
        (fn / "requirements.txt").write_text(text)
        (layer / "requirements.txt").write_text("-r src/f1/requirements.txt\n" if "itself" in message else "")
        with pytest.raises(PackageError, match=message):
            build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")


def test_includes_are_read_relative_to_the_including_file(tmp_path):
    """The layer's file includes a shared one (two folders up) that chooses the local wheels; the
    function's file includes a constraints file; paths and links are relative to each file."""
    root, fn = _project(tmp_path, {"lambda.py": HANDLER,
                                   "requirements.txt": "-c ../../constraints.txt\n"
                                                       "dorc-probe  # the version comes from the constraints\n"})
    layer = fn.parent.parent
    (root / "src" / "shared.txt").write_text(  # index options are allowed: a private index is legitimate
        "-i http://127.0.0.1:9/simple --trusted-host 127.0.0.1 --prefer-binary\n--no-index\n"
        "--find-links ../wheels\n\\\n./../wheels/dorc_extra-2.0.0-py3-none-any.whl\n")
    (layer / "requirements.txt").write_text("-r ../../shared.txt\n")
    (layer / "constraints.txt").write_text("dorc-probe==1.0.0\n")
    pkg = build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")
    names = _names(pkg.path)
    assert {"lambda.py", "dorc_probe/__init__.py", "dorc_extra/__init__.py"} <= set(names)
    assert "dorc_probe-1.0.0.dist-info/METADATA" in names
    before = source_digest(fn)
    (layer / "constraints.txt").write_text("dorc-probe==1.0.1\n")  # an included file is part of the sources
    assert source_digest(fn) != before
    with pytest.raises(PackageError) as err:
        build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")
    assert err.value.message.startswith("could not vendor wheels/dorc_extra-2.0.0-py3-none-any.whl, dorc-probe "
                                        "for python3.12 (x86_64):")  # as written, from the config repo
    assert "conflicting dependencies" in err.value.message


def test_hashes_are_required_and_checked(tmp_path):
    root, fn = _project(tmp_path, {"lambda.py": HANDLER})
    wheel = root / "wheels" / "dorc_probe-1.0.0-py3-none-any.whl"
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    links = "--no-index --find-links ../../../../../wheels\n"
    (fn / "requirements.txt").write_text(links + f"dorc-probe==1.0.0 \\\n    --hash=sha256:{good}\n")
    pkg = build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")
    assert "dorc_probe/__init__.py" in _names(pkg.path)
    (fn / "requirements.txt").write_text(links + f"dorc-probe==1.0.0 --hash=sha256:{'0' * 64}\n")
    with pytest.raises(PackageError, match="could not vendor dorc-probe==1.0.0") as err:
        build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")
    assert "HASHES" in err.value.message.upper()
    # once one requirement has a hash, every requirement must (pip's --require-hashes)
    (fn / "requirements.txt").write_text(links + f"dorc-probe==1.0.0 --hash=sha256:{good}\ndorc-extra==2.0.0\n")
    with pytest.raises(PackageError, match="could not vendor") as err:
        build_zip("f1", fn, "python3.12", tmp_path / "out", tmp_path / "cache")
    assert "dorc-extra" in err.value.message and "hash" in err.value.message.lower()


# ---- the same bytes on any machine -------------------------------------------------------------------------------

BUILD = """
import json, sys
from pathlib import Path
from dorc.package import build_zip, source_digest
fn, out, cache = map(Path, sys.argv[1:4])
pkg = build_zip("f1", fn, "python3.12", out, cache)
print(json.dumps({"sha256": pkg.sha256, "source": source_digest(fn), "python": sys.executable}))
"""


def _interpreter(where: Path) -> Path:
    """A virtualenv at ``where`` that sees this one's packages (dorc, pip): another Python path."""
    venv.create(where, with_pip=False, symlinks=True)
    site = next((where / "lib").glob("python3*/site-packages"))
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "pip").is_dir())
    (site / "dorc-test.pth").write_text(f"import site; site.addsitedir({str(ours)!r})\n")
    return where / "bin" / "python"


def test_the_same_sources_give_the_same_bytes_whichever_python_builds_them(tmp_path):
    """A console script's shebang names the Python that installed it, RECORD lists it, pip writes
    INSTALLER/REQUESTED and direct_url.json (the wheel's absolute path): none of it may reach the
    package, or promotion from CI to a laptop sees drift. Two copies of the config repo, two
    interpreters at different paths (one long, with a space: pip's /bin/sh shebang trick)."""
    reqs = "--no-index\n--find-links ../../../../../wheels\ndorc-probe==1.0.0\n../../../../../wheels/dorc_extra-2.0.0-py3-none-any.whl\n"
    builds = []
    for i, where in enumerate([tmp_path / "a" / "py", tmp_path / ("b" * 60) / "with space" / ("c" * 60) / "py"]):
        python = _interpreter(where)
        root, fn = _project(tmp_path / f"checkout{i}", {"lambda.py": HANDLER, "requirements.txt": reqs})
        proc = subprocess.run([str(python), "-c", BUILD, str(fn), str(tmp_path / f"out{i}"), str(tmp_path / f"cache{i}")],
                              capture_output=True, text=True, timeout=120, cwd=where)
        assert proc.returncode == 0, proc.stderr
        builds.append((json.loads(proc.stdout), tmp_path / f"out{i}" / "f1.zip", python, fn))
    (first, zip_a, python_a, fn_a), (second, zip_b, python_b, fn_b) = builds
    assert first["python"] != second["python"]
    assert first["sha256"] == second["sha256"]
    assert zip_a.read_bytes() == zip_b.read_bytes()
    assert first["source"] == second["source"] == source_digest(fn_a)
    assert build_zip("f1", fn_a, "python3.12", tmp_path / "here", tmp_path / "cache-here").sha256 == first["sha256"]

    names = _names(zip_a)
    assert {"lambda.py", "dorc_probe/__init__.py", "dorc_extra/__init__.py",
            "dorc_probe-1.0.0.dist-info/entry_points.txt"} <= set(names)
    assert not [n for n in names if n.startswith("bin/") or "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.rsplit("/", 1)[-1] in {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}]
    with zipfile.ZipFile(zip_a) as zf:
        blob = b"".join(zf.read(n) for n in names)
        assert {(i.external_attr >> 16) & 0o777 for i in zf.infolist()} == {0o644}
    for machine_path in (python_a, python_b, sys.executable, tmp_path):
        assert str(machine_path).encode() not in blob


def test_census_digests_do_not_depend_on_where_the_config_repo_is(census_repo, tmp_path):
    from dorc.api import plan_layer
    from dorc.project import find_project
    other = copy_pipeline_config(tmp_path / "elsewhere" / "deeper")
    a = package_plan(plan_layer(find_project(census_repo), "census", "raw", "prod"), tmp_path / "a", tmp_path / "c1")
    b = package_plan(plan_layer(find_project(other), "census", "raw", "prod"), tmp_path / "b", tmp_path / "c2")
    assert a.packages() == b.packages()
    assert [source_digest(Path(f.source_dir)) for f in a.functions] == [source_digest(Path(f.source_dir)) for f in b.functions]
