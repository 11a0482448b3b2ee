"""An offline stand-in for the US Census Bureau's data API (2020 Decennial, P.L. 94-171).

Serves ``GET /data/2020/dec/pl?get=NAME,P1_001N&for=state:*`` in the API's own response
format (a JSON array of string arrays, header row first) from real 2020 figures bundled in
``sim/data/census_2020_states.csv``, so the example pipeline runs with no network.
"""

from __future__ import annotations

import csv
import json
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

DATA_FILE = Path(__file__).parent / "data" / "census_2020_states.csv"
DATASET_PATH = "/data/2020/dec/pl"
VARIABLES = {"NAME": "name", "P1_001N": "population"}


@lru_cache(maxsize=1)
def states() -> list[dict[str, str]]:
    with DATA_FILE.open(newline="") as fh:
        return list(csv.DictReader(fh))


def query(get: str, for_: str) -> tuple[int, object]:
    """(HTTP status, body) as the real API answers the same query string."""
    names = [v for v in get.split(",") if v]
    unknown = [v for v in names if v not in VARIABLES]
    if not names or unknown:
        return 400, f"error: unknown variable '{(unknown or [''])[0]}'"
    geo, _, which = for_.partition(":")
    if geo != "state":
        return 400, "error: unknown/unsupported geography hierarchy"
    wanted = None if which in ("*", "") else set(which.split(","))
    rows: list[list[str]] = [[*names, "state"]]
    for s in states():
        if wanted is None or s["state"] in wanted:
            rows.append([s[VARIABLES[v]] for v in names] + [s["state"]])
    if len(rows) == 1:
        return 204, ""
    return 200, rows


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlparse(self.path)
        if url.path.rstrip("/") != DATASET_PATH:
            self._send(404, f"error: unknown dataset {url.path}")
            return
        qs = parse_qs(url.query)
        status, body = query(qs.get("get", [""])[0], qs.get("for", [""])[0])
        self._send(status, body)

    def _send(self, status: int, body: object) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args) -> None:  # quiet: the handler's own logs matter
        pass


class CensusAPIServer:
    """``start()`` binds 127.0.0.1 on a free port in a daemon thread; ``stop()`` closes it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "CensusAPIServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="census-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "CensusAPIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    """``python -m sim.census_api [PORT]``: serve in the foreground (for LocalStack runs)."""
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8089
    server = CensusAPIServer(port=port)
    print(f"census API fixture on {server.url}{DATASET_PATH}", flush=True)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
