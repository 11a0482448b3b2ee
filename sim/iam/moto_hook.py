"""IAM enforcement in the local AWS server: moto's authorization step, taken over.

moto checks IAM only when told to for every request (``INITIAL_NO_AUTH_ACTION_COUNT``), and
then refuses any caller without IAM keys: dorc's own calls and the user's test set-up would fail.
Here the step checks exactly the calls signed with a role session (a function's credentials):
moto still verifies the signature, ``policy`` decides, and the refusal is the service's own
AccessDenied error. Installed once, in the server process only.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlparse

from . import asks, policy, principals

log = logging.getLogger("dorc_sim.iam")


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _params(response: Any) -> dict[str, Any]:
    """The request's parameters as the API names them: moto's parsed ones where it has them,
    else a JSON body, or the query/form values."""
    parsed = getattr(response, "params", None)
    if isinstance(parsed, dict) and parsed:
        return parsed
    if response.headers.get("X-Amz-Target") or response.headers.get("x-amz-target"):
        if isinstance(response.body, dict):
            return response.body
        try:
            body = json.loads(response.body or b"{}")
            return body if isinstance(body, dict) else {}
        except (TypeError, ValueError):
            return {}
    return {k: _first(v) for k, v in (response.querystring or {}).items()}


def _s3_request(response: Any, resource: str) -> tuple[str, dict[str, Any]]:
    """(operation, parameters) of an S3 request from moto's view of it: its IAM-like action name
    and the ARN it computed."""
    operation = str(response.data.get("Action") or _first(response.querystring.get("Action")) or "")
    path = resource.split(":::", 1)[1] if ":::" in resource else ""
    bucket, _, key = path.partition("/")
    query = {k: _first(v) for k, v in (getattr(response, "querystring", None) or {}).items()}
    p: dict[str, Any] = {"Bucket": None if bucket in ("", "*") else bucket, "Key": key or None}
    for name, arg in (("Prefix", "prefix"), ("Delimiter", "delimiter"), ("MaxKeys", "max-keys")):
        if query.get(arg) is not None:
            p[name] = query[arg]
    copy = response.headers.get("x-amz-copy-source") or response.headers.get("X-Amz-Copy-Source")
    if copy and operation == "PutObject":
        operation, p["CopySource"] = ("UploadPartCopy" if "partNumber" in query else "CopyObject"), copy
    if "delete" in query and response.method == "POST":
        operation, p["Delete"] = "DeleteObjects", {"Objects": _delete_keys(response.body)}
    if not bucket and response.method == "GET":
        operation = "ListBuckets"
    return operation, p


def _delete_keys(body: Any) -> list[dict[str, str]]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(body or b"")
    except ET.ParseError:
        return []
    return [{"Key": el.text or ""} for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]


def _refusal(service: str, json_protocol: bool, message: str) -> Exception:
    if service == "s3":
        from moto.s3.exceptions import S3ClientError

        err = S3ClientError("AccessDenied", message)
        return err
    if json_protocol:
        from moto.core.exceptions import JsonRESTError

        err = JsonRESTError("AccessDenied" if service == "sqs" else "AccessDeniedException", message)
        err.code = 400
        return err
    from moto.core.exceptions import AccessDeniedError

    err = AccessDeniedError("", "")
    super(AccessDeniedError, err).__init__("AccessDenied", message)  # AWS's wording, not moto's
    return err


def check(response: Any, iam_request_cls: type, resource: str) -> None:
    """moto's ``_authenticate_and_authorize_action``, for role sessions only."""
    headers = response.headers
    query = dict(getattr(response, "querystring", None) or {})
    if "X-Amz-Credential" not in query:  # a presigned URL: S3's handler may not have parsed it
        query.update(parse_qs(urlparse(getattr(response, "uri", "") or "").query))
    principal = principals.find(response.current_account, principals.access_key_of(headers, query))
    if principal is None:
        return  # not a function's credentials: unchecked, as before
    if headers.get("Authorization"):  # a presigned URL carries its signature in the query instead
        parsed = urlparse(response.uri)
        path = response.raw_path + (f"?{parsed.query}" if parsed.query else "")
        request = iam_request_cls(account_id=response.current_account, method=response.method, path=path,
                                  data=response.data, body=response.raw_body, headers=headers,
                                  action=response._get_action())
        request.check_signature()
    service = "s3" if ":s3:::" in resource else principals.signing_service(headers, query) or ""
    region = getattr(response, "region", None) or "us-east-1"
    if service == "s3":
        operation, params = _s3_request(response, resource)
    else:
        operation, params = response._get_action(), _params(response)
    if service == "sts" and operation == "GetCallerIdentity":
        return  # always allowed, as in AWS
    wanted = asks.asks(service, operation, params, region=region, account=principal.account,
                       resolve=lambda kind, name: principals.secret_arn(principal.account, region, name)
                       if kind == "secret" else None)
    context = policy.base_context(region=region, principal_arn=principal.arn, account=principal.account)
    refused = policy.decide(principal.policies, wanted, context)
    if refused is not None:
        message = refused.message(principal.arn)
        log.info("AccessDenied: %s", message)
        raise _refusal(service, bool(headers.get("X-Amz-Target") or headers.get("x-amz-target")), message)


def install() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin

    def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        check(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize  # type: ignore[method-assign]
