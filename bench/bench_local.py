#!/usr/bin/env python
"""Benchmarks of dorc's in-process (``--local``) target, through dorc's public surface only.

    python bench/bench_local.py                 # default: 7 timed runs after 1 warm-up
    python bench/bench_local.py --runs 5
    python bench/bench_local.py --quick         # fewer runs and invocations (a smoke test)
    python bench/bench_local.py --json > r.json # the tables go to stderr, the JSON to stdout

Three measurements:

1. end to end: ``dorc run census raw --local -q`` as a subprocess, process start to exit, on a
   copy of ``pipeline-config`` in a temporary folder (the user's ``.dorc`` is never touched),
   next to the floors every such process pays: ``python -c pass`` and boto3 + moto creating a
   bucket and putting an object;
2. per hop: a generated layer of 100 chained no-op functions run in-process with
   ``dorc.api.run_pipeline``; the time per hop is read from an observer's timestamps, so moto's
   start and stop and the planning are outside it (the method is printed with the figures);
3. per invocation, side by side in one run: dorc (a hop of ``dorc.api.run_pipeline``, and
   ``dorc.api.invoke_function``: one whole local invocation) in a fresh worker process, the peer
   ``python-lambda-local`` (0.1.13) in another, and the floor (boto3 + moto, in-process and as a
   process); whole processes: a ``python -c`` program calling ``dorc.api.invoke_function`` vs
   python-lambda-local's command line.

Only public parts of dorc are used: the ``dorc`` command, ``dorc.api`` (``run_pipeline``,
``invoke_function``, ``plan_layer``), ``dorc.find_project``, the observer protocol of
``run_pipeline`` and the ``RunResult``/``StepResult`` it returns (including each step's REPORT
log line). One figure the public API cannot give: a *warm* hop (a function invoked a second time
by the same run). ``run_pipeline`` and ``invoke_function`` start new function runtimes on every
call and a definition cannot invoke a function twice (no cycles), so the warm hop is shown as an
upper bound: the cold hop minus its import (the REPORT line's ``Init Duration``).

Nothing outside temporary folders is written. Only the standard library, dorc and (for 3)
python-lambda-local are needed.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import benchlib  # beside this script
from benchlib import (BenchError, dorc_command, loadavg, process_env, say, set_output, summarize,
                      time_process)

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pipeline-config"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the repository's dorc, also when run from elsewhere

HOPS = 100
SIZES = {"1KB": 1024, "200KB": 200 * 1024}
PEER_PACKAGE = "python-lambda-local==0.1.13"
HANDLER_SOURCE = "def handler(event, context):\n    return event\n"

# -- small helpers -----------------------------------------------------------------------------

def event_of(size: int) -> dict[str, Any]:
    """``{"statusCode": 200, "body": "<padding>"}`` whose ``json.dumps`` is ``size`` bytes."""
    empty = len(json.dumps({"statusCode": 200, "body": ""}))
    text = "the quick brown fox jumps over the lazy dog "
    n = max(0, size - empty)
    return {"statusCode": 200, "body": (text * (n // len(text) + 1))[:n]}


def per_call_ns(fn: Callable[[], Any], n: int, batches: int = 7) -> float:
    """The fastest of ``batches`` batch means, in ns per call: the floor of a tight loop."""
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def machine() -> dict[str, Any]:
    return benchlib.machine(("dorc", "moto", "boto3", "python-lambda-local"))


# == 1. end to end ===============================================================================

MOTO_FLOOR = """\
import boto3
from moto import mock_aws

