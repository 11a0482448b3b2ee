"""What a request needs from IAM: its action(s) and resource ARN(s), from the service, the
operation and its parameters, the way IAM's service authorization reference lists them.

Both front ends feed it: the local AWS server (moto's parsed request) and LocalStack's gateway
(its parsed ``service_request``). S3 operations are mapped to their IAM actions (``ListObjectsV2``
is ``s3:ListBucket``); elsewhere the action is the operation's name. A resource dorc cannot name
is ``None`` (any ``Resource`` then matches, see ``policy``).
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import unquote, urlparse

from .policy import Ask

# S3 API operations whose IAM action differs from their name (moto's own names, which are
# mostly the IAM ones already, pass through).
S3_ACTIONS = {
    "ListObjects": "ListBucket", "ListObjectsV2": "ListBucket", "HeadBucket": "ListBucket",
    "HeadObject": "GetObject", "GetObjectAttributes": "GetObject", "SelectObjectContent": "GetObject",
    "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject", "CompleteMultipartUpload": "PutObject",
    "ListParts": "ListMultipartUploadParts", "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListObjectVersions": "ListBucketVersions", "ListBuckets": "ListAllMyBuckets",
    "GetBucketCors": "GetBucketCORS", "PutBucketCors": "PutBucketCORS", "DeleteBucketCors": "PutBucketCORS",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration", "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "DeleteBucketTagging": "PutBucketTagging", "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketEncryption": "GetEncryptionConfiguration", "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetBucketAccelerateConfiguration": "GetAccelerateConfiguration",
    "PutBucketAccelerateConfiguration": "PutAccelerateConfiguration",
    "DeleteObjects": "DeleteObject",
}
# Operations IAM authorizes under another action: batches as their single form, Lambda's invokes.
ACTIONS = {
    ("sqs", "SendMessageBatch"): "SendMessage", ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility", ("sns", "PublishBatch"): "Publish",
    ("lambda", "Invoke"): "InvokeFunction", ("lambda", "InvokeAsync"): "InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "InvokeFunction",
}
_TRANSACT_ITEMS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                   "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}

Resolver = Callable[[str, str], "str | None"]  # (kind, name) -> ARN, e.g. ("secret", "db-password")


def asks(service: str, operation: str, params: dict[str, Any], *, region: str, account: str,
         resolve: Resolver | None = None) -> list[Ask]:
    """The asks of one request. ``service`` is the signing name (``s3``, ``dynamodb``, ...)."""
    arn = f"arn:aws:{service}:{region}:{account}"
    if service == "s3":
        return _s3(operation, params)
    action = f"{service}:{ACTIONS.get((service, operation), operation)}"
    one = lambda resource: [Ask(action, resource)]  # noqa: E731
    p = params
    if service == "dynamodb":
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [Ask(action, f"{arn}:table/{t}") for t in (p.get("RequestItems") or {})] or one(None)
        if operation in ("TransactWriteItems", "TransactGetItems"):
            out = []
            for item in p.get("TransactItems") or []:
                for kind, body in (item or {}).items():
                    if isinstance(body, dict) and kind in _TRANSACT_ITEMS:
                        out.append(Ask(f"dynamodb:{_TRANSACT_ITEMS[kind]}", f"{arn}:table/{body.get('TableName')}"))
            return out or one(None)
        table = p.get("TableName")
        if operation == "ListTables":
            return one("*")
        return one(table if str(table).startswith("arn:") else f"{arn}:table/{table}" if table else None)
    if service == "sqs":
        if "QueueUrl" in p:
            return one(f"{arn}:{urlparse(str(p['QueueUrl'])).path.rstrip('/').rsplit('/', 1)[-1]}")
        if "QueueName" in p:
            return one(f"{arn}:{p['QueueName']}")
        return one("*" if operation == "ListQueues" else None)
    if service == "sns":
        topic = p.get("TopicArn") or p.get("TargetArn")
        if topic:
            return one(str(topic))
        if operation == "CreateTopic" and "Name" in p:
            return one(f"{arn}:{p['Name']}")
        return one("*" if operation == "ListTopics" else None)
    if service == "ssm":
        names = p.get("Names") or ([p["Name"]] if "Name" in p else [p["Path"]] if "Path" in p else [])
        if names:
            return [Ask(action, f"{arn}:parameter/{str(n).lstrip('/')}") for n in names]
        return one("*" if operation == "DescribeParameters" else None)
    if service == "secretsmanager":
        secret = p.get("SecretId") or p.get("Name")
        if not secret:
            return one("*" if operation == "ListSecrets" else None)
        secret = str(secret)
        if not secret.startswith("arn:"):
            secret = (resolve("secret", secret) if resolve else None) or f"{arn}:secret:{secret}"
        return one(secret)
    if service == "events":
        if operation == "PutEvents":
            buses = {str(e.get("EventBusName") or "default") for e in p.get("Entries") or [] if isinstance(e, dict)}
            return [Ask(action, b if b.startswith("arn:") else f"{arn}:event-bus/{b}")
                    for b in sorted(buses or {"default"})]
        if "Name" in p and "Rule" in operation:
            return one(f"{arn}:rule/{p['Name']}")
        if "Rule" in p:
            return one(f"{arn}:rule/{p['Rule']}")
        return one(None)
    if service == "glue":
        catalog = f"{arn}:catalog"
        db = p.get("DatabaseName")
        table = p.get("TableName") or (p.get("Name") if db else None)
        if db and table:
            return [Ask(action, catalog), Ask(action, f"{arn}:database/{db}"), Ask(action, f"{arn}:table/{db}/{table}")]
        if db:
            return [Ask(action, catalog), Ask(action, f"{arn}:database/{db}")]
        if operation in ("GetDatabase", "DeleteDatabase", "UpdateDatabase") and "Name" in p:
            return [Ask(action, catalog), Ask(action, f"{arn}:database/{p['Name']}")]
        if operation == "CreateDatabase":
            name = (p.get("DatabaseInput") or {}).get("Name")
            return [Ask(action, catalog)] + ([Ask(action, f"{arn}:database/{name}")] if name else [])
        return one(catalog if operation in ("GetDatabases",) else None)
    if service == "athena":
        group = p.get("WorkGroup") or ("primary" if operation in ("StartQueryExecution", "ListQueryExecutions")
                                       else p.get("Name"))
        return one(f"{arn}:workgroup/{group}" if group else None)
    if service == "sts":
        return one(p.get("RoleArn") or "*")
    if service == "lambda" and p.get("FunctionName"):
        return one(_function_arn(str(p["FunctionName"]), p.get("Qualifier"), arn))
    if service == "states":
        target = p.get("executionArn") or p.get("stateMachineArn")
        return one(str(target) if target else "*" if operation == "ListStateMachines" else None)
    return one(None)


def _function_arn(name: str, qualifier: Any, arn: str) -> str:
    """A Lambda function as IAM names it, from a name, a partial ARN or a full one (with a
    qualifier when the call has one: a grant on ``function:f`` does not cover ``function:f:1``)."""
    if name.startswith("arn:"):
        full = name
    elif ":function:" in name:  # 123456789012:function:f
        full = f"{arn.rsplit(':', 1)[0]}:{name}"
    else:
        full = f"{arn}:function:{name}"
    if qualifier and full.count(":") == 6:
        full += f":{qualifier}"
    return full


def _s3(operation: str, p: dict[str, Any]) -> list[Ask]:
    bucket, key = p.get("Bucket"), p.get("Key")
    action = "s3:" + S3_ACTIONS.get(operation, operation)
    if operation == "ListAllMyBuckets" or operation == "ListBuckets":
        return [Ask(action, "*")]
    if not bucket:
        return [Ask(action, None)]
    if operation == "DeleteObjects":
        keys = [o.get("Key") for o in ((p.get("Delete") or {}).get("Objects") or []) if isinstance(o, dict)]
        return [Ask(action, f"arn:aws:s3:::{bucket}/{k}") for k in keys] or [Ask(action, f"arn:aws:s3:::{bucket}/*")]
    out = []
    if operation in ("CopyObject", "UploadPartCopy") and p.get("CopySource"):
        source = p["CopySource"]
        if isinstance(source, dict):
            source = f"{source.get('Bucket')}/{source.get('Key')}"
        out.append(Ask("s3:GetObject", "arn:aws:s3:::" + unquote(str(source)).lstrip("/").split("?", 1)[0]))
        action = "s3:PutObject"
    if key:
        out.append(Ask(action, f"arn:aws:s3:::{bucket}/{key}"))
    else:
        context = {k: p[n] for k, n in (("s3:prefix", "Prefix"), ("s3:delimiter", "Delimiter"),
                                        ("s3:max-keys", "MaxKeys")) if p.get(n) is not None}
        out.append(Ask(action, f"arn:aws:s3:::{bucket}", context))
    return out
