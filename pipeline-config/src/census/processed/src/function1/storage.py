"""Reading the raw layer's output from the holding store."""

import json

import boto3


class RawDataMissing(Exception):
    """The raw layer has not stored anything yet."""


def read_raw(bucket: str, key: str) -> list:
    s3 = boto3.client("s3")
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        raise RawDataMissing(
            f"no raw census data at s3://{bucket}/{key}: run the raw layer first (dorc run census raw)"
        ) from None
    return json.loads(obj["Body"].read())


def write_json(bucket: str, key: str, value) -> int:
    data = json.dumps(value, separators=(",", ":")).encode()
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")
    return len(data)