m = mock_aws(); m.start()
s3 = boto3.client("s3", region_name="us-east-1")
s3.create_bucket(Bucket="floor")
s3.put_object(Bucket="floor", Key="k", Body=b"x")
m.stop()
"""


def bench_end_to_end(runs: int, workdir: Path) -> dict[str, Any]:
    repo = workdir / "pipeline-config"
    shutil.copytree(CONFIG, repo, ignore=shutil.ignore_patterns(".dorc", "__pycache__"))
    env = process_env()
    dorc = dorc_command()
    run_cmd = [*dorc, "run", "census", "raw", "--local", "-q", "--config-repo", str(repo)]
    out: dict[str, Any] = {"command": run_cmd, "config_copy": str(repo)}
    say(f"  dorc run ({runs} runs after 1 warm-up) ...")
    out["dorc_run"] = time_process(run_cmd, runs, env=env, cwd=str(workdir))
    say("  floors ...")
    out["python_pass"] = time_process([sys.executable, "-c", "pass"], runs, env=env)
    out["boto3_moto"] = time_process([sys.executable, "-c", MOTO_FLOOR], runs, env=env)
    out["dorc_help"] = time_process([*dorc, "--help"], runs, env=env)
    # A few more runs with --json, only to split the time: what ran inside the pipeline vs around it
    # (the run whose pipeline duration is the median is shown).
    docs = []
    for _ in range(min(3, runs)):
        proc = subprocess.run([*run_cmd, "--json"], capture_output=True, env=env, cwd=str(workdir))
        try:
            docs.append(json.loads(proc.stdout))
        except ValueError:
            pass
    if docs:
        doc = sorted(docs, key=lambda d: d["duration_ms"])[len(docs) // 2]
        out["inside"] = {"pipeline_duration_s": doc["duration_ms"] / 1000, "of_runs": len(docs),
                         "steps_s": sum(s["duration_ms"] for s in doc["steps"]) / 1000,
                         "steps": [(s["layer"], s["function"], s["duration_ms"] / 1000) for s in doc["steps"]]}
    else:
        out["inside"] = None
    return out


def report_end_to_end(r: dict[str, Any]) -> None:
    d, moto, py, hlp = r["dorc_run"], r["boto3_moto"], r["python_pass"], r["dorc_help"]
    say(f"  command: {' '.join(r['command'])}")
    say(f"  {'':46} {'median':>10} {'min':>10} {'max':>10}")
    for label, s in (("dorc run census raw --local -q", d), ("floor: python -c pass", py),
                     ("floor: boto3+moto, bucket + put_object", moto), ("dorc --help (CLI start-up only)", hlp)):
        say(f"  {label:46} {ms(s['median']):>10} {ms(s['min']):>10} {ms(s['max']):>10}")
    say(f"  dorc run / boto3+moto floor: {d['median'] / moto['median']:.2f}x; "
        f"dorc adds {ms(d['median'] - moto['median'])} over the floor")
    inside = r.get("inside")
    if inside:
        steps = ", ".join(f"{l.split('/')[1]}/{f} {ms(t)}" for l, f, t in inside["steps"])
        say(f"  inside the process (--json, median of {inside['of_runs']} runs): pipeline {ms(inside['pipeline_duration_s'])} "
            f"(moto start/save + fixtures + steps), of which the handlers themselves {ms(inside['steps_s'])} [{steps}]")
        say("  note: census raw hands over to census/processed: 2 layers, 3 functions, the census API fixture"
            " (an HTTP server on 127.0.0.1) and the S3 holding store persisted in the copy's .dorc/")


# == 2. per hop ==================================================================================

def write_hop_config(root: Path) -> None:
    """``bench/hops``: f001 -> f002 -> ... -> f100; ``bench/one``: f001 alone. No-op handlers."""
    root.mkdir(parents=True)
    (root / "dorc.toml").write_text('[project]\nname = "bench"\nregion = "us-east-1"\n')
    for layer, n in (("hops", HOPS), ("one", 1)):
        layer_dir = root / "src" / "bench" / layer
        lines = []
        for i in range(1, n + 1):
            name = f"f{i:03d}"
            nxt = f'"f{i + 1:03d}"' if i < n else "None"
            lines.append(f'        Function(name="{name}", timeout=60, memory=128, next_function={nxt}),')
            fdir = layer_dir / "src" / name
            fdir.mkdir(parents=True)
            (fdir / "lambda.py").write_text(HANDLER_SOURCE)
        (layer_dir / "__main__.py").write_text(
            "from dorc import CreatePipeline, Function, PipelineDefinition, load_config\n\n"
            "config = load_config(__file__)\n"
            "definition = PipelineDefinition(\n"
            f'    file_path=__file__, description="{n} chained no-op functions",\n'
            "    functions=[\n" + "\n".join(lines) + "\n    ],\n)\n"
            "CreatePipeline(config, definition).apply()\n"
        )


def hop_config(workdir: Path) -> Path:
    """The generated throw-away project (written once per benchmark run)."""
    root = workdir / "hops-config"
    if not root.exists():
        write_hop_config(root)
    return root


class HopClock:
    """An observer that only takes timestamps: one perf_counter call per event."""

    def __init__(self):
        self.started: list[float] = []
        self.finished: list[float] = []

    def step_started(self, layer, function, deployed_name):
        self.started.append(time.perf_counter())

    def log(self, line):
        pass

    def step_finished(self, step):
        self.finished.append(time.perf_counter())


_INIT = re.compile(r"Init Duration: ([0-9.]+) ms")


def init_ms(logs: str) -> float:
    """The ``Init Duration`` of a step's REPORT line (the import of its lambda.py), 0 if absent."""
    m = _INIT.search(logs or "")
    return float(m.group(1)) if m else 0.0


def one_run(project, layer: str, event_json: bytes, n: int) -> dict[str, float]:
    from dorc import api

    clock = HopClock()
    gc.collect()
    t0 = time.perf_counter()
    res = api.run_pipeline("bench", layer, event=event_json, project=project, observer=clock, record=False)
    t1 = time.perf_counter()
    if not res.succeeded or len(res.steps) != n or res.output_json != event_json:
        raise BenchError(f"bench/{layer} did not pass the event through: {res.status} {res.error}")
    return _hop_figures(clock, res.steps, t0, t1, n) | {"pipeline_duration_s": res.duration_ms / 1000}


def _hop_figures(clock: HopClock, steps, t0: float, t1: float, n: int) -> dict[str, float]:
    gaps = [b - a for a, b in zip(clock.started, clock.started[1:])]
    invoke = sum(s.duration_ms for s in steps) / 1000  # each step's Duration: env, import, call, JSON
    init = sum(init_ms(s.logs) for s in steps) / 1000  # "Init Duration" of each REPORT line: the import
    span = clock.finished[-1] - clock.started[0]
    return {
        "total_s": t1 - t0,
        "before_first_hop_s": clock.started[0] - t0,  # plan + fixtures + moto start + buckets + store load
        "after_last_hop_s": t1 - clock.finished[-1],  # moto: store save + stop
        "span_s": span,
        "per_hop_s": span / n,
        "per_hop_median_gap_s": statistics.median(gaps) if gaps else span,
        "init_per_hop_s": init / n,
        "invoke_minus_init_per_hop_s": (invoke - init) / n,
        "outside_invoke_per_hop_s": (span - invoke) / n,
        # a warm hop cannot be had through the public API (see the module docstring): this bound
        # still pays the creation of the function's runtime, which a warm hop does not
        "warm_upper_per_hop_s": (span - init) / n,
    }


