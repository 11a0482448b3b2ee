"""boto3 clients for one LocalStack endpoint and region, made on first use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TARGET = "localstack"
_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


@dataclass
class Clients:
    endpoint: str
    region: str

    def __post_init__(self):
        import boto3
        from botocore.config import Config

        cfg = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        self._make = lambda svc: boto3.client(svc, endpoint_url=self.endpoint, region_name=self.region,
                                              config=cfg, **_CREDENTIALS)
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
