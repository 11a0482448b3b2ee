"""What a function's role may do: the defaults every function gets, plus what the definition
grants (pipeline, function) and what an S3 trigger implies, each statement marked with its source.

One list per function, decided here and carried by the plan: the Pulumi stacks and the LocalStack
deployment put exactly ``policy_document(grants)`` on the function's role, and local runs can give
a sandbox credentials limited to it. The policy is computed, never hand-written per target.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict

from .models import Permission

POLICY_VERSION = "2012-10-17"
# IAM quotas: inline policies of one role total 10,240 characters (whitespace not counted);
# at most 20 managed policies per role (10 unless the account's quota was raised).
ROLE_POLICY_MAX_CHARS = 10_240
MANAGED_POLICIES_MAX = 20

#: Where a statement came from, as ``dorc plan`` shows it.
DEFAULT, PIPELINE, FUNCTION, TRIGGER = "default", "pipeline", "function", "trigger"


class Grant(BaseModel):
    """One statement of a function's role policy and where it came from (``source``:
    ``default``, ``pipeline``, ``function`` or ``trigger <name>``)."""

    model_config = ConfigDict(frozen=True)

    source: str
    actions: list[str]
    resources: list[str]
    effect: str = "Allow"
    conditions: dict[str, Any] | None = None

    def statement(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"Effect": self.effect, "Action": list(self.actions), "Resource": list(self.resources)}
        if self.conditions:
            doc["Condition"] = self.conditions
        return doc

    def line(self) -> str:
        """``Allow s3:GetObject on arn:aws:s3:::b/* [if StringLike s3:prefix=...] (default)``."""
        cond = ""
        if self.conditions:
            parts = [f"{op} {k}={v if isinstance(v, str) else ','.join(map(str, v)) if isinstance(v, list) else v}"
                     for op, body in self.conditions.items() for k, v in body.items()]
            cond = f" if {'; '.join(parts)}"
        return f"{self.effect} {', '.join(self.actions)} on {', '.join(self.resources)}{cond} ({self.source})"


def default_grants(*, region: str, account_id: str, holding_bucket: str, log_group: str) -> list[Grant]:
    """What every function may do without asking: write its logs, read and write the holding store
    (how layers hand data over). ``log_group`` may be a pattern (``/aws/lambda/*-prod``)."""
    return [
        Grant(source=DEFAULT, actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
              resources=[f"arn:aws:logs:{region}:{account_id}:log-group:{log_group}:*"]),
        Grant(source=DEFAULT, actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
              resources=[f"arn:aws:s3:::{holding_bucket}/*"]),
        Grant(source=DEFAULT, actions=["s3:ListBucket"], resources=[f"arn:aws:s3:::{holding_bucket}"]),
    ]


def trigger_grants(name: str, bucket: str, prefix: str) -> list[Grant]:
    """An S3 trigger on a bucket other than the holding store: read what started the run (the
    objects under ``prefix``) and list that prefix."""
    source = f"{TRIGGER} {name}"
    listing = {"StringLike": {"s3:prefix": [f"{prefix}*"]}} if prefix else None
    return [
        Grant(source=source, actions=["s3:GetObject"], resources=[f"arn:aws:s3:::{bucket}/{prefix}*"]),
        Grant(source=source, actions=["s3:ListBucket"], resources=[f"arn:aws:s3:::{bucket}"], conditions=listing),
    ]


def declared_grants(permissions: Iterable[Permission], values: dict[str, str], source: str) -> list[Grant]:
    """The definition's ``Permission``s with their templates filled in (``values``:
    ``models.PERMISSION_KEYS``)."""
    out = []
    for p in permissions:
        doc = p.statement(values)
        out.append(Grant(source=source, actions=doc["Action"], resources=doc["Resource"], effect=doc["Effect"],
                         conditions=doc.get("Condition")))
    return out


def policy_document(grants: Iterable[Grant]) -> dict[str, Any]:
    """The IAM policy document of ``grants``, each with a ``Sid`` naming its source (IAM allows
    only letters and digits there) so a reader of the deployed policy sees where it came from."""
    statements = []
    for i, g in enumerate(grants, 1):
        sid = "".join(w.capitalize() for w in g.source.split() if w.isalnum()) or "Grant"
        statements.append({"Sid": f"{sid}{i}", **g.statement()})
    return {"Version": POLICY_VERSION, "Statement": statements}


def policy_size(document: dict[str, Any]) -> int:
    """How IAM counts a policy against its quota: the JSON without whitespace."""
    return len(json.dumps(document, separators=(",", ":")))


def fit_name(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` characters when too long, ending in a digest of the whole so
    shortened names stay unique and the same on every build."""
    if len(name) <= limit:
        return name
    tag = "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[:limit - len(tag)] + tag