class ProfilingClock(HopClock):
    """Profiles only the hops: from the first step's start to the last step's end."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.profile = cProfile.Profile()

    def step_started(self, layer, function, deployed_name):
        if not self.started:
            self.profile.enable()
        super().step_started(layer, function, deployed_name)

    def step_finished(self, step):
        super().step_finished(step)
        if len(self.finished) == self.n:
            self.profile.disable()


def bench_hops(runs: int, workdir: Path, profile: bool) -> dict[str, Any]:
    from dorc import api, find_project

    root = hop_config(workdir)
    project = find_project(root)
    out: dict[str, Any] = {"config": str(root)}

    # The handler's own time, measured on the very file the runtime imports.
    spec = importlib.util.spec_from_file_location("bench_noop", root / "src/bench/hops/src/f001/lambda.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def plan_time(layer: str) -> float:
        samples = []
        for _ in range(max(3, runs)):
            t0 = time.perf_counter()
            api.plan_layer(project, "bench", layer, "local")
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    out["plan_100_s"] = plan_time("hops")
    out["plan_1_s"] = plan_time("one")

    for label, size in SIZES.items():
        event = event_of(size)
        event_json = json.dumps(event).encode()
        handler = mod.handler
        loops = 200_000 if size < 10_000 else 50_000
        handler_s = per_call_ns(lambda: handler(event, None), loops) / 1e9
        rt_loops = 20_000 if size < 10_000 else 200
        json_rt_s = per_call_ns(lambda: json.loads(json.dumps(event)), rt_loops) / 1e9
        say(f"  {label}: {runs} runs of bench/hops ({HOPS} functions) and bench/one (1 function), after 1 warm-up ...")
        one_run(project, "hops", event_json, HOPS)  # warm-up: moto's import, .pyc files of the handlers
        one_run(project, "one", event_json, 1)
        hop_runs, one_runs = [], []
        for _ in range(runs):  # interleaved, so that a change in the machine's load hits both alike
            hop_runs.append(one_run(project, "hops", event_json, HOPS))
            one_runs.append(one_run(project, "one", event_json, 1))

        def med(rs, key):
            return statistics.median(r[key] for r in rs)

        per_hop = med(hop_runs, "per_hop_s") - handler_s
        warm_upper = med(hop_runs, "warm_upper_per_hop_s") - handler_s
        # min, not median: the 1-function total is mostly moto's start, whose spread under load
        # exceeds the 99 hops' total; the fastest runs are the least disturbed ones
        diff = (min(r["total_s"] for r in hop_runs) - min(r["total_s"] for r in one_runs)) / (HOPS - 1)
        plan_diff = (out["plan_100_s"] - out["plan_1_s"]) / (HOPS - 1)
        out[label] = {
            "event_bytes": len(event_json),
            "handler_s": handler_s,
            "json_roundtrip_s": json_rt_s,
            "per_hop_s": per_hop,
            "per_hop_samples_s": [r["per_hop_s"] - handler_s for r in hop_runs],
            "per_hop_min_s": min(r["per_hop_s"] for r in hop_runs) - handler_s,
            "per_hop_median_gap_s": med(hop_runs, "per_hop_median_gap_s") - handler_s,
            "init_per_hop_s": med(hop_runs, "init_per_hop_s"),
            "invoke_minus_init_per_hop_s": med(hop_runs, "invoke_minus_init_per_hop_s") - handler_s,
            "outside_invoke_per_hop_s": med(hop_runs, "outside_invoke_per_hop_s"),
            "ratio_to_json_roundtrip": per_hop / json_rt_s,
            "warm_upper_per_hop_s": warm_upper,
            "warm_upper_per_hop_min_s": min(r["warm_upper_per_hop_s"] for r in hop_runs) - handler_s,
            "warm_upper_ratio_to_json_roundtrip": warm_upper / json_rt_s,
            "total_100_s": summarize([r["total_s"] for r in hop_runs]),
            "total_1_s": summarize([r["total_s"] for r in one_runs]),
            "before_first_hop_1_s": med(one_runs, "before_first_hop_s"),
            "after_last_hop_1_s": med(one_runs, "after_last_hop_s"),
            "differential_per_hop_s": diff,
            "differential_minus_planning_per_hop_s": diff - plan_diff,
        }

    if profile:
        say("  cProfile: 100-hop runs, 1 KB event (one profiled whole, one profiled over the hops only) ...")
        event_json = json.dumps(event_of(SIZES["1KB"])).encode()
        # Two runs: one profiler at a time can be active (the hop-span one would displace the other).
        whole = cProfile.Profile()
        whole.enable()
        api.run_pipeline("bench", "hops", event=event_json, project=project, record=False)
        whole.disable()
        clock = ProfilingClock(HOPS)
        api.run_pipeline("bench", "hops", event=event_json, project=project, observer=clock, record=False)
        out["profile"] = {"whole": profile_summary(whole, top=8), "hops": profile_summary(clock.profile, top=15)}
    return out


def _package_of(file: str) -> str:
    """Where a profiled function lives, by path only (no knowledge of dorc's modules): the
    distribution under site-packages, the repository's top-level folder, the standard library."""
    f = file.replace(os.sep, "/")
    if f == "~" or f.startswith("<"):
        return "built-ins and C code"
    if "site-packages/" in f:
        return f.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    repo = str(REPO).replace(os.sep, "/") + "/"
    if f.startswith(repo):
        top = f[len(repo):].split("/", 1)[0]
        return {"sim": "dorc_sim (sim/)", "bench": "bench/ (this script: the observer)"}.get(top, top)
    if "hops-config/" in f:
        return "the generated lambda.py files"
    if "/lib/python" in f:
        return "standard library"
    return "other"


def profile_summary(prof: cProfile.Profile, top: int = 15) -> dict[str, Any]:
    st = pstats.Stats(prof)
    total = st.total_tt
    rows = []
    for (file, line, name), (cc, nc, tt, ct, callers) in st.stats.items():
        rows.append({"file": file, "line": line, "function": name, "ncalls": nc, "tottime_s": tt, "cumtime_s": ct})
    by_tt = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    packages: dict[str, list[float]] = {}
    for r in rows:
        slot = packages.setdefault(_package_of(r["file"]), [0, 0.0])
        slot[0] += r["ncalls"]
        slot[1] += r["tottime_s"]
    by_package = sorted(({"package": k, "ncalls": v[0], "tottime_s": v[1]} for k, v in packages.items()),
                        key=lambda r: r["tottime_s"], reverse=True)
    return {"total_s": total, "top_tottime": by_tt, "by_package": by_package}


def _short(file: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file if len(file) < 40 else "…" + file[-39:]


def report_hops(r: dict[str, Any]) -> None:
    say(f"  method: {HOPS} functions, one per hop; per hop = (last step_finished - first step_started) / {HOPS},"
        " from an observer's timestamps,")
    say("  minus the bare handler's own time. Outside that span (so not in the figure): planning, moto start,"
        " bucket creation, store load/save, moto stop.")
    say("  Each hop = Task dispatch + a new function runtime + the invocation (Lambda's env vars, import of lambda.py,"
        " JSON in/out) + the Choice after it + its StepResult.")
    say(f"  planning (dorc.api.plan_layer): 100 functions {ms(r['plan_100_s'])}, 1 function {ms(r['plan_1_s'])}")
    say()
    hdr = f"  {'':58}" + "".join(f"{k:>14}" for k in SIZES)
    say(hdr)

    def row(label, key, fmt=us):
        vals = []
        for k in SIZES:
            v = r[k].get(key)
            vals.append(f"{fmt(v) if isinstance(v, (int, float)) else '-':>14}")
        say(f"  {label:58}" + "".join(vals))

    def ratio(v):
        return f"{v:,.1f}x"

    row("event size (bytes)", "event_bytes", lambda v: f"{v:,}")
    row("per hop, cold (median of runs)", "per_hop_s")
    row("  fastest run", "per_hop_min_s")
    row("  per hop, median gap between hops", "per_hop_median_gap_s")
    row("  of which: import lambda.py (Init Duration)", "init_per_hop_s")
    row("  of which: rest of the step's Duration (env, JSON, call)", "invoke_minus_init_per_hop_s")
    row("  of which: outside the step's Duration (*)", "outside_invoke_per_hop_s")
    row("per hop, warm: upper bound = cold minus import (**)", "warm_upper_per_hop_s")
    row("  fastest run", "warm_upper_per_hop_min_s")
    row("floor: one JSON round trip (dumps + loads)", "json_roundtrip_s")
    row("bare handler call (subtracted)", "handler_s", lambda v: f"{v * 1e9:,.0f} ns")
    row("ratio cold hop / JSON round trip", "ratio_to_json_roundtrip", ratio)
    row("ratio warm hop (upper bound) / JSON round trip", "warm_upper_ratio_to_json_roundtrip", ratio)
    say()
    say("  (*) request id, START/END/REPORT lines, peak-memory read, the new runtime, Task dispatch,"
        " Choice (json.loads + rules), StepResult, observer")
    say("  (**) not measurable through dorc's public API: run_pipeline and invoke_function start new runtimes on"
        " every call, and a definition cannot invoke a function twice. The bound still pays for creating the"
        " runtime; the old private-API measurement put a warm hop about 20% below it.")
    row("cross-check: (min total 100 - min total 1) / 99", "differential_per_hop_s")
    row("  same, minus the per-function planning", "differential_minus_planning_per_hop_s")
    for k in SIZES:
        t100, t1 = r[k]["total_100_s"], r[k]["total_1_s"]
        say(f"  {k}: run_pipeline total, 100 functions {ms(t100['median'])} (min {ms(t100['min'])}), 1 function "
            f"{ms(t1['median'])} (min {ms(t1['min'])}); with 1 function, before the hop {ms(r[k]['before_first_hop_1_s'])}"
            f" (plan + moto start), after it {ms(r[k]['after_last_hop_1_s'])} (store save + moto stop)")
    prof = r.get("profile")
    if prof:
        w, h = prof["whole"], prof["hops"]
        say()
        say(f"  cProfile of one run_pipeline of bench/hops, 1 KB (profiled {ms(w['total_s'])}; cProfile inflates small calls,"
            " read the shares, not the absolute figures)")
        for title, p in (("whole run", w), ("inside the hop span only", h)):
            say(f"    own time by where the code lives, {title} ({ms(p['total_s'])} profiled):")
            for x in p["by_package"][:8]:
                say(f"    {ms(x['tottime_s']):>12} {x['tottime_s'] / p['total_s'] * 100:5.1f}% {x['ncalls']:>8} calls  "
                    f"{x['package']}")
        say(f"    top {len(w['top_tottime'])} by own time, whole run:")
        for t in w["top_tottime"]:
            say(f"    {ms(t['tottime_s']):>12} {t['ncalls']:>7} {us(t['tottime_s'] / t['ncalls']):>11}  "
                f"{_short(t['file'])}:{t['line']}({t['function']})")
        say(f"    top {len(h['top_tottime'])} by own time, inside the hop span only ({ms(h['total_s'])} profiled):")
        for t in h["top_tottime"]:
            say(f"    {ms(t['tottime_s']):>12} {t['ncalls']:>7} {us(t['tottime_s'] / t['ncalls']):>11}  "
                f"{_short(t['file'])}:{t['line']}({t['function']})")


# == 3. per invocation: dorc, the peer and the floor, side by side =============================

def ensure_peer() -> str | None:
    """python-lambda-local importable, installed with pip if missing; None when it cannot be."""
    if importlib.util.find_spec("lambda_local") is not None:
        return None
    say(f"  installing {PEER_PACKAGE} (pip) ...")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", PEER_PACKAGE], capture_output=True, text=True)
    importlib.invalidate_caches()
    if proc.returncode != 0 or importlib.util.find_spec("lambda_local") is None:
        return f"could not install {PEER_PACKAGE}: {proc.stderr.strip()[-500:]}"
    return None


# One whole local invocation as a user's script does it: a process per invocation.
DORC_INVOKE_PROGRAM = """\
import json, sys
from dorc import api
with open(sys.argv[2]) as fh:
    event = json.load(fh)
step = api.invoke_function("bench", "one", "f001", event=event, config_repo=sys.argv[1])
sys.exit(0 if step.succeeded and step.output == event else 1)
"""


def moto_floor_once() -> float:
    """In-process floor of a local invocation: moto started, a bucket, an object, moto stopped."""
    import boto3
    from moto import mock_aws

    t0 = time.perf_counter()
    m = mock_aws()
    m.start()
    try:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="floor")
        s3.put_object(Bucket="floor", Key="k", Body=b"x")
    finally:
        m.stop()
    return time.perf_counter() - t0


def timed_calls(fn: Callable[[], Any], n: int) -> dict[str, Any]:
    samples = []
    gc.collect()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e9)
    return summarize(samples) | {"samples": None}


