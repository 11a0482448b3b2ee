"""Give each function's role what the plan grants, in the local AWS's IAM, and the role
session credentials a sandbox gets (as Lambda assumes the execution role for each function).

Runs inside the local AWS server (one request per run, ``POST /_dorc/roles``): the roles are
moto's, so ``iam get-role-policy`` and ``sts get-caller-identity`` show them as AWS would.
"""

from __future__ import annotations

import json
import threading
from typing import Any

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
INLINE = "dorc-grants"
SESSION_SECONDS = 43_200  # what LocalStack and Lambda give an execution environment

_lock = threading.Lock()
_sessions: dict[tuple[str, str, str], Any] = {}  # (account, role, session) -> moto's AssumedRole


def ensure(roles: list[dict[str, Any]], *, account: str, region: str, partition: str = "aws") -> dict[str, Any]:
    """``roles``: ``{"name", "policy", "managed", "session"}`` each. Returns
    ``{"credentials": {name: {...}}, "unknown_managed": {name: [arn, ...]}}``."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    iam = iam_backends[account][partition]
    sts = sts_backends[account][partition]
    out: dict[str, Any] = {"credentials": {}, "unknown_managed": {}}
    with _lock:
        known = {p.arn for p in iam.managed_policies.values()}  # AWS's ~1,000 and the account's own
        for r in roles:
            name = r["name"]
            try:
                role = iam.get_role(name)
            except Exception:  # noqa: BLE001 — moto's NotFound
                role = iam.create_role(name, TRUST, "/", None, "dorc: a function's execution role", [], None)
            document = json.dumps(r["policy"])
            if role.policies.get(INLINE) != document:
                iam.put_role_policy(name, INLINE, document)
            wanted = [a for a in r.get("managed") or [] if a in known]
            unknown = [a for a in r.get("managed") or [] if a not in known]
            for arn in list(role.managed_policies):
                if arn not in wanted:
                    iam.detach_role_policy(arn, name)
            for arn in wanted:
                if arn not in role.managed_policies:
                    iam.attach_role_policy(arn, name)
            if unknown:
                out["unknown_managed"][name] = unknown
            key = (account, name, r["session"])
            session = _sessions.get(key)
            if session is None or session not in sts.assumed_roles:
                session = sts.assume_role(region, r["session"], role.arn, None, SESSION_SECONDS, None)
                _sessions[key] = session
            out["credentials"][name] = {"AccessKeyId": session.access_key_id,
                                        "SecretAccessKey": session.secret_access_key,
                                        "SessionToken": session.session_token}
    return out
