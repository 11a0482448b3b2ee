"""Step Functions' ``lambda:invoke`` results carry the Lambda call's request id, as in AWS.

In AWS the result of ``arn:aws:states:::lambda:invoke`` (the TaskSucceeded output in an
execution's history) holds, besides ``Payload``, the call's ``SdkHttpMetadata`` (its headers,
``x-amzn-RequestId`` among them) and ``SdkResponseMetadata.RequestId``. dorc reads the step's request
id there to find the step's own START..REPORT lines in CloudWatch Logs, which is the only proof of
which call was whose when two executions of one state machine run at the same time. LocalStack
2026.3 keeps only StatusCode, ExecutedVersion and Payload of the call's response: ``install()`` puts
the two metadata keys back. The Lambda call's own request id is the one its response names
(LocalStack's ``invoke`` runs the call under the request's id). dorc's state machines keep only
``$.Payload`` (OutputPath), so what the next state receives does not change.

Installed when this executor is loaded: ``dorc localstack start`` loads services eagerly, so the
Lambda service (and this executor) is loaded before any execution runs.
"""

from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)

KEYS = ("SdkHttpMetadata", "SdkResponseMetadata")
_installed = False


def aws_metadata(response: dict) -> dict:
    """AWS's two keys, made from the boto response's ``ResponseMetadata``; none when it has no id."""
    meta = response.get("ResponseMetadata") or {}
    request_id = meta.get("RequestId")
    if not request_id:
        return {}
    headers = {k: v for k, v in (meta.get("HTTPHeaders") or {}).items() if k.lower() != "x-amzn-requestid"}
    headers["x-amzn-RequestId"] = request_id
    return {
        "SdkHttpMetadata": {"AllHttpHeaders": {k: [v] for k, v in headers.items()}, "HttpHeaders": headers,
                            "HttpStatusCode": meta.get("HTTPStatusCode", 200)},
        "SdkResponseMetadata": {"RequestId": request_id},
    }


def install() -> bool:
    """Wraps LocalStack's Step Functions Lambda integration (once). False when LocalStack's code is
    not the shape this expects: then results stay as they were and dorc matches logs without ids."""
    global _installed
    if _installed:
        return True
    try:
        from localstack.services.stepfunctions.asl.component.state.state_execution.state_task import (
            lambda_eval_utils as leu,
        )

        invoke, select = leu._invoke_lambda_function, leu.select_from_typed_dict
    except (ImportError, AttributeError) as exc:
        LOG.warning("dorc executor: Step Functions results will not name Lambda request ids: %s", exc)
        return False

    def _invoke_lambda_function(*args, **kwargs):
        response = invoke(*args, **kwargs)
        if isinstance(response, dict):
            response.update(aws_metadata(response))
        return response

    def select_from_typed_dict(typed_dict, obj, *args, **kwargs):
        # only lambda_eval_utils' own name is replaced: it selects the integration's result
        selected = select(typed_dict, obj, *args, **kwargs)
        if isinstance(obj, dict) and isinstance(selected, dict):
            selected.update({k: obj[k] for k in KEYS if k in obj})
        return selected

    leu._invoke_lambda_function = _invoke_lambda_function
    leu.select_from_typed_dict = select_from_typed_dict
    _installed = True
    return True
