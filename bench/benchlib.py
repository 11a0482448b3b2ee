"""What both benchmark scripts share: where the report goes, summaries, the machine's facts, and
timing whole processes (the ``dorc`` command as a user runs it)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

_out = [sys.stdout]  # the human-readable report; stderr when --json owns stdout


def set_output(stream) -> None:
    _out[0] = stream


def say(text: str = "") -> None:
    print(text, file=_out[0], flush=True)


class BenchError(Exception):
    pass


def summarize(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples), "samples": samples}


def dorc_command() -> list[str]:
    """The real console script next to this interpreter (not a pyenv shim), else ``-m dorc``."""
    exe = Path(sys.executable).parent / "dorc"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "dorc"]


def process_env() -> dict[str, str]:
    """The environment of every timed process: fake AWS credentials, no CONFIG_REPO_PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG_REPO_PATH", "DORC_DAEMON_DIR")}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "DORC_DAEMON": "off"})  # cold: a `dorc daemon` of the user's never serves the timed runs
    return env


def time_process(cmd: list[str], runs: int, warmup: int = 1, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> dict[str, Any]:
    """Process start to exit, ``runs`` times after ``warmup`` untimed runs; a failure raises BenchError."""
    samples = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout.decode()[-2000:]}"
                             f"\n--- stderr\n{proc.stderr.decode()[-2000:]}")
        if i >= warmup:
            samples.append(dt)
    return summarize(samples)


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine(distributions: tuple[str, ...]) -> dict[str, Any]:
    """CPU, usable cores, Python, platform, load and the versions of ``distributions``."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {}
    for dist in distributions:
        try:
            versions[dist] = version(dist)
        except Exception:
            versions[dist] = None
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu": cpu or platform.processor(),
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "executable": sys.executable, "platform": platform.platform(), "versions": versions,
            "loadavg_start": loadavg(), "dont_write_bytecode": bool(sys.dont_write_bytecode)}


def finish(results: dict[str, Any], markdown_text: str, as_json: bool) -> int:
    """The end of a run: the markdown block for the docs, then (``--json``) the results on stdout."""
    import json

    say("\n== markdown (paste into docs) ==\n")
    say(markdown_text)
    if as_json:
        print(json.dumps(results, indent=1, default=str))
    return 0
