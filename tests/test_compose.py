"""The compose file runs the same pinned LocalStack as host mode, reachable from this machine only."""

from __future__ import annotations

import yaml

from dorc.localstack.install import LOCALSTACK_VERSION
from dorc.localstack.service import DOCKER_IMAGE, SERVICES
from helpers import REPO_ROOT


def test_compose_file_pins_the_same_localstack_bound_to_loopback():
    doc = yaml.safe_load((REPO_ROOT / "docker-compose.localstack.yml").read_text())
    svc = doc["services"]["localstack"]
    assert svc["image"] == DOCKER_IMAGE
    year, month, patch = LOCALSTACK_VERSION.split(".")
    assert DOCKER_IMAGE.endswith(f":{year}.{int(month):02d}.{patch}")
    assert svc["ports"] == ["127.0.0.1:4566:4566"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in svc["volumes"]  # Lambda containers
    assert svc["environment"]["SERVICES"] == SERVICES
    assert "LOCALSTACK_AUTH_TOKEN" in svc["environment"]
