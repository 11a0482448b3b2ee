"""IAM enforcement in LocalStack (host mode, loaded by dorc's executor plugin): a gateway
handler that checks the calls signed with a role session, after LocalStack parsed the request.

LocalStack's own enforcement is a paid feature; without it every call passes, and a run that
passes there fails in AWS with AccessDenied. The decision is ``asks`` + ``policy``, the same as
the local AWS server's; only who the caller is comes from LocalStack's own STS and IAM stores.
``DORC_ENFORCE_IAM=0`` in LocalStack's environment turns it off.

Imported only inside LocalStack's process (it imports LocalStack).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any
from urllib.parse import unquote

from . import asks, policy, principals

log = logging.getLogger("dorc_sim.iam")
_JSON_PROTOCOLS = {"json", "rest-json"}


def _document(text: Any) -> Any:
    if isinstance(text, str) and text.lstrip().startswith("%7B"):
        text = unquote(text)  # stored as IAM returns it, URL-encoded
    return json.loads(text) if isinstance(text, str) else text


def _aws_managed(arn: str) -> Any:
    """An AWS managed policy's document, from moto's copy of them (LocalStack ships moto)."""
    entry = _aws_managed_policies().get(arn.rsplit("/", 1)[-1])
    return entry.get("Document") if entry else None


@functools.lru_cache(maxsize=1)
def _aws_managed_policies() -> dict[str, Any]:
    """moto's copy of AWS's managed policies, parsed once (a few MB of JSON: not per request)."""
    try:
        from moto.iam.aws_managed_policies import aws_managed_policies_data
    except ImportError:
        return {}
    return json.loads(aws_managed_policies_data)


def find(account: str, region: str, access_key_id: str | None) -> principals.Principal | None:
    """The role session behind ``access_key_id`` in LocalStack's STS, with its role's policies."""
    if not access_key_id:
        return None
    from localstack.services.iam.models import iam_stores
    from localstack.services.sts.models import sts_stores

    credentials = sts_stores[account]["us-east-1"].credentials.get(access_key_id)
    if credentials is None or ":assumed-role/" not in credentials.arn:
        return None
    role_name = credentials.arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
    store = iam_stores[account][region]
    entity = store.ROLES.get(role_name)
    if entity is None:
        return principals.Principal(credentials.arn, role_name, account, [])
    docs = [_document(d) for d in entity.inline_policies.values()]
    for arn in entity.attached_policy_arns:
        managed = store.MANAGED_POLICIES.get(arn)
        if managed is not None:
            version = managed.policy.get("DefaultVersionId")
            doc = (managed.versions.get(version) or {}).get("Document") if version else None
            if doc:
                docs.append(_document(doc))
        elif ":aws:policy/" in arn and (doc := _aws_managed(arn)):
            docs.append(doc)
    return principals.Principal(credentials.arn, role_name, account, docs)


def check(chain: Any, context: Any, response: Any) -> None:
    """The gateway handler (after ``parse_service_request``)."""
    if context.service is None or context.operation is None:
        return
    request = context.request
    principal = find(context.account_id, context.region, principals.access_key_of(request.headers, dict(request.args)))
    if principal is None:
        return
    service = context.service.signing_name or context.service.service_name
    operation = context.operation.name
    if service == "sts" and operation == "GetCallerIdentity":
        return
    params = dict(context.service_request or {})
    wanted = asks.asks(service, operation, params, region=context.region, account=context.account_id,
                       resolve=lambda kind, name: principals.secret_arn(context.account_id, context.region, name)
                       if kind == "secret" else None)
    refused = policy.decide(principal.policies, wanted,
                            policy.base_context(region=context.region, principal_arn=principal.arn,
                                                account=context.account_id))
    if refused is None:
        return
    from localstack.aws.api import CommonServiceException

    message = refused.message(principal.arn)
    log.info("AccessDenied: %s", message)
    if context.service.protocol in _JSON_PROTOCOLS and service != "sqs":
        raise CommonServiceException("AccessDeniedException", message, status_code=400, sender_fault=True)
    raise CommonServiceException("AccessDenied", message, status_code=403, sender_fault=True)


def install() -> bool:
    """Add the check to LocalStack's gateway, once; False when turned off."""
    if os.environ.get("DORC_ENFORCE_IAM", "1").strip().lower() in ("0", "false", "no", "off"):
        log.warning("dorc: IAM enforcement is off (DORC_ENFORCE_IAM=%s)", os.environ["DORC_ENFORCE_IAM"])
        return False
    from localstack.aws import handlers

    chain = handlers.serve_custom_service_request_handlers
    if check not in getattr(chain, "handlers", []):
        chain.append(check)
    return True
