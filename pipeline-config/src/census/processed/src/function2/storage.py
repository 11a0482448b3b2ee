"""Reading the cleaned records and writing features to the holding store."""

import json

import boto3


def read_clean(bucket: str, key: str) -> list[dict]:
    obj = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    return json.loads(obj["Body"].read())


def write_features(bucket: str, key: str, features: dict) -> None:
    body = json.dumps(features, indent=1, sort_keys=True).encode()
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
