"""Derive model-ready features per state: population share, rank, region and region share.

National totals cover the 50 states and DC (the apportionment universe); Puerto Rico and other
territories are kept in the output, flagged, without a share or rank.
"""

import os

from regions import REGION_OF
from storage import read_clean, write_features

CLEAN_KEY = "census/processed/2020/clean.json"
FEATURES_KEY = "census/processed/2020/features.json"


def features(records: list[dict]) -> dict:
    states = [r for r in records if r["state_fips"] in REGION_OF]
    others = [r for r in records if r["state_fips"] not in REGION_OF]
    total = sum(r["population"] for r in states)
    regions: dict[str, dict] = {}
    for r in states:
        region, _ = REGION_OF[r["state_fips"]]
        agg = regions.setdefault(region, {"population": 0, "states": 0})
        agg["population"] += r["population"]
        agg["states"] += 1
    for agg in regions.values():
        agg["share"] = round(agg["population"] / total, 6)
    ranked = sorted(states, key=lambda r: (-r["population"], r["state_fips"]))
    rows = []
    for rank, r in enumerate(ranked, start=1):
        region, division = REGION_OF[r["state_fips"]]
        rows.append({
            **r,
            "region": region,
            "division": division,
            "rank": rank,
            "share": round(r["population"] / total, 6),
            "region_share": round(r["population"] / regions[region]["population"], 6),
        })
    rows += [{**r, "region": None, "division": None, "rank": None, "share": None, "region_share": None,
              "territory": True} for r in others]
    return {"total_population": total, "states": len(states), "regions": regions, "rows": rows}


def handler(event, context):
    previous = event.get("body") if isinstance(event, dict) and isinstance(event.get("body"), dict) else {}
    bucket = previous.get("bucket") or os.environ["HOLDING_BUCKET"]
    result = features(read_clean(bucket, previous.get("key") or CLEAN_KEY))
    write_features(bucket, FEATURES_KEY, result)
    top, bottom = result["rows"][0], result["rows"][result["states"] - 1]
    print(f"features for {result['states']} states written to s3://{bucket}/{FEATURES_KEY}")
    return {
        "statusCode": 200,
        "body": {
            "bucket": bucket,
            "key": FEATURES_KEY,
            "states": result["states"],
            "total_population": result["total_population"],
            "largest": {"name": top["name"], "population": top["population"], "share": top["share"]},
            "smallest": {"name": bottom["name"], "population": bottom["population"], "share": bottom["share"]},
            "regions": result["regions"],
        },
    }
