"""Validate and clean the raw Census API rows: typed, de-duplicated, sorted by FIPS code."""

import logging
import os

from storage import read_raw, write_json

RAW_KEY = "census/raw/2020/states.json"
CLEAN_KEY = "census/processed/2020/clean.json"

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def clean(rows: list) -> tuple[list[dict], list[dict]]:
    header, data = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    kept: dict[str, dict] = {}
    rejected = []
    for row in data:
        fips = str(row[col["state"]]).strip().zfill(2)
        name = " ".join(str(row[col["NAME"]]).split())
        try:
            population = int(str(row[col["P1_001N"]]).replace(",", ""))
        except ValueError:
            rejected.append({"state_fips": fips, "reason": f"population {row[col['P1_001N']]!r} is not a number"})
            continue
        if population <= 0:
            rejected.append({"state_fips": fips, "reason": f"population {population} is not positive"})
            continue
        kept[fips] = {"state_fips": fips, "name": name, "population": population}
    return [kept[k] for k in sorted(kept)], rejected


def handler(event, context):
    previous = event.get("body") if isinstance(event, dict) and isinstance(event.get("body"), dict) else {}
    bucket = previous.get("bucket") or os.environ["HOLDING_BUCKET"]
    records, rejected = clean(read_raw(bucket, previous.get("key") or RAW_KEY))
    for r in rejected:
        log.warning("rejected state %s: %s", r["state_fips"], r["reason"])
    size = write_json(bucket, CLEAN_KEY, records)
    log.info("cleaned %d records (%d rejected), %d bytes", len(records), len(rejected), size)
    return {"statusCode": 200, "body": {"bucket": bucket, "key": CLEAN_KEY, "records": len(records), "rejected": rejected}}
