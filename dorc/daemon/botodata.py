"""botocore's data, parsed once in the daemon for every run it forks: each botocore session makes
a loader of its own that parses endpoints, partitions and the service's model anew (most of the
time a boto3 client takes to make). In the daemon, sessions share one loader per data path, filled
here with what a local run's own S3 client reads; a forked run reads it from the daemon's pages.

Only dorc's own process is concerned (its client of the local AWS server): handlers run in their
sandboxes' Pythons, whose botocore is not this one.
"""

from __future__ import annotations


def share() -> str | None:
    """Share the loaders; what went wrong filling them, if anything (runs then fill their own)."""
    import botocore.session

    original = botocore.session.create_loader
    loaders: dict = {}

    def create_loader(search_path_string=None):
        loader = loaders.get(search_path_string)
        if loader is None:
            loader = loaders[search_path_string] = original(search_path_string)
        return loader

    botocore.session.create_loader = create_loader
    try:  # a throw-away session and client (no request made): they fill the shared loader
        session = botocore.session.Session()
        session.create_client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                              aws_access_key_id="warm", aws_secret_access_key="warm")
    except Exception as exc:  # noqa: BLE001 - the runs fill it themselves, as cold
        return f"botocore's data not parsed ahead: {type(exc).__name__}: {exc}"
    return None
