"""Packages: deterministic zips (the sha256 names exactly what runs), limits, source digests."""

from __future__ import annotations

import hashlib
import os
import zipfile

import pytest

from dorc.package import (PackageError, UNZIPPED_MAX, ZIP_DIRECT_UPLOAD_MAX, build_zip, package_plan,
                          source_digest)


def _function(tmp_path, files: dict[str, str | bytes]):
    folder = tmp_path / "src" / "fn"
    folder.mkdir(parents=True)
    for name, body in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return folder


def test_rebuilds_are_byte_identical_whatever_the_timestamps_and_modes(tmp_path):
    folder = _function(tmp_path, {"lambda.py": "def handler(e, c):\n    return e\n", "helpers/util.py": "X = 1\n"})
    first = build_zip("fn", folder, "python3.12", tmp_path / "out1", tmp_path / "cache")
    for path in folder.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (folder / "helpers" / "util.py").chmod(0o600)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "lambda.cpython-311.pyc").write_bytes(b"compiled")
    second = build_zip("fn", folder, "python3.12", tmp_path / "out2", tmp_path / "cache")
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert hashlib.sha256(second.path.read_bytes()).hexdigest() == second.sha256
    with zipfile.ZipFile(second.path) as zf:
        names = zf.namelist()
        assert names == sorted(names) == ["helpers/util.py", "lambda.py"]  # at the zip root, no bytecode
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {(i.external_attr >> 16) & 0o777 for i in zf.infolist()} == {0o644}


def test_a_changed_source_changes_the_digest(tmp_path):
    folder = _function(tmp_path, {"lambda.py": "def handler(e, c):\n    return 1\n"})
    before = build_zip("fn", folder, "python3.12", tmp_path / "o", tmp_path / "c").sha256
    digest_before = source_digest(folder)
    (folder / "lambda.py").write_text("def handler(e, c):\n    return 2\n")
    assert build_zip("fn", folder, "python3.12", tmp_path / "o", tmp_path / "c").sha256 != before
    assert source_digest(folder) != digest_before


def test_zipped_size_limit_is_checked_with_a_clear_error(tmp_path):
    folder = _function(tmp_path, {"lambda.py": "def handler(e, c):\n    return e\n",
                                  "data.bin": os.urandom(ZIP_DIRECT_UPLOAD_MAX + 1024)})
    with pytest.raises(PackageError, match="zipped; a direct upload allows 50 MB"):
        build_zip("fn", folder, "python3.12", tmp_path / "o", tmp_path / "c")


def test_unzipped_size_limit_is_checked_before_zipping(tmp_path):
    folder = _function(tmp_path, {"lambda.py": "def handler(e, c):\n    return e\n"})
    with open(folder / "big.bin", "wb") as fh:  # sparse: no disk or time spent on 250 MB
        fh.truncate(UNZIPPED_MAX + 1)
    with pytest.raises(PackageError, match="unzipped; Lambda allows 250 MB"):
        build_zip("fn", folder, "python3.12", tmp_path / "o", tmp_path / "c")


def test_a_requirement_that_cannot_be_vendored_is_reported(tmp_path):
    folder = _function(tmp_path, {"lambda.py": "def handler(e, c):\n    return e\n",
                                  "requirements.txt": "no-such-package-dorc-test==0.0.1\n"})
    with pytest.raises(PackageError, match="could not vendor no-such-package-dorc-test"):
        build_zip("fn", folder, "python3.12", tmp_path / "o", tmp_path / "c")


def test_census_packages_are_reproducible_across_builds(census_repo, tmp_path):
    from dorc.api import plan_layer
    from dorc.project import find_project

    plan = plan_layer(find_project(census_repo), "census", "processed", "prod")
    a = package_plan(plan, tmp_path / "a", tmp_path / "cache")
    b = package_plan(plan, tmp_path / "b", tmp_path / "cache")
    assert a.packages() == b.packages()
    assert all(len(sha) == 64 for sha in a.packages().values())
    assert a.digest() == b.digest()
