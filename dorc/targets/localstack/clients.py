"""boto3 clients for one LocalStack endpoint and region, made on first use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

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


def log_event_pages(logs, log_group: str, since_ms: int, *, max_pages: int) -> Iterator[list[dict[str, Any]]]:
    """``FilterLogEvents`` of one log group from ``since_ms``, page by page, until the last page
    (LocalStack may hand back the same token again: that is the last one too) or ``max_pages``.
    Errors (no such log group yet, ...) are the caller's to judge."""
    kw: dict[str, Any] = {"logGroupName": log_group, "startTime": since_ms}
    for _ in range(max_pages):
        page = logs.filter_log_events(**kw)
        yield page.get("events", [])
        token = page.get("nextToken")
        if not token or token == kw.get("nextToken"):
            return
        kw["nextToken"] = token
