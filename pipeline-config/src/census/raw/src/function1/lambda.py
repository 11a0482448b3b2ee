"""Pull the 2020 state populations from the Census API and keep the response as it came.

The raw layer stores exactly what the API returned (plus where it came from); cleaning is the
processed layer's job, so a bad clean can always be redone from the raw copy.
"""

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import boto3

RAW_KEY = "census/raw/2020/states.json"
VARIABLES = ("NAME", "P1_001N")  # state name, total population


def fetch(url: str, timeout: float) -> bytes:
    query = urllib.parse.urlencode({"get": ",".join(VARIABLES), "for": "state:*"}, safe=":*,")
    try:
        with urllib.request.urlopen(f"{url}?{query}", timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"Census API answered {exc.code} for {url}: {exc.read()[:200]!r}") from None


def handler(event, context):
    url = os.environ["CENSUS_API_URL"]
    bucket = os.environ["HOLDING_BUCKET"]
    key = event.get("raw_key", RAW_KEY) if isinstance(event, dict) else RAW_KEY
    body = fetch(url, timeout=max(1.0, context.get_remaining_time_in_millis() / 1000 - 5))
    rows = json.loads(body)
    if not rows or rows[0][: len(VARIABLES)] != list(VARIABLES):
        raise ValueError(f"unexpected Census API header {rows[0] if rows else None}; expected {VARIABLES}")
    records = len(rows) - 1
    boto3.client("s3").put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="application/json",
        Metadata={"source-url": url, "request-id": context.aws_request_id},
    )
    print(f"stored {records} state records ({len(body)} bytes) in s3://{bucket}/{key}")
    return {
        "statusCode": 200,
        "body": {"bucket": bucket, "key": key, "records": records, "sha256": hashlib.sha256(body).hexdigest()},
    }
