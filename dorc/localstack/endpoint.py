"""Where LocalStack is and whether it answers: the endpoint every LocalStack command uses."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Callable

from ..errors import LocalStackError

DEFAULT_PORT = 4566
DEFAULT_ENDPOINT = "http://localhost:4566"
HEALTH_PATH = "/_localstack/health"
START_TIMEOUT = 120.0

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------------------------
# where it is, and whether it answers
# --------------------------------------------------------------------------------------------

def endpoint_url(explicit: str | None = None) -> str:
    """The LocalStack URL: ``explicit`` (``--endpoint``), else localstack-client's rules:
    ``$AWS_ENDPOINT_URL``, else ``$LOCALSTACK_HOST`` (``host[:port]``, port 4566 by default,
    https with ``USE_SSL=1``), else ``http://localhost:4566``. The library is imported here, on
    first use: local runs never import it."""
    if explicit:
        return explicit.rstrip("/")
    from localstack_client.config import get_service_endpoint

    try:
        url = get_service_endpoint("edge")  # one edge endpoint serves every service
    except RuntimeError as exc:  # LOCALSTACK_HOST that is not host[:port]
        raise LocalStackError(f"LOCALSTACK_HOST={os.environ.get('LOCALSTACK_HOST', '')!r}: {exc}",
                              hint="set LOCALSTACK_HOST to host[:port] (USE_SSL=1 for https), or give the "
                                   "whole URL as AWS_ENDPOINT_URL or --endpoint") from None
    return (url or DEFAULT_ENDPOINT).rstrip("/")


def session(explicit: str | None = None, region: str = "us-east-1"):
    """A boto3-compatible session for LocalStack (``localstack_client.session.Session``, test
    credentials) whose clients all reach ``endpoint_url(explicit)`` in ``region``."""
    from localstack_client.session import Session

    endpoint = endpoint_url(explicit)

    class EndpointSession(Session):
        """The library's session, pinned to the endpoint dorc resolved (its own constructor
        would let ``$AWS_ENDPOINT_URL`` win over an explicit ``--endpoint``)."""

        def __init__(self):
            super().__init__(aws_access_key_id="test", aws_secret_access_key="test", region_name=region)
            self.endpoint_url = endpoint
            self._service_endpoint_mapping = dict.fromkeys(self._service_endpoint_mapping, endpoint)

    return EndpointSession()


def health(endpoint: str, timeout: float = 2.0) -> dict | None:
    """LocalStack's health document (services and their states, version), or None if it does not answer."""
    try:
        with _NO_PROXY.open(endpoint.rstrip("/") + HEALTH_PATH, timeout=timeout) as resp:
            if resp.status != 200:
                return None
            doc = json.loads(resp.read() or b"{}")
            return doc if isinstance(doc, dict) else None
    except (OSError, ValueError, urllib.error.URLError):
        return None


def is_ready(endpoint: str, timeout: float = 2.0) -> bool:
    """True when LocalStack answers its health check at ``endpoint``."""
    return health(endpoint, timeout) is not None


def wait_ready(endpoint: str, timeout: float = START_TIMEOUT, *,
               alive: Callable[[], str | None] | None = None) -> float:
    """Wait until ``endpoint`` answers; returns the seconds waited. ``alive()`` returns why the
    service can no longer come up (it exited), or None; either that or the timeout raises."""
    start = time.monotonic()
    while True:
        if is_ready(endpoint, timeout=1.0):
            return time.monotonic() - start
        if alive is not None:
            why = alive()
            if why:
                raise LocalStackError(f"LocalStack stopped before it was ready at {endpoint}: {why}")
        if time.monotonic() - start >= timeout:
            raise LocalStackError(f"LocalStack did not answer at {endpoint} within {timeout:.0f} s")
        time.sleep(0.1)


def require_ready(endpoint: str | None = None) -> str:
    """The endpoint (resolved as ``endpoint_url``), or a DorcError saying how to start LocalStack."""
    ep = endpoint_url(endpoint)
    if not is_ready(ep):
        raise LocalStackError(f"LocalStack is not reachable at {ep}",
                              hint="start it with `dorc localstack start` (or docker compose -f "
                                   "docker-compose.localstack.yml up -d), or pass --endpoint URL")
    return ep