def run_worker(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """This script again, as a fresh process that imports only what ``kind`` needs; its last
    stdout line is its result."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(params)],
                          capture_output=True, text=True, env=process_env())
    if proc.returncode != 0:
        return {"error": f"{kind} worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_invocations(runs: int, workdir: Path, quick: bool) -> dict[str, Any]:
    root = hop_config(workdir)
    handler_file = root / "src/bench/one/src/f001/lambda.py"  # the same file for dorc and the peer
    events = {}
    for label, size in SIZES.items():
        events[label] = str(workdir / f"event-{label}.json")
        Path(events[label]).write_text(json.dumps(event_of(size)))
    params = {"config": str(root), "handler_file": str(handler_file), "events": events, "sizes": SIZES,
              "n_hop_runs": runs, "n_invoke": 10 if quick else 30,
              "n_fork": 60 if quick else 300, "n_cli_path": 40 if quick else 150}
    out: dict[str, Any] = {"params": params}
    say("  dorc, in a fresh worker process: run_pipeline of bench/hops, api.invoke_function of bench/one,"
        " and the in-process boto3 + moto floor ...")
    out["dorc"] = run_worker("dorc", params)
    problem = ensure_peer()
    if problem:
        out["peer"] = {"error": problem}
    else:
        say("  python-lambda-local, in a fresh worker process (only lambda_local imported) ...")
        out["peer"] = run_worker("peer", params)
    say(f"  whole processes, one invocation each (1 KB), {runs} runs after 1 warm-up ...")
    env = process_env()
    procs: dict[str, Any] = {}
    procs["dorc_invoke"] = time_process([sys.executable, "-c", DORC_INVOKE_PROGRAM, str(root), events["1KB"]], runs,
                                        env=env, cwd=str(workdir))
    if "error" not in out["peer"]:
        exe = Path(sys.executable).parent / "python-lambda-local"
        cli = [str(exe)] if exe.is_file() else [sys.executable, "-m", "lambda_local"]
        procs["peer_cli"] = time_process([*cli, "-f", "handler", "-t", "3", str(handler_file), events["1KB"]], runs,
                                         env=env, cwd=str(workdir))
    procs["boto3_moto"] = time_process([sys.executable, "-c", MOTO_FLOOR], runs, env=env)
    procs["python_pass"] = time_process([sys.executable, "-c", "pass"], runs, env=env)
    out["process"] = procs
    return out


def dorc_worker(params: dict[str, Any]) -> None:
    """dorc's side, in a process of its own: per hop (run_pipeline), per whole invocation
    (invoke_function) and the in-process floor, interleaved. Prints one JSON line."""
    from dorc import api, find_project

    project = find_project(params["config"])
    out: dict[str, Any] = {}
    for label, size in params["sizes"].items():
        event_json = json.dumps(event_of(size)).encode()
        one_run(project, "hops", event_json, HOPS)  # warm-up
        hops = [one_run(project, "hops", event_json, HOPS) for _ in range(params["n_hop_runs"])]
        r: dict[str, Any] = {
            "hop": summarize([h["per_hop_s"] for h in hops]),
            "hop_init_s": statistics.median(h["init_per_hop_s"] for h in hops),
            "hop_warm_upper": summarize([h["warm_upper_per_hop_s"] for h in hops]),
        }

        def invoke():
            step = api.invoke_function("bench", "one", "f001", event=event_json, project=project)
            if not step.succeeded or step.output_json != event_json:
                raise BenchError(f"invoke_function bench/one f001: {step.status} {step.error}")
            return step

        invoke()  # warm-up
        moto_floor_once()
        walls, durations, inits, floors, plans = [], [], [], [], []
        for _ in range(params["n_invoke"]):  # interleaved: the same load for both
            gc.collect()
            t0 = time.perf_counter()
            step = invoke()
            walls.append(time.perf_counter() - t0)
            durations.append(step.duration_ms / 1000)
            inits.append(init_ms(step.logs) / 1000)
            gc.collect()
            floors.append(moto_floor_once())
            t0 = time.perf_counter()
            api.plan_layer(project, "bench", "one", "local")
            plans.append(time.perf_counter() - t0)
        r |= {"invoke_function": summarize(walls), "invoke_duration_s": statistics.median(durations),
              "invoke_init_s": statistics.median(inits), "moto_floor": summarize(floors),
              "plan_one_s": statistics.median(plans)}
        r["ratio_invoke_vs_floor"] = r["invoke_function"]["median"] / r["moto_floor"]["median"]
        out[label] = r
    print(json.dumps(out))


def peer_worker(params: dict[str, Any]) -> None:
    """python-lambda-local in a process of its own, so that fork() costs what it costs in a small
    process and nothing of dorc, moto or pydantic is loaded. Prints one JSON line."""
    import argparse as _ap
    import logging
    import multiprocessing

    # lambda_local/__init__.py defines a function ``main`` that hides the submodule of that name
    llm = importlib.import_module("lambda_local.main")
    from lambda_local.context import Context

    devnull = open(os.devnull, "w")
    for h in logging.getLogger().handlers:  # its basicConfig(stream=sys.stdout): keep the
        if isinstance(h, logging.StreamHandler):  # formatting work, drop the terminal
            h.setStream(devnull)
    handler_file = Path(params["handler_file"])
    mspec = importlib.util.spec_from_file_location("bench_peer_noop", handler_file)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    out: dict[str, Any] = {"start_method": multiprocessing.get_start_method()}
    for label, size in params["sizes"].items():
        event = event_of(size)
        res, err = llm.call(mod.handler, event, Context(3))
        assert err is None and res == event, (res, err)
        args = _ap.Namespace(file=str(handler_file), event=params["events"][label], library=None, function="handler",
                             timeout=3, arn_string="", version_name="", environment_variables=None)
        out[label] = {"call": timed_calls(lambda: llm.call(mod.handler, event, Context(3)), params["n_fork"]),
                      "run": timed_calls(lambda: llm.run(args), params["n_cli_path"])}
    print(json.dumps(out))


def report_invocations(r: dict[str, Any]) -> None:
    d, p, procs = r["dorc"], r["peer"], r["process"]
    if "error" in d:
        say(f"  dorc worker failed: {d['error']}")
    if "error" in p:
        say(f"  python-lambda-local skipped: {p['error']}")
    say("  what each does per invocation:")
    say("    dorc, a hop of run_pipeline: a new runtime for the function (imports its lambda.py), Lambda's env vars set")
    say("      and restored, stdout/stderr captured, JSON in and out, the timeout armed, the Choice after it, a StepResult.")
    say("    dorc, warm hop (upper bound): the same minus the import (Init Duration); a real warm hop also skips")
    say("      creating the runtime (not measurable through the public API, see the per-hop notes).")
    say("    dorc api.invoke_function: one function alone, all of it: plan the layer, start the local AWS (moto, the")
    say("      holding bucket, the persisted store) and fixtures, a new runtime (import), the call, save, stop moto.")
    say("    floor: boto3 + moto in-process: mock_aws started, a bucket created, an object put, mock_aws stopped.")
    say("    python-lambda-local call(func, event, ctx): forks a process per invocation (multiprocessing.Process")
    say("      + Queue), runs the already-imported func in the child, pickles the result back; logs event and")
    say("      result at INFO (its basicConfig handler, pointed at /dev/null here). No JSON: the event is a Python object.")
    say("    python-lambda-local run(args) (what its CLI calls): the same, plus reads the event file and imports")
    say("      lambda.py in the child every invocation (a cold start each time).")
    if "start_method" in p:
        say(f"  multiprocessing start method (python-lambda-local): {p['start_method']}")
    say(f"  {'':56}" + "".join(f"{k:>14}" for k in SIZES))

    for label, cell in invocation_rows():
        say(f"  {label:56}" + "".join(f"{invocation_cell(cell, d, p, k):>14}" for k in SIZES))
    say("  (dorc's per-hop figures here come from the worker's own run_pipeline runs; the bare handler's own time, under 1 µs, is not"
        " subtracted)")
    say("  whole processes, one invocation each (1 KB event), process start to exit:")
    for label, key in (("python -c: dorc.api.invoke_function (DORC_INVOKE_PROGRAM)", "dorc_invoke"),
                       ("python-lambda-local -f handler -t 3 lambda.py event.json", "peer_cli"),
                       ("floor: python -c: boto3 + moto, bucket + put_object", "boto3_moto"),
                       ("floor: python -c pass", "python_pass")):
        s = procs.get(key)
        if s:
            say(f"    {label:62} median {ms(s['median']):>10}  min {ms(s['min']):>10}")
    if procs.get("peer_cli"):
        say(f"    dorc invoke process / python-lambda-local process: "
            f"{procs['dorc_invoke']['median'] / procs['peer_cli']['median']:.2f}x; dorc invoke process / boto3+moto "
            f"floor: {procs['dorc_invoke']['median'] / procs['boto3_moto']['median']:.2f}x")


def invocation_rows() -> list[tuple[str, Callable[[dict, dict], str]]]:
    """(label, cell) rows of the per-invocation table; ``cell(dorc, peer)`` gets one size's results
    of each worker and raises KeyError (shown as "-") when a figure is missing."""
    x = lambda v: f"{v:,.1f}x"  # noqa: E731
    return [
        ("dorc: a hop of run_pipeline, cold (median)", lambda d, p: us(d["hop"]["median"])),
        ("  of which the import (Init Duration)", lambda d, p: us(d["hop_init_s"])),
        ("dorc: warm hop, upper bound (cold minus import)", lambda d, p: us(d["hop_warm_upper"]["median"])),
        ("python-lambda-local call() (fork per call)", lambda d, p: us(p["call"]["median"])),
        ("  min", lambda d, p: us(p["call"]["min"])),
        ("python-lambda-local run(args) (imports each time)", lambda d, p: us(p["run"]["median"])),
        ("ratio call() / dorc warm hop (upper bound)", lambda d, p: x(p["call"]["median"] / d["hop_warm_upper"]["median"])),
        ("ratio run(args) / dorc cold hop", lambda d, p: x(p["run"]["median"] / d["hop"]["median"])),
        ("dorc: api.invoke_function, whole (median)", lambda d, p: ms(d["invoke_function"]["median"])),
        ("  min", lambda d, p: ms(d["invoke_function"]["min"])),
        ("  of which the step's Duration (import + call)", lambda d, p: us(d["invoke_duration_s"])),
        ("  of which planning (api.plan_layer, timed apart)", lambda d, p: ms(d["plan_one_s"])),
        ("floor: boto3 + moto in-process (median)", lambda d, p: ms(d["moto_floor"]["median"])),
        ("ratio invoke_function / floor", lambda d, p: x(d["ratio_invoke_vs_floor"])),
    ]


def invocation_cell(cell: Callable[[dict, dict], str], d: dict[str, Any], p: dict[str, Any], size: str) -> str:
    try:
        return cell(d.get(size, {}), p.get(size, {}))
    except (KeyError, TypeError, ZeroDivisionError):
        return "-"


# == report =====================================================================================

def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "### dorc local target: benchmark",
        "",
        f"`{results['command_line']}` on {m['cpu'] or 'unknown CPU'}, nproc {m['nproc']}, "
        f"{m['implementation']} {m['python']}, {m['platform']}; dorc {m['versions'].get('dorc')}, "
        f"moto {m['versions'].get('moto')}, boto3 {m['versions'].get('boto3')}, "
        f"python-lambda-local {m['versions'].get('python-lambda-local')}; load average {m['loadavg_start']} at start"
        + ("; PYTHONDONTWRITEBYTECODE set" if m["dont_write_bytecode"] else "") + ".",
        "",
    ]
    e = results.get("end_to_end")
    if e and "dorc_run" in e:
        lines += ["| end to end (process start to exit) | median | min | max |", "|---|---:|---:|---:|"]
        for label, key in (("`dorc run census raw --local -q`", "dorc_run"), ("floor: `python -c pass`", "python_pass"),
                           ("floor: boto3 + moto, create bucket + put object", "boto3_moto"),
                           ("`dorc --help`", "dorc_help")):
            s = e[key]
            lines.append(f"| {label} | {ms(s['median'])} | {ms(s['min'])} | {ms(s['max'])} |")
        lines += ["", f"dorc run = {e['dorc_run']['median'] / e['boto3_moto']['median']:.2f}x the boto3+moto floor "
                      f"(+{ms(e['dorc_run']['median'] - e['boto3_moto']['median'])}).", ""]
    h = results.get("hops")
    if h:
        lines += [f"| per hop, {HOPS} chained no-op functions, in-process | " + " | ".join(SIZES) + " |",
                  "|---|" + "---:|" * len(SIZES)]
        for label, key, fmt in (("cold hop (imports each lambda.py)", "per_hop_s", us),
                                ("  of which import (Init Duration)", "init_per_hop_s", us),
                                ("warm hop, upper bound (cold hop minus import)", "warm_upper_per_hop_s", us),
                                ("one JSON round trip (floor)", "json_roundtrip_s", us),
                                ("cold hop / JSON round trip", "ratio_to_json_roundtrip", lambda v: f"{v:,.1f}x"),
                                ("warm hop (upper bound) / JSON round trip", "warm_upper_ratio_to_json_roundtrip",
                                 lambda v: f"{v:,.1f}x")):
            vals = [fmt(h[k][key]) if isinstance(h[k].get(key), (int, float)) else "-" for k in SIZES]
            lines.append(f"| {label} | " + " | ".join(vals) + " |")
        lines += ["", "Per hop = span from the first step's start to the last step's end, over the steps "
                      "(observer timestamps of `dorc.api.run_pipeline`), minus the handler's own time; planning and "
                      "moto start/stop are outside it. A warm hop is not measurable through dorc's public API "
                      "(every run starts new runtimes): the bound still includes creating the runtime.", ""]
    inv = results.get("peer")
    if inv:
        d, p = inv.get("dorc", {}), inv.get("peer", {})
        lines += ["| per invocation, trivial handler | " + " | ".join(SIZES) + " |", "|---|" + "---:|" * len(SIZES)]
        for label, cell in invocation_rows():
            shown = "&nbsp;&nbsp;" * ((len(label) - len(label.lstrip())) // 2) + label.strip()
            lines.append(f"| {shown} | " + " | ".join(invocation_cell(cell, d, p, k) for k in SIZES) + " |")
        procs = inv.get("process", {})
        lines += ["", "| one invocation per process (1 KB), start to exit | median | min |", "|---|---:|---:|"]
        for label, key in (("`python -c` calling `dorc.api.invoke_function`", "dorc_invoke"),
                           ("`python-lambda-local -f handler -t 3 lambda.py event.json`", "peer_cli"),
                           ("floor: boto3 + moto, create bucket + put object", "boto3_moto"),
                           ("floor: `python -c pass`", "python_pass")):
            s = procs.get(key)
            if s:
                lines.append(f"| {label} | {ms(s['median'])} | {ms(s['min'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmarks of dorc's in-process target (see the module docstring).")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per measurement (default 7; --quick: 3)")
    ap.add_argument("--quick", action="store_true", help="fewer runs and invocations")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (the report goes to stderr)")
    ap.add_argument("--only", choices=("e2e", "hops", "peer"), action="append", help="run only these parts")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile of the 100-hop run")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "PARAMS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, params = args.worker
        {"dorc": dorc_worker, "peer": peer_worker}[kind](json.loads(params))
        return 0
    if args.json:
        set_output(sys.stderr)
    runs = args.runs or (3 if args.quick else 7)
    if runs < 1:
        ap.error("--runs must be at least 1")
    parts = args.only or ["e2e", "hops", "peer"]
    cmdline = "python bench/bench_local.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    results: dict[str, Any] = {"command_line": cmdline, "runs": runs, "machine": machine()}
    m = results["machine"]
    say(f"dorc local-target benchmark — {cmdline}")
    say(f"machine: {m['cpu']}, nproc {m['nproc']} (cpu_count {m['cpu_count']}), {m['implementation']} {m['python']} "
        f"({m['executable']}), {m['platform']}")
    say(f"versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}")
    say(f"load average at start: {m['loadavg_start']}; bytecode caches written: {not m['dont_write_bytecode']}"
        + ("  (PYTHONDONTWRITEBYTECODE is set: every process compiles dorc's own modules, and each cold hop"
           " compiles lambda.py, from source)" if m["dont_write_bytecode"] else ""))
    with tempfile.TemporaryDirectory(prefix="dorc-bench-") as tmp:
        work = Path(tmp)
        try:
            if "e2e" in parts:
                say("\n== 1. end to end: dorc run as a subprocess ==")
                results["end_to_end"] = bench_end_to_end(runs, work)
                report_end_to_end(results["end_to_end"])
            if "hops" in parts:
                say(f"\n== 2. per hop: {HOPS} chained no-op functions, in-process (dorc.api.run_pipeline, record=False) ==")
                results["hops"] = bench_hops(runs, work, profile=not args.no_profile)
                report_hops(results["hops"])
            if "peer" in parts:
                say("\n== 3. per invocation: dorc (run_pipeline, invoke_function) vs python-lambda-local vs"
                    " boto3 + moto, side by side ==")
                results["peer"] = bench_invocations(runs, work, args.quick)
                report_invocations(results["peer"])
        except BenchError as exc:
            say(f"\nbenchmark failed: {exc}")
            return 1
    results["loadavg_end"] = loadavg()
    la = results["loadavg_end"]
    say(f"\nload average at end: {la}" + (f"  (busy machine: more than half of nproc={m['nproc']};"
        " expect noisy figures, compare the min columns)" if la and la[0] > m["nproc"] / 2 else ""))
    return benchlib.finish(results, markdown(results), args.json)


if __name__ == "__main__":
    sys.exit(main())
