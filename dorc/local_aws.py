"""The local AWS server and the local S3 store, as library functions (``dorc sim``, ``dorc store``).

    sim_start, sim_stop, sim_status      the config repo's local AWS server (``dorc_sim.awsserver``)
    store_list, store_read, store_remove the store's objects (``ls --prefix``, ``cat``, ``rm``)
    store_check, store_repair            a damaged store found and rebuilt from its object files
"""

from __future__ import annotations

import os

from .errors import DorcError
from .project import Project, find_project
from .triggers import parse_s3_url

__all__ = ["sim_start", "sim_stop", "sim_status", "store_list", "store_read", "store_remove", "store_check",
           "store_repair"]


def _dir(config_repo, project: Project | None):
    return (project or find_project(config_repo)).local_aws_dir


def sim_start(*, config_repo: str | os.PathLike | None = None, project: Project | None = None):
    """The running server (``ServerInfo``: pid, port, url), started if none runs."""
    from dorc_sim.aws import start_server

    project = project or find_project(config_repo)
    return start_server(project.local_aws_dir, project.settings.server_idle_minutes)


def sim_stop(*, config_repo: str | os.PathLike | None = None, project: Project | None = None):
    """Stop the server by the PID it recorded; what was stopped, or None if none ran."""
    from dorc_sim.aws import stop_server

    return stop_server(_dir(config_repo, project))


def sim_status(*, config_repo: str | os.PathLike | None = None, project: Project | None = None):
    """(``ServerInfo`` or None, one line saying so)."""
    from dorc_sim.aws import server_status

    return server_status(_dir(config_repo, project))


def store_list(prefix: str = "", *, config_repo: str | os.PathLike | None = None,
               project: Project | None = None) -> list[tuple[str, str, int]]:
    """(bucket, key, size) of the stored objects whose key (or s3://bucket/key) starts with ``prefix``."""
    from dorc_sim.aws import list_store

    return list_store(_dir(config_repo, project), prefix)


def store_read(url: str, *, config_repo: str | os.PathLike | None = None, project: Project | None = None) -> bytes:
    """The bytes of ``s3://BUCKET/KEY`` in the local store."""
    from dorc_sim.aws import read_stored_object

    bucket, key = parse_s3_url(url)
    body = read_stored_object(_dir(config_repo, project), bucket, key)
    if body is None:
        raise DorcError(f"{url} is not in the local store", hint="see what it holds: dorc store ls")
    return body


def store_remove(url: str, *, config_repo: str | os.PathLike | None = None, project: Project | None = None) -> None:
    """Delete ``s3://BUCKET/KEY`` from the local store (through the server, as a handler would)."""
    from dorc_sim.aws import delete_stored_object

    bucket, key = parse_s3_url(url)
    if not delete_stored_object(_dir(config_repo, project), bucket, key):
        raise DorcError(f"{url} is not in the local store", hint="see what it holds: dorc store ls")


def store_check(*, config_repo: str | os.PathLike | None = None, project: Project | None = None) -> list[str]:
    """What is wrong with the store on disk, one line each; [] when it is sound."""
    from dorc_sim.aws import check_store

    return check_store(_dir(config_repo, project))


def store_repair(*, config_repo: str | os.PathLike | None = None, project: Project | None = None) -> list[str]:
    """Rebuild the store's indexes from its object files; what was done, one line each."""
    from dorc_sim.aws import repair_store

    return repair_store(_dir(config_repo, project))
