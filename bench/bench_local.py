#!/usr/bin/env python
"""Benchmarks of dorc's in-process (``--local``) target.

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
   ``dorc.api.run_pipeline``; the time per hop is read from the observer's timestamps, so moto's
   start and stop and the planning are outside it (the method is printed with the figures);
3. peer: ``python-lambda-local`` (0.1.13) against ``sim.runtime.FunctionRuntime.invoke`` for the
   same trivial handler, per invocation, in a fresh worker process.

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
from benchlib import BenchError, loadavg, say, set_output, summarize

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pipeline-config"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the repository's dorc and sim, also when run from elsewhere

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

def dorc_command() -> list[str]:
    """The real console script next to this interpreter (not a pyenv shim), else ``-m dorc``."""
    exe = Path(sys.executable).parent / "dorc"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "dorc"]


def time_process(cmd: list[str], runs: int, warmup: int = 1, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> dict[str, Any]:
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
    env = {k: v for k, v in os.environ.items() if k != "CONFIG_REPO_PATH"}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
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
    m = _INIT.search(logs)
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
    invoke = sum(s.duration_ms for s in steps) / 1000  # runtime.invoke's own clock: env, import, call, JSON
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
    }


def warm_pass(project, event_json: bytes, passes: int) -> dict[str, Any] | None:
    """The 100 hops run ``1 + passes`` times by one backend: after the first pass every function is
    imported, as in a warm Lambda. dorc's public API starts a new backend (new runtimes) per run,
    so this uses the private ``dorc.targets.local._Backend``; on any change there it reports an
    error instead of failing the benchmark."""
    try:
        from dorc import api
        from dorc.result import RunResult
        from dorc.targets import local
        from dorc_sim.aws import LocalAWS
        from dorc_sim.fixtures import Fixtures

        plans = api.reachable_plans(project, ["bench/hops"], "local")
        plan = plans["bench/hops"]
        figures = []
        backend = None
        with Fixtures() as fixtures, LocalAWS(project.state_dir / "local-aws", plan.region, [plan.holding_bucket]):
            for _ in range(1 + passes):
                clock = HopClock()
                result = RunResult(pipeline="bench", layer="hops", target="local", env="local")
                if backend is None:
                    backend = local._Backend(plans, fixtures, clock, result)
                backend._observer, backend._result = clock, result
                gc.collect()
                t0 = time.perf_counter()
                outcome = backend.run_machine(plan, event_json)
                t1 = time.perf_counter()
                if not outcome.succeeded or outcome.output_json != event_json:
                    return {"error": f"the warm pass failed: {outcome.error} {outcome.cause}"}
                figures.append(_hop_figures(clock, result.steps, t0, t1, HOPS))
        warm = figures[1:]
        return {key: statistics.median(f[key] for f in warm) for key in warm[0]} | {
            "per_hop_min_s": min(f["per_hop_s"] for f in warm), "passes": len(warm)}
    except Exception as exc:  # a private API: report, do not fail the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"}


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
    from dorc import api
    from dorc.project import find_project

    root = workdir / "hops-config"
    write_hop_config(root)
    project = find_project(root)
    out: dict[str, Any] = {"config": str(root)}

    # The handler's own time, measured on the very file the runtime imports.
    spec = importlib.util.spec_from_file_location("bench_noop", root / "src/bench/hops/src/f001/lambda.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    plan_t = []
    for _ in range(max(3, runs)):
        t0 = time.perf_counter()
        api.reachable_plans(project, ["bench/hops"], "local")
        plan_t.append(time.perf_counter() - t0)
    plan_one = []
    for _ in range(max(3, runs)):
        t0 = time.perf_counter()
        api.reachable_plans(project, ["bench/one"], "local")
        plan_one.append(time.perf_counter() - t0)
    out["plan_100_s"] = statistics.median(plan_t)
    out["plan_1_s"] = statistics.median(plan_one)

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
        # min, not median: the 1-function total is mostly moto's start, whose spread under load
        # exceeds the 99 hops' total; the fastest runs are the least disturbed ones
        diff = (min(r["total_s"] for r in hop_runs) - min(r["total_s"] for r in one_runs)) / (HOPS - 1)
        plan_diff = (out["plan_100_s"] - out["plan_1_s"]) / (HOPS - 1)
        res = {
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
            "total_100_s": summarize([r["total_s"] for r in hop_runs]),
            "total_1_s": summarize([r["total_s"] for r in one_runs]),
            "before_first_hop_1_s": med(one_runs, "before_first_hop_s"),
            "after_last_hop_1_s": med(one_runs, "after_last_hop_s"),
            "differential_per_hop_s": diff,
            "differential_minus_planning_per_hop_s": diff - plan_diff,
        }
        warm = warm_pass(project, event_json, runs)
        if warm and "error" not in warm:
            res["warm_per_hop_s"] = warm["per_hop_s"] - handler_s
            res["warm_per_hop_min_s"] = warm["per_hop_min_s"] - handler_s
            res["warm_outside_invoke_per_hop_s"] = warm["outside_invoke_per_hop_s"]
            res["warm_invoke_per_hop_s"] = warm["invoke_minus_init_per_hop_s"] - handler_s
            res["warm_ratio_to_json_roundtrip"] = res["warm_per_hop_s"] / json_rt_s
        else:
            res["warm_pass_error"] = (warm or {}).get("error", "unavailable")
        out[label] = res

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


# Functions whose cumulative time says where the time goes (matched on file suffix and name).
_WATCH = [
    ("dorc/api.py", "run_pipeline", "run_pipeline, all of it"),
    ("dorc/api.py", "reachable_plans", "planning (load __main__.py, validate, build plan)"),
    ("sim/aws.py", "__enter__", "LocalAWS start (moto, buckets, store load)"),
    ("sim/aws.py", "__exit__", "LocalAWS stop (store save, moto stop)"),
    ("dorc/targets/asl.py", "execute", "the state machine (all hops)"),
    ("dorc/targets/local.py", "invoke_lambda", "invoke_lambda (one per hop)"),
    ("sim/runtime.py", "invoke", "  FunctionRuntime.invoke"),
    ("sim/runtime.py", "_load", "    _load: import lambda.py (cold start)"),
    ("sim/runtime.py", "_call", "    _call: json.loads, call, json.dumps, sys.path/sys.modules"),
    ("sim/runtime.py", "_forget_modules", "      _forget_modules (in _load and _call)"),
    ("sim/runtime.py", "_with_timeout", "      _with_timeout (SIGALRM set/reset + the call)"),
    ("sim/runtime.py", "__enter__", "    _Environ.__enter__ (set Lambda's env vars)"),
    ("sim/runtime.py", "__exit__", "    _Environ.__exit__ (restore them)"),
    ("sim/runtime.py", "lambda_environment", "    lambda_environment"),
    ("sim/runtime.py", "_max_rss_mb", "    _max_rss_mb (REPORT's Max Memory Used)"),
    ("dorc/targets/asl.py", "_choose", "Choice states"),
]


def profile_summary(prof: cProfile.Profile, top: int = 15) -> dict[str, Any]:
    st = pstats.Stats(prof)
    total = st.total_tt
    rows = []
    for (file, line, name), (cc, nc, tt, ct, callers) in st.stats.items():
        rows.append({"file": file, "line": line, "function": name, "ncalls": nc, "tottime_s": tt, "cumtime_s": ct})
    by_tt = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    watched = []
    for suffix, name, label in _WATCH:
        hits = [r for r in rows if r["file"].replace(os.sep, "/").endswith(suffix) and r["function"] == name]
        if hits:
            r = max(hits, key=lambda r: r["cumtime_s"])
            watched.append({"label": label, "ncalls": r["ncalls"], "cumtime_s": r["cumtime_s"]})
    return {"total_s": total, "top_tottime": by_tt, "watched": watched}


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", str(REPO) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file if len(file) < 40 else "…" + file[-39:]


def report_hops(r: dict[str, Any]) -> None:
    say(f"  method: {HOPS} functions, one per hop; per hop = (last step_finished - first step_started) / {HOPS},"
        " from an observer's timestamps,")
    say("  minus the bare handler's own time. Outside that span (so not in the figure): planning, moto start,"
        " bucket creation, store load/save, moto stop.")
    say("  Each hop = Task dispatch + FunctionRuntime creation + invoke (env vars, import of lambda.py, JSON in/out)"
        " + StepResult + Choice (json.loads).")
    say(f"  planning (reachable_plans): 100 functions {ms(r['plan_100_s'])}, 1 function {ms(r['plan_1_s'])}")
    say()
    hdr = f"  {'':52}" + "".join(f"{k:>14}" for k in SIZES)
    say(hdr)

    def row(label, key, fmt=us):
        vals = []
        for k in SIZES:
            v = r[k].get(key)
            vals.append(f"{fmt(v) if isinstance(v, (int, float)) else '-':>14}")
        say(f"  {label:52}" + "".join(vals))

    def ratio(v):
        return f"{v:,.1f}x"

    row("event size (bytes)", "event_bytes", lambda v: f"{v:,}")
    row("per hop, cold (median of runs)", "per_hop_s")
    row("  fastest run", "per_hop_min_s")
    row("  per hop, median gap between hops", "per_hop_median_gap_s")
    row("  of which: import lambda.py (Init Duration)", "init_per_hop_s")
    row("  of which: rest of invoke (env, JSON, timeout, call)", "invoke_minus_init_per_hop_s")
    row("  of which: outside invoke's timer (*)", "outside_invoke_per_hop_s")
    row("per hop, warm (later passes, private _Backend)", "warm_per_hop_s")
    row("  fastest pass", "warm_per_hop_min_s")
    row("  of which: invoke", "warm_invoke_per_hop_s")
    row("  of which: outside invoke's timer (*)", "warm_outside_invoke_per_hop_s")
    row("floor: one JSON round trip (dumps + loads)", "json_roundtrip_s")
    row("bare handler call (subtracted)", "handler_s", lambda v: f"{v * 1e9:,.0f} ns")
    row("ratio cold hop / JSON round trip", "ratio_to_json_roundtrip", ratio)
    row("ratio warm hop / JSON round trip", "warm_ratio_to_json_roundtrip", ratio)
    say()
    say("  (*) request id, START/END/REPORT lines, peak-memory read, new FunctionRuntime (cold), Task dispatch,"
        " Choice (json.loads + rules), StepResult, observer")
    row("cross-check: (min total 100 - min total 1) / 99", "differential_per_hop_s")
    row("  same, minus the per-function planning", "differential_minus_planning_per_hop_s")
    for k in SIZES:
        t100, t1 = r[k]["total_100_s"], r[k]["total_1_s"]
        say(f"  {k}: run_pipeline total, 100 functions {ms(t100['median'])} (min {ms(t100['min'])}), 1 function "
            f"{ms(t1['median'])} (min {ms(t1['min'])}); with 1 function, before the hop {ms(r[k]['before_first_hop_1_s'])}"
            f" (plan + moto start), after it {ms(r[k]['after_last_hop_1_s'])} (store save + moto stop)")
        if "warm_pass_error" in r[k]:
            say(f"  {k}: warm pass unavailable: {r[k]['warm_pass_error']}")
    prof = r.get("profile")
    if prof:
        w, h = prof["whole"], prof["hops"]
        say()
        say(f"  cProfile of one run_pipeline of bench/hops, 1 KB (profiled {ms(w['total_s'])}; cProfile inflates small calls,"
            " read the shares, not the absolute figures)")
        say(f"    {'cumulative':>12} {'calls':>7} {'per call':>11}  where")
        for x in w["watched"]:
            say(f"    {ms(x['cumtime_s']):>12} {x['ncalls']:>7} {us(x['cumtime_s'] / x['ncalls']):>11}  {x['label']}")
        say(f"    top {len(w['top_tottime'])} by own time, whole run:")
        for t in w["top_tottime"]:
            say(f"    {ms(t['tottime_s']):>12} {t['ncalls']:>7} {us(t['tottime_s'] / t['ncalls']):>11}  "
                f"{_short(t['file'])}:{t['line']}({t['function']})")
        say(f"    top {len(h['top_tottime'])} by own time, inside the hop span only ({ms(h['total_s'])} profiled):")
        for t in h["top_tottime"]:
            say(f"    {ms(t['tottime_s']):>12} {t['ncalls']:>7} {us(t['tottime_s'] / t['ncalls']):>11}  "
                f"{_short(t['file'])}:{t['line']}({t['function']})")


# == 3. peer: python-lambda-local ==============================================================

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


def bench_peer(quick: bool) -> dict[str, Any]:
    problem = ensure_peer()
    if problem:
        return {"error": problem}
    params = {"sizes": SIZES, "n_warm": 2000 if quick else 10000, "n_cold": 100 if quick else 300,
              "n_fork": 60 if quick else 300, "n_cli_path": 40 if quick else 150, "n_process": 3 if quick else 7}
    say("  in a fresh worker process (only sim.runtime and lambda_local imported) ...")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--peer-worker", json.dumps(params)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peer_worker(params: dict[str, Any]) -> None:
    """Runs in its own process, so that fork() costs what it costs in a small process and nothing
    of moto/pydantic is loaded. Prints one JSON line."""
    import multiprocessing

    from dorc_sim.runtime import FunctionRuntime, FunctionSpec

    tmp = Path(tempfile.mkdtemp(prefix="dorc-bench-peer-"))
    try:
        fdir = tmp / "fn"
        fdir.mkdir()
        (fdir / "lambda.py").write_text(HANDLER_SOURCE)
        spec = FunctionSpec(name="bench-noop", source_dir=str(fdir), timeout=3.0)
        out: dict[str, Any] = {"start_method": multiprocessing.get_start_method()}
        try:
            from dorc_sim.runtime import lambda_environment

            out["env_vars"] = len(lambda_environment(spec, "stream"))
        except Exception:
            pass

        def timed(fn, n):
            samples = []
            gc.collect()
            for _ in range(n):
                t0 = time.perf_counter_ns()
                fn()
                samples.append((time.perf_counter_ns() - t0) / 1e9)
            return summarize(samples) | {"samples": None}

        # -- dorc first, before lambda_local configures the root logger --------------------
        for label, size in params["sizes"].items():
            event = event_of(size)
            event_json = json.dumps(event).encode()
            rt = FunctionRuntime(spec)
            first = rt.invoke(event_json)
            assert first.ok and first.payload == event_json, first.error
            n_warm = params["n_warm"] if size < 10_000 else max(200, params["n_warm"] // 20)
            r = {"first_invoke_s": first.duration_ms / 1000, "first_init_s": (first.init_duration_ms or 0) / 1000}
            r["dorc_warm"] = timed(lambda: rt.invoke(event_json), n_warm)
            r["dorc_cold"] = timed(lambda: FunctionRuntime(spec).invoke(event_json), params["n_cold"])
            out[label] = r

        # -- python-lambda-local ----------------------------------------------------------
        # lambda_local/__init__.py defines a function ``main`` that hides the submodule of that name
        llm = importlib.import_module("lambda_local.main")
        from lambda_local.context import Context

        import logging
        devnull = open(os.devnull, "w")
        for h in logging.getLogger().handlers:  # its basicConfig(stream=sys.stdout): keep the
            if isinstance(h, logging.StreamHandler):  # formatting work, drop the terminal
                h.setStream(devnull)
        mspec = importlib.util.spec_from_file_location("bench_peer_noop", fdir / "lambda.py")
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
        import argparse as _ap

        for label, size in params["sizes"].items():
            event = event_of(size)
            r = out[label]
            res, err = llm.call(mod.handler, event, Context(3))
            assert err is None and res == event, (res, err)
            r["peer_call"] = timed(lambda: llm.call(mod.handler, event, Context(3)), params["n_fork"])
            ev_file = tmp / f"event-{label}.json"
            ev_file.write_text(json.dumps(event))
            args = _ap.Namespace(file=str(fdir / "lambda.py"), event=str(ev_file), library=None, function="handler",
                                 timeout=3, arn_string="", version_name="", environment_variables=None)
            r["peer_run_path"] = timed(lambda: llm.run(args), params["n_cli_path"])
            r["ratio_call_vs_dorc_warm"] = r["peer_call"]["median"] / r["dorc_warm"]["median"]
            r["ratio_run_path_vs_dorc_cold"] = r["peer_run_path"]["median"] / r["dorc_cold"]["median"]
        # Its command line, once per process (1 KB only): what a user of the CLI waits for.
        exe = Path(sys.executable).parent / "python-lambda-local"
        cli = [str(exe)] if exe.is_file() else [sys.executable, "-m", "lambda_local"]
        cmd = [*cli, "-f", "handler", "-t", "3", str(fdir / "lambda.py"), str(tmp / "event-1KB.json")]
        out["peer_cli_process"] = time_process(cmd, params["n_process"]) | {"command": "python-lambda-local -f handler -t 3 lambda.py event.json"}
        out["python_pass"] = time_process([sys.executable, "-c", "pass"], params["n_process"])
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report_peer(r: dict[str, Any]) -> None:
    if "error" in r:
        say(f"  skipped: {r['error']}")
        return
    say(f"  multiprocessing start method: {r['start_method']}")
    say("  what each does per invocation:")
    say(f"    dorc FunctionRuntime.invoke (warm): sets {r.get('env_vars', '?')} Lambda env vars and restores them, swaps"
        " stdout/stderr,")
    say("      adds a log handler, json.loads the event bytes, puts the function's folder on sys.path and diffs")
    say("      sys.modules around the call, arms SIGALRM, calls, json.dumps the result, reads peak memory for the")
    say("      REPORT line; imports lambda.py only on the first call of a runtime (cold start).")
    say("    dorc, new FunctionRuntime per invocation (cold): the same plus the import of lambda.py every time.")
    say("    python-lambda-local call(func, event, ctx): forks a process per invocation (multiprocessing.Process")
    say("      + Queue), runs the already-imported func in the child, pickles the result back; logs event and")
    say("      result at INFO (its basicConfig handler, pointed at /dev/null here). No JSON: the event is a Python object.")
    say("    python-lambda-local run(args) (what its CLI calls): the same, plus reads the event file and imports")
    say("      lambda.py in the child every invocation (a cold start each time).")
    say(f"  {'':44}" + "".join(f"{k:>14}" for k in SIZES))

    def row(label, fn):
        say(f"  {label:44}" + "".join(f"{fn(r[k]):>14}" for k in SIZES))

    row("dorc invoke, warm (median)", lambda x: us(x["dorc_warm"]["median"]))
    row("  min", lambda x: us(x["dorc_warm"]["min"]))
    row("dorc invoke, new runtime each time (cold)", lambda x: us(x["dorc_cold"]["median"]))
    row("python-lambda-local call() (median)", lambda x: us(x["peer_call"]["median"]))
    row("  min", lambda x: us(x["peer_call"]["min"]))
    row("python-lambda-local run(args), cold", lambda x: us(x["peer_run_path"]["median"]))
    row("ratio call() / dorc warm", lambda x: f"{x['ratio_call_vs_dorc_warm']:,.1f}x")
    row("ratio run(args) / dorc cold", lambda x: f"{x['ratio_run_path_vs_dorc_cold']:,.1f}x")
    row("dorc first invoke (import + call)", lambda x: us(x["first_invoke_s"]))
    p, py = r["peer_cli_process"], r["python_pass"]
    say(f"  python-lambda-local CLI, one process per invocation (1 KB): median {ms(p['median'])} "
        f"(min {ms(p['min'])}); python -c pass {ms(py['median'])}")


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
                                ("warm hop (function already imported)", "warm_per_hop_s", us),
                                ("one JSON round trip (floor)", "json_roundtrip_s", us),
                                ("cold hop / JSON round trip", "ratio_to_json_roundtrip", lambda v: f"{v:,.1f}x"),
                                ("warm hop / JSON round trip", "warm_ratio_to_json_roundtrip", lambda v: f"{v:,.1f}x")):
            vals = [fmt(h[k][key]) if isinstance(h[k].get(key), (int, float)) else "-" for k in SIZES]
            lines.append(f"| {label} | " + " | ".join(vals) + " |")
        lines += ["", "Per hop = span from the first step's start to the last step's end, over the steps "
                      "(observer timestamps), minus the handler's own time; planning and moto start/stop are outside it.", ""]
    p = results.get("peer")
    if p and "error" not in p:
        lines += ["| per invocation, trivial handler | " + " | ".join(SIZES) + " |", "|---|" + "---:|" * len(SIZES)]
        for label, fn in (("dorc `FunctionRuntime.invoke`, warm", lambda x: us(x["dorc_warm"]["median"])),
                          ("python-lambda-local `call()` (fork per call)", lambda x: us(x["peer_call"]["median"])),
                          ("ratio", lambda x: f"{x['ratio_call_vs_dorc_warm']:,.1f}x"),
                          ("dorc, new runtime per call (imports each time)", lambda x: us(x["dorc_cold"]["median"])),
                          ("python-lambda-local `run()` (imports each time)", lambda x: us(x["peer_run_path"]["median"])),
                          ("ratio", lambda x: f"{x['ratio_run_path_vs_dorc_cold']:,.1f}x")):
            lines.append(f"| {label} | " + " | ".join(fn(p[k]) for k in SIZES) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmarks of dorc's in-process target (see the module docstring).")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per measurement (default 7; --quick: 3)")
    ap.add_argument("--quick", action="store_true", help="fewer runs and invocations")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (the report goes to stderr)")
    ap.add_argument("--only", choices=("e2e", "hops", "peer"), action="append", help="run only these parts")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile of the 100-hop run")
    ap.add_argument("--peer-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer_worker:
        peer_worker(json.loads(args.peer_worker))
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
                say("\n== 3. peer: python-lambda-local vs dorc's FunctionRuntime, per invocation ==")
                results["peer"] = bench_peer(args.quick)
                report_peer(results["peer"])
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
