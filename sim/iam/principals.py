"""Who signed a request: a role session assumed through STS (what a Lambda function's
credentials are), found in the moto-backed IAM and STS state that both dorc's local AWS server
and LocalStack keep, with the policies its role holds at that moment.

Any other key (dorc's own, a fixture's, a test's ``testing`` credentials) is not a principal
here: such calls stay unchecked, as the administrator's calls of a test set-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Principal:
    arn: str  # arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
    role_name: str
    account: str
    policies: list[Any]  # policy documents: the role's inline ones, then its managed ones


def _scope(headers: Any, query: dict[str, Any] | None) -> str:
    """``AKID/DATE/REGION/SERVICE/aws4_request`` of a SigV4 request (header, or a presigned
    URL's query)."""
    auth = headers.get("Authorization") or headers.get("authorization") or ""
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
    credential = (query or {}).get("X-Amz-Credential")
    if isinstance(credential, list):
        credential = credential[0] if credential else None
    return str(credential or "")


def access_key_of(headers: Any, query: dict[str, Any] | None = None) -> str | None:
    key = _scope(headers, query).split("/", 1)[0]
    if not key:  # an S3 URL presigned the older way (SigV2)
        key = (query or {}).get("AWSAccessKeyId") or ""
        key = key[0] if isinstance(key, list) and key else key
    return str(key) or None


def signing_service(headers: Any, query: dict[str, Any] | None = None) -> str | None:
    parts = _scope(headers, query).split("/")
    return parts[3] if len(parts) > 3 else None


def _document(policy: Any) -> Any:
    versions = getattr(policy, "versions", None)
    if versions:
        return next((v.document for v in versions if v.is_default), versions[-1].document)
    return getattr(policy, "document", None) or policy


def find(account: str, access_key_id: str | None, partition: str = "aws") -> Principal | None:
    """The role session behind ``access_key_id``, or None when it is not one."""
    if not access_key_id:
        return None
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    try:
        sts = sts_backends[account][partition]
    except KeyError:
        return None
    session = next((r for r in reversed(sts.assumed_roles) if r.access_key_id == access_key_id), None)
    if session is None:
        return None
    role_name = session.role_arn.split("/")[-1]
    arn = f"arn:{partition}:sts::{account}:assumed-role/{role_name}/{session.session_name}"
    iam = iam_backends[account][partition]
    try:
        role = iam.get_role(role_name)
    except Exception:  # noqa: BLE001 — moto's NotFound: the role is gone, so it may do nothing
        return Principal(arn, role_name, account, [])
    docs: list[Any] = [json.loads(d) if isinstance(d, str) else d for d in role.policies.values()]
    docs += [_document(p) for p in role.managed_policies.values()]
    return Principal(arn, role_name, account, docs)


def secret_arn(account: str, region: str, name: str, partition: str = "aws") -> str | None:
    """A secret's full ARN (with the suffix Secrets Manager adds) when it exists."""
    try:
        from moto.secretsmanager.models import secretsmanager_backends

        backend = secretsmanager_backends[account][region]
        secret = backend.secrets.get(name)
        return getattr(secret, "arn", None)
    except Exception:  # noqa: BLE001 — no such backend or secret: the caller names it itself
        return None
