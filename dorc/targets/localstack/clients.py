"""boto3 clients for one LocalStack endpoint and region, made on first use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TARGET = "localstack"


@dataclass
class Clients:
    endpoint: str
    region: str

    def __post_init__(self):
        from botocore.config import Config

        from ...localstack.endpoint import session

        cfg = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        self.session = session(self.endpoint, self.region)  # localstack-client's, on this endpoint
        self._make = lambda svc: self.session.client(svc, config=cfg)
        self._cache: dict[str, Any] = {}

    def __getattr__(self, service: str):
        if service.startswith("_"):
            raise AttributeError(service)
        if service not in self._cache:
            self._cache[service] = self._make({"states": "stepfunctions", "awslambda": "lambda"}.get(service, service))
        return self._cache[service]


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ``ClientError`` ("" for anything else)."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")
