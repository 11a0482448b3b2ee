#!/usr/bin/env python
"""Benchmarks of dorc's local target (``--local``: every function in its own sandboxed worker
process), through dorc's public surface only.

    python bench/bench_local.py                          # 7 timed rounds after 1 warm-up
    python bench/bench_local.py --baseline /tmp/old-dorc # the same, paired with another checkout
    python bench/bench_local.py --quick                  # fewer runs, chains of 1 and 10 (a smoke test)
    python bench/bench_local.py --chains 1,10,100,1000   # longer chains (the default is 1,10,100)
    python bench/bench_local.py --json > r.json          # the tables go to stderr, the JSON to stdout

Two measurements:

1. whole processes, in rounds (each round runs every command once, so a change in the machine's
   load hits all of them alike): ``dorc run census raw --local -q`` and ``dorc invoke`` of one
   trivial function, on copies of the config in a temporary folder (the user's ``.dorc`` is never
   touched); with ``--baseline PATH`` the same two commands of the dorc checked out at PATH run
   right after, with the same interpreter and site-packages (``PYTHONPATH`` points at PATH's
   ``dorc`` and ``sim``), paired A B A B, with the ratio. Next to them the floors: ``python -c
   pass``; boto3 + moto putting one object, as the floor was measured so far and as dorc exits
   (``gc.freeze()``: the "equal floor"); python-lambda-local running one trivial handler;
   ``dorc --help`` and ``dorc validate``. Then census raw once more in-process per tree
   (``dorc.api.run_pipeline``) to split each step: the wait for its worker, Init, Duration.
   Every timed ``dorc`` runs cold (``DORC_DAEMON=off``) except the warm row: the same census run
   served by this tree's ``dorc daemon``, started in a folder of the bench's own and stopped by
   its PID when the rounds end.
2. per hop: generated chains of N trivial functions (``return event``; N = 1, 10, 100), run with
   ``dorc.api.run_pipeline`` in a fresh process per tree. Each hop is split with an observer's
   timestamps and the step's REPORT line (see ``HopClock``); the cost of a hop over a 1-function
   pipeline is the difference of whole ``run_pipeline`` times.

Only public parts of dorc are used: the ``dorc`` command, ``dorc.api`` (``run_pipeline``),
``dorc.find_project``, the observer protocol and the ``RunResult``/``StepResult`` it returns,
including each step's REPORT line. The worker's own moments (process spawned, ready) are not
public: the wait a hop sees is what is left of the worker's start-up when the hop begins (the
next function's worker is started while the current one runs).

Nothing outside temporary folders is written. Only the standard library, dorc and
python-lambda-local (installed with pip when missing) are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib  # beside this script
from benchlib import BenchError, loadavg, process_env, say, set_output, summarize

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pipeline-config"

CHAINS = (1, 10, 100)
SIZES = {"1KB": 1024, "200KB": 200 * 1024}
PEER_PACKAGE = "python-lambda-local==0.1.13"
HANDLER_SOURCE = "def handler(event, context):\n    return event\n"
RUNTIME = "python3.12"  # the runtime of the generated functions and census (dorc's default)
HOP_TARGET_S = 0.003  # issue 10: a 100-function chain at most 3 ms per hop over a 1-function pipeline


# -- small helpers -----------------------------------------------------------------------------

def event_of(size: int) -> dict[str, Any]:
    """``{"statusCode": 200, "body": "<padding>"}`` whose ``json.dumps`` is ``size`` bytes."""
    empty = len(json.dumps({"statusCode": 200, "body": ""}))
    text = "the quick brown fox jumps over the lazy dog "
    n = max(0, size - empty)
    return {"statusCode": 200, "body": (text * (n // len(text) + 1))[:n]}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def x(v: float) -> str:
    return f"{v:,.2f}x"


def machine() -> dict[str, Any]:
    return benchlib.machine(("dorc", "moto", "boto3", "python-lambda-local"))


# -- the trees compared ------------------------------------------------------------------------

def trees(baseline: str | None, workdir: Path) -> dict[str, dict[str, Any]]:
    """``{"this": {...}, "baseline": {...}}``: the environment each tree's processes run with.
    The baseline is another checkout of dorc, imported first through ``PYTHONPATH`` (its ``sim``
    folder as ``dorc_sim``, as the package installs it); each is checked to import from where it
    should."""
    out = {"this": {"label": "this tree", "env": process_env(), "root": str(REPO)}}
    if baseline:
        root = Path(baseline).resolve()
        if not (root / "dorc" / "__init__.py").is_file() or not (root / "sim" / "__init__.py").is_file():
            raise BenchError(f"--baseline {baseline}: no dorc/ and sim/ there; give a checkout of dorc "
                             "(e.g. git worktree add /tmp/dorc-base <commit>)")
        shim = workdir / "baseline-path"
        shim.mkdir()
        (shim / "dorc").symlink_to(root / "dorc")
        (shim / "dorc_sim").symlink_to(root / "sim")
        env = process_env() | {"PYTHONPATH": str(shim)}
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        out["baseline"] = {"label": f"baseline {commit.stdout.strip() or root.name}", "env": env, "root": str(root),
                           "commit": commit.stdout.strip() or None}
    for tree in out.values():
        probe = subprocess.run([sys.executable, "-c", "import dorc, dorc_sim; print(dorc.__file__); print(dorc_sim.__file__)"],
                               capture_output=True, text=True, env=tree["env"], cwd=str(workdir))
        files = [str(Path(f).resolve()) for f in probe.stdout.split()]
        if probe.returncode != 0 or not all(f.startswith(tree["root"] + os.sep) for f in files):
            raise BenchError(f"{tree['label']}: dorc does not import from {tree['root']}: {probe.stdout} {probe.stderr[-500:]}")
    return out


# == 1. whole processes ===========================================================================

MOTO_FLOOR = """\
import boto3
from moto import mock_aws

m = mock_aws(); m.start()
s3 = boto3.client("s3", region_name="us-east-1")
s3.create_bucket(Bucket="floor")
s3.put_object(Bucket="floor", Key="k", Body=b"x")
m.stop()
"""
MOTO_FLOOR_EQUAL = MOTO_FLOOR + "import gc; gc.freeze()  # as the dorc executable exits\n"


def write_hop_config(root: Path, chains: tuple[int, ...]) -> None:
    """``bench/c<N>``: f0001 -> ... -> f<N>, trivial handlers, 1 function for N=1."""
    root.mkdir(parents=True)
    (root / "dorc.toml").write_text('[project]\nname = "bench"\nregion = "us-east-1"\n')
    for n in chains:
        layer_dir = root / "src" / "bench" / f"c{n}"
        lines = []
        for i in range(1, n + 1):
            name = f"f{i:04d}"
            nxt = f'"f{i + 1:04d}"' if i < n else "None"
            lines.append(f'        Function(name="{name}", timeout=60, memory=128, next_function={nxt}),')
            fdir = layer_dir / "src" / name
            fdir.mkdir(parents=True)
            (fdir / "lambda.py").write_text(HANDLER_SOURCE)
        (layer_dir / "__main__.py").write_text(
            "from dorc import CreatePipeline, Function, PipelineDefinition, load_config\n\n"
            "config = load_config(__file__)\n"
            "definition = PipelineDefinition(\n"
            f'    file_path=__file__, description="{n} chained trivial functions",\n'
            "    functions=[\n" + "\n".join(lines) + "\n    ],\n)\n"
            "CreatePipeline(config, definition).apply()\n"
        )


def ensure_peer() -> str | None:
    """python-lambda-local importable, installed with pip if missing; None when it cannot be."""
    import importlib.util

    if importlib.util.find_spec("lambda_local") is not None:
        return None
    say(f"  installing {PEER_PACKAGE} (pip) ...")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", PEER_PACKAGE], capture_output=True, text=True)
    importlib.invalidate_caches()
    if proc.returncode != 0 or importlib.util.find_spec("lambda_local") is None:
        return f"could not install {PEER_PACKAGE}: {proc.stderr.strip()[-500:]}"
    return None


def process_commands(tr: dict[str, dict[str, Any]], work: Path, hops: Path) -> list[dict[str, Any]]:
    """What each round runs, in order: ``key``, ``label``, ``cmd``, ``env``, ``cwd``."""
    dorc = benchlib.dorc_command()
    event = work / "event-1KB.json"
    event.write_text(json.dumps(event_of(SIZES["1KB"])))
    out = []
    for name, tree in tr.items():  # this tree, then the baseline: A B in every round
        repo = work / f"census-{name}"
        shutil.copytree(CONFIG, repo, ignore=shutil.ignore_patterns(".dorc", "__pycache__"))
        tree["census_copy"] = str(repo)
    for what in ("run", "invoke"):
        for name, tree in tr.items():
            if what == "run":
                cmd = [*dorc, "run", "census", "raw", "--local", "-q", "--config-repo", tree["census_copy"]]
                label = f"`dorc run census raw --local -q` ({tree['label']})"
            else:
                cmd = [*dorc, "invoke", "bench", "c1", "f0001", "--event", f"@{event}", "--config-repo",
                       str(hops / name)]
                label = f"`dorc invoke` of one trivial function ({tree['label']})"
            out.append({"key": f"{what}_{name}", "label": label, "cmd": cmd, "env": tree["env"], "cwd": str(work)})
    if "warm_env" in tr["this"]:  # the same census run, served by this tree's `dorc daemon`
        out.insert(1, {"key": "run_warm", "label": "`dorc run census raw --local -q` (this tree, warm: dorc daemon)",
                       "cmd": [*dorc, "run", "census", "raw", "--local", "-q", "--config-repo", tr["this"]["census_copy"]],
                       "env": tr["this"]["warm_env"], "cwd": str(work)})
    env = process_env()
    out += [
        {"key": "python_pass", "label": "floor: `python -c pass`", "cmd": [sys.executable, "-c", "pass"]},
        {"key": "boto3_moto", "label": "floor: boto3 + moto, bucket + put object (as measured so far)",
         "cmd": [sys.executable, "-c", MOTO_FLOOR]},
        {"key": "boto3_moto_equal", "label": "equal floor: the same, exiting as dorc does (`gc.freeze()`)",
         "cmd": [sys.executable, "-c", MOTO_FLOOR_EQUAL]},
    ]
    out += runtime_floors(env)
    problem = ensure_peer()
    if problem:
        say(f"  python-lambda-local left out: {problem}")
    else:
        exe = Path(sys.executable).parent / "python-lambda-local"
        cli = [str(exe)] if exe.is_file() else [sys.executable, "-m", "lambda_local"]
        out.append({"key": "peer", "label": "python-lambda-local, one trivial handler (1 KB event)",
                    "cmd": [*cli, "-f", "handler", "-t", "3", str(hops / "this/src/bench/c1/src/f0001/lambda.py"), str(event)]})
    out += [
        {"key": "help", "label": "`dorc --help`", "cmd": [*dorc, "--help"]},
        {"key": "validate", "label": "`dorc validate` (census copy)",
         "cmd": [*dorc, "validate", "--config-repo", tr["this"]["census_copy"]]},
    ]
    for c in out:
        c.setdefault("env", env)
        c.setdefault("cwd", str(work))
    return out


SDK_FLOOR = """\
import sys
sys.path.insert(0, sys.argv[1])  # the AWS SDK the sandbox workers get (dorc doctor names the folder)
import boto3
boto3.client("s3", region_name="us-east-1")
"""


def runtime_floors(env: dict[str, str]) -> list[dict[str, Any]]:
    """What every sandboxed function pays at least: its runtime's interpreter started bare, and
    (when its handler uses AWS) importing boto3 and making a client. The runtime's Python and
    the SDK folder are read from ``dorc doctor --json``; left out when it does not name them."""
    proc = subprocess.run([*benchlib.dorc_command(), "doctor", "--json"], capture_output=True, text=True, env=env)
    try:
        checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    except (ValueError, KeyError, TypeError):
        say("  runtime floors left out: `dorc doctor --json` gave no checks")
        return []
    python = re.search(r" at (/\S+)", (checks.get(RUNTIME) or {}).get("detail") or "")
    sdk = re.search(r"\((/[^()]+)\)", (checks.get("AWS SDK") or {}).get("detail") or "")  # its folder
    if not python:
        say(f"  runtime floors left out: `dorc doctor` names no {RUNTIME}")
        return []
    out = [{"key": "runtime_pass", "label": f"floor: {RUNTIME}'s Python started bare (`-I -S -c pass`)",
            "cmd": [python.group(1), "-I", "-S", "-c", "pass"]}]
    if sdk:
        out.append({"key": "runtime_boto3", "label": f"floor: {RUNTIME}'s Python, import boto3 + one S3 client",
                    "cmd": [python.group(1), "-I", "-S", "-c", SDK_FLOOR, sdk.group(1)]})
    return out


def run_once(c: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(c["cmd"], capture_output=True, env=c["env"], cwd=c["cwd"])
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(c['cmd'])} exited {proc.returncode}\n--- stdout\n{proc.stdout.decode()[-2000:]}"
                         f"\n--- stderr\n{proc.stderr.decode()[-2000:]}")
    if c["key"] == "run_warm" and b"daemon is stale" in proc.stderr:
        raise BenchError("the warm run did not use the daemon (it is stale): " + proc.stderr.decode()[-500:])
    return dt


class WarmDaemon:
    """This tree's ``dorc daemon``, in a folder of the bench's own (``DORC_DAEMON_DIR``), for the
    warm row; stopped by its PID (``dorc daemon stop``) when the rounds end. Left out, with the
    reason, where it cannot start (an older dorc, no Linux namespaces)."""

    def __init__(self, tree: dict[str, Any], work: Path):
        self.env = {**tree["env"], "DORC_DAEMON_DIR": str(work / "daemon")}
        self.env.pop("DORC_DAEMON", None)
        self.started = False
        start = subprocess.run([*benchlib.dorc_command(), "daemon", "start"], capture_output=True, text=True,
                               env=self.env, cwd=str(work))
        if start.returncode != 0:
            say(f"  warm row left out: `dorc daemon start` exited {start.returncode}: {(start.stderr or start.stdout)[-300:]}")
            return
        self.started = True
        tree["warm_env"] = self.env

    def stop(self) -> None:
        if self.started:
            subprocess.run([*benchlib.dorc_command(), "daemon", "stop"], capture_output=True, env=self.env)
            self.started = False


def bench_processes(runs: int, tr: dict[str, dict[str, Any]], work: Path, hops: Path) -> dict[str, Any]:
    daemon = WarmDaemon(tr["this"], work)
    try:
        commands = process_commands(tr, work, hops)
        say(f"  {len(commands)} commands, {runs} rounds after 1 warm-up round (each round runs each command once) ...")
        samples: dict[str, list[float]] = {c["key"]: [] for c in commands}
        loads = []
        for i in range(runs + 1):
            for c in commands:
                dt = run_once(c)
                if i:
                    samples[c["key"]].append(dt)
            loads.append(loadavg())
            if i:
                say(f"    round {i}/{runs}: " + ", ".join(f"{c['key']} {dt * 1000:.0f}" for c, dt in
                                                         ((c, samples[c["key"]][-1]) for c in commands)) + " ms")
    finally:
        daemon.stop()
    return _process_figures(commands, samples, loads, tr)


def _process_figures(commands, samples, loads, tr) -> dict[str, Any]:
    out: dict[str, Any] = {"commands": {c["key"]: {"label": c["label"], "cmd": c["cmd"],
                                                   "pythonpath": c["env"].get("PYTHONPATH")} for c in commands},
                           "times": {k: summarize(v) for k, v in samples.items()}, "loadavg_rounds": loads}
    if "baseline" in tr:
        for what in ("run", "invoke"):
            a, b = samples[f"{what}_this"], samples[f"{what}_baseline"]
            pairs = [p / q for p, q in zip(a, b)]
            out[f"paired_{what}"] = {"median_of_ratios": statistics.median(pairs), "ratios": pairs,
                                     "ratio_of_medians": statistics.median(a) / statistics.median(b),
                                     "difference_s": statistics.median(a) - statistics.median(b)}
    return out


def report_processes(r: dict[str, Any]) -> None:
    t = r["times"]
    say(f"  {'':80} {'median':>10} {'min':>10} {'max':>10}")
    for key, c in r["commands"].items():
        s = t[key]
        say(f"  {c['label'][:80]:80} {ms(s['median']):>10} {ms(s['min']):>10} {ms(s['max']):>10}")
    run = t["run_this"]["median"]
    say(f"  census raw (this tree) / floor as measured so far: {x(run / t['boto3_moto']['median'])}; / equal floor "
        f"(gc.freeze): {x(run / t['boto3_moto_equal']['median'])} (issue 10's cold target: at most 1.2x the equal floor)")
    if "peer" in t:
        say(f"  census raw / python-lambda-local process: {x(run / t['peer']['median'])}; dorc invoke of one trivial "
            f"function / python-lambda-local: {x(t['invoke_this']['median'] / t['peer']['median'])}")
    if "run_warm" in t:
        warm = t["run_warm"]["median"]
        peer = f"; / python-lambda-local: {x(warm / t['peer']['median'])}" if "peer" in t else ""
        say(f"  census raw warm (dorc daemon) / equal floor: {x(warm / t['boto3_moto_equal']['median'])} (issue 10's warm "
            f"target: at most 0.5x); / cold: {x(warm / run)}{peer}")
    for what, label in (("run", "census raw"), ("invoke", "dorc invoke, one function")):
        p = r.get(f"paired_{what}")
        if p:
            say(f"  paired with the baseline, {label}: this / baseline = {x(p['median_of_ratios'])} (median of the "
                f"{len(p['ratios'])} round ratios; ratio of medians {x(p['ratio_of_medians'])}, "
                f"{'+' if p['difference_s'] >= 0 else ''}{ms(p['difference_s'])})")


# == 2. per hop (and census raw split per step), in a worker process per tree ====================

_REPORT = re.compile(r"^REPORT RequestId: .*?Duration: ([0-9.]+) ms")
_INIT = re.compile(r"Init Duration: ([0-9.]+) ms")


class HopClock:
    """An observer that takes timestamps only: each step's start, the moment its START line
    reaches dorc (the worker got the event), its REPORT line's Init Duration and Duration, and
    its end. One ``perf_counter`` call per event."""

    def __init__(self):
        self.started: list[float] = []
        self.start_line: list[float | None] = []
        self.init_s: list[float] = []
        self.duration_s: list[float] = []
        self.finished: list[float] = []

    def progress(self, message):
        pass

    def engine_output(self, text):
        pass

    def step_started(self, layer, function, deployed_name):
        self.started.append(time.perf_counter())
        self.start_line.append(None)
        self.init_s.append(0.0)
        self.duration_s.append(0.0)

    def log(self, line):
        if not self.started:
            return
        if line.startswith("START RequestId:") and self.start_line[-1] is None:
            self.start_line[-1] = time.perf_counter()
        elif line.startswith("REPORT RequestId:"):
            m = _REPORT.match(line)
            if m:
                self.duration_s[-1] = float(m.group(1)) / 1000
            m = _INIT.search(line)
            if m:
                self.init_s[-1] = float(m.group(1)) / 1000

    def step_finished(self, step):
        self.finished.append(time.perf_counter())

    def split(self) -> dict[str, Any]:
        """Each hop: ``gap`` (dorc between the previous step's end and this one's start: the
        Choice, the Task dispatch, starting the next function's worker), ``wait`` (step start to
        START: what is left of this worker's start-up, the event's trip to it), ``init`` and
        ``duration`` (the REPORT line), ``after`` (the rest: log lines and REPORT to dorc, the
        result back, the StepResult). Their sum over the hops is the span first start -> last end."""
        n = len(self.finished)
        hops = []
        for i in range(n):
            seen = self.start_line[i] if self.start_line[i] is not None else self.started[i]
            gap = self.started[i] - self.finished[i - 1] if i else 0.0
            inside = self.finished[i] - seen
            hops.append({"gap": gap, "wait": seen - self.started[i], "init": self.init_s[i],
                         "duration": self.duration_s[i], "after": inside - self.init_s[i] - self.duration_s[i]})
        return {"hops": hops, "span": self.finished[-1] - self.started[0]}


def chain_worker(params: dict[str, Any]) -> None:
    """One tree's side (runs with that tree's ``PYTHONPATH``): the chains, interleaved, then
    census raw in-process. Prints one JSON line."""
    import gc

    from dorc import api, find_project

    def one(project, instance, layer, event_json, n=None):
        clock = HopClock()
        gc.collect()
        t0 = time.perf_counter()
        res = api.run_pipeline(instance, layer, event=event_json, project=project, observer=clock, record=False)
        t1 = time.perf_counter()
        if not res.succeeded or (n is not None and (len(res.steps) != n or res.output_json != event_json)):
            raise BenchError(f"{instance}/{layer}: {res.status} {res.error}")
        sp = clock.split()
        return {"total": t1 - t0, "pipeline": res.duration_ms / 1000, "before": clock.started[0] - t0,
                "after_last": t1 - clock.finished[-1], "span": sp["span"], "hops": sp["hops"],
                "functions": [f"{s.layer.split('/')[-1]}/{s.function}" for s in res.steps], "sandbox": getattr(res, "sandbox", None)}

    project = find_project(params["hops"])
    events = {label: json.dumps(event_of(size)).encode() for label, size in params["sizes"].items()}
    longest = max(params["chains"])
    jobs = [(label, n) for label in events for n in params["chains"] if label == "1KB" or n in (1, longest)]
    for label, n in jobs:  # warm-up: the task roots are extracted, the bytecode of dorc's side warm
        one(project, "bench", f"c{n}", events[label], n)
    out: dict[str, Any] = {"chains": {label: {} for label in events}}
    for _ in range(params["runs"]):  # interleaved: a change in the machine's load hits all alike
        for label, n in jobs:
            r = one(project, "bench", f"c{n}", events[label], n)
            if n > 1:  # the hops' split is kept as sums, not one row per function
                r["hops"] = hop_sums(r["hops"])
            out["chains"][label].setdefault(str(n), []).append(r)
    census = find_project(params["census"])
    one(census, "census", "raw", None)  # warm-up
    out["census"] = [one(census, "census", "raw", None) for _ in range(params["census_runs"])]
    print(json.dumps(out))


PARTS = ("gap", "wait", "init", "duration", "after")


def hop_sums(hops: list[dict[str, float]]) -> dict[str, Any]:
    """The hops of a run, summed per part; the first hop (its worker started just before it, so
    its wait is the worker's start-up) apart."""
    rest = hops[1:]
    return {"first": hops[0], "rest_sum": {p: sum(h[p] for h in rest) for p in PARTS}, "n": len(hops)}


def run_chain_worker(tree: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "chain", json.dumps(params)],
                          capture_output=True, text=True, env=tree["env"], cwd=params["cwd"])
    if proc.returncode != 0:
        raise BenchError(f"{tree['label']}: the chain worker exited {proc.returncode}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def hop_figures(runs: dict[str, list], ones: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-hop medians over the runs of one chain length; the cost over a 1-function pipeline."""
    out: dict[str, Any] = {}
    for key, rs in runs.items():
        n = int(key)

        def med(f, rs=rs):
            return statistics.median(f(r) for r in rs)

        row: dict[str, Any] = {"n": n, "total": summarize([r["total"] for r in rs]),
                               "per_hop": med(lambda r, n=n: r["span"] / n),
                               "pipeline": med(lambda r: r["pipeline"]), "before": med(lambda r: r["before"]),
                               "after_last": med(lambda r: r["after_last"])}
        if n == 1:
            row["first"] = {p: med(lambda r, p=p: r["hops"][0][p]) for p in PARTS}
        else:
            row["first"] = {p: med(lambda r, p=p: r["hops"]["first"][p]) for p in PARTS}
            row["rest"] = {p: med(lambda r, p=p, n=n: r["hops"]["rest_sum"][p] / (n - 1)) for p in PARTS}
            row["warm_estimate"] = row["rest"]["gap"] + row["rest"]["duration"] + row["rest"]["after"]
            one_total = [r["total"] for r in ones]
            row["over_one_median"] = (row["total"]["median"] - statistics.median(one_total)) / (n - 1)
            row["over_one_min"] = (row["total"]["min"] - min(one_total)) / (n - 1)
        out[key] = row
    return out


def census_figures(census: list[dict[str, Any]]) -> dict[str, Any]:
    steps = []
    for i, fn in enumerate(census[0]["functions"]):
        steps.append({"function": fn, **{p: statistics.median(r["hops"][i][p] for r in census) for p in PARTS}})
    return {"total": summarize([r["total"] for r in census]), "pipeline": statistics.median(r["pipeline"] for r in census),
            "before": statistics.median(r["before"] for r in census), "steps": steps, "sandbox": census[0]["sandbox"]}


def bench_hops(runs: int, tr: dict[str, dict[str, Any]], work: Path, hops: Path, chains: tuple[int, ...],
               quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"chains": list(chains)}
    for name, tree in tr.items():
        params = {"hops": str(hops / name), "census": tree["census_copy"], "chains": list(chains), "runs": runs,
                  "sizes": {"1KB": SIZES["1KB"]} if quick else SIZES, "census_runs": max(3, runs // 2),
                  "cwd": str(work)}
        say(f"  {tree['label']}: chains {', '.join(map(str, chains))} x {runs} runs"
            f"{'' if quick else ' (1 KB; 200 KB for the shortest and longest)'}, census raw x {params['census_runs']},"
            " in a fresh process ...")
        t0 = time.perf_counter()
        raw = run_chain_worker(tree, params)
        r: dict[str, Any] = {"wall_s": time.perf_counter() - t0, "sizes": {}}
        for label, by_n in raw["chains"].items():
            r["sizes"][label] = hop_figures(by_n, by_n["1"])
        r["census"] = census_figures(raw["census"])
        out[name] = r
    return out


def report_hops(r: dict[str, Any], tr: dict[str, dict[str, Any]]) -> None:
    say("  method: chains of N functions that return their event, run with dorc.api.run_pipeline(record=False);"
        " an observer stamps each step's")
    say("  start, the arrival of its START line and its end; Init Duration and Duration come from its REPORT line."
        " Each hop splits into")
    say("    gap      dorc between two steps: the Choice, the Task dispatch, starting the NEXT function's worker"
        " (Popen), retiring an old one")
    say("    wait     step start -> START line: what is left of this worker's start-up (interpreter, namespaces,"
        " the runtime's import), the event's trip")
    say("    init     Init Duration: importing the function's lambda.py in its worker (boto3 too, if it imports it)")
    say("    duration Duration: the handler's call in the worker")
    say("    after    the rest: log lines, END/REPORT and the result back over the pipe, the StepResult")
    say("  per hop = (last step end - first step start) / N; over a 1-function pipeline = (median total N - median"
        " total 1) / (N - 1).")
    say("  warm estimate = gap + duration + after of hops 2..N: a hop whose function's worker is running with its"
        " module imported (not reachable")
    say("  through the public API: a definition cannot invoke a function twice); the event's trip to a waiting"
        " worker (in 'wait') is left out.")
    say("  ('after' can be slightly negative: the START line is stamped when dorc reads it, the REPORT's durations by"
        " the worker's clock.")
    if "baseline" in r:
        say("  the baseline's runtime counted the import inside Duration (fixed by issue 8), so its 'after' is"
            " negative by about its init.)")
    else:
        say("  )")
    for name, tree in tr.items():
        if name not in r:
            continue
        t = r[name]
        say(f"\n  {tree['label']} ({ms(t['wall_s'])} for this part)")
        say(f"    {'':42}" + "".join(f"{p:>10}" for p in ("per hop", "over 1", "gap", "wait", "init", "duration",
                                                              "after", "warm est.", "total")))
        for size, rows in t["sizes"].items():
            for row in rows.values():
                n = row["n"]
                part = row.get("rest", row["first"])
                cells = [ms(row["per_hop"]), ms(row["over_one_median"]) if n > 1 else "-",
                         *(ms(part[p]) for p in PARTS), ms(row["warm_estimate"]) if n > 1 else "-",
                         ms(row["total"]["median"])]
                say(f"    {size} N={n:<5} hops {'2..N' if n > 1 else '1   '}{'':23}"[:46] + "".join(f"{c:>10}" for c in cells))
                if n > 1:
                    f = row["first"]
                    say(f"    {'':8}first hop{'':25}" + f"{'':>20}" + "".join(f"{ms(f[p]):>10}" for p in PARTS))
            longest = max(rows.values(), key=lambda row: row["n"])
            if longest["n"] > 1:
                say(f"    {size}: over a 1-function pipeline, N={longest['n']}: {ms(longest['over_one_median'])} per hop "
                    f"(medians; {ms(longest['over_one_min'])} from the fastest runs)"
                    + (f"; issue 10's target: at most {ms(HOP_TARGET_S)}" if size == "1KB" else ""))
        c = t["census"]
        say(f"    census raw in-process (run_pipeline): total {ms(c['total']['median'])}, before the first step "
            f"{ms(c['before'])} (plan, moto, fixtures), execution {ms(c['pipeline'])}; sandbox: {c['sandbox']}")
        for s in c["steps"]:
            say(f"      {s['function']:20}" + "".join(f"{p} {ms(s[p]):>10}  " for p in PARTS))


# == report =====================================================================================

def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "### dorc local target (sandboxed): benchmark",
        "",
        f"`{results['command_line']}` on {m['cpu'] or 'unknown CPU'}, nproc {m['nproc']}, "
        f"{m['implementation']} {m['python']}, {m['platform']}; dorc {m['versions'].get('dorc')}, "
        f"moto {m['versions'].get('moto')}, boto3 {m['versions'].get('boto3')}, "
        f"python-lambda-local {m['versions'].get('python-lambda-local')}; load average {m['loadavg_start']} at start, "
        f"{results.get('loadavg_end')} at end" + ("; PYTHONDONTWRITEBYTECODE set" if m["dont_write_bytecode"] else "") + ".",
        "",
    ]
    p = results.get("processes")
    if p:
        t = p["times"]
        lines += ["| whole process, start to exit (paired rounds) | median | min | max |", "|---|---:|---:|---:|"]
        for key, c in p["commands"].items():
            s = t[key]
            lines.append(f"| {c['label']} | {ms(s['median'])} | {ms(s['min'])} | {ms(s['max'])} |")
        run = t["run_this"]["median"]
        lines += ["", f"census raw = {x(run / t['boto3_moto']['median'])} the floor as measured so far, "
                      f"{x(run / t['boto3_moto_equal']['median'])} the equal floor"
                  + (f", {x(run / t['peer']['median'])} python-lambda-local" if "peer" in t else "") + "."]
        if "run_warm" in t:
            warm = t["run_warm"]["median"]
            lines.append(f"census raw warm (dorc daemon) = {x(warm / t['boto3_moto_equal']['median'])} the equal floor, "
                         f"{x(warm / run)} cold" + (f", {x(warm / t['peer']['median'])} python-lambda-local"
                                                     if "peer" in t else "") + ".")
        for what, label in (("run", "census raw"), ("invoke", "`dorc invoke`, one trivial function")):
            q = p.get(f"paired_{what}")
            if q:
                lines.append(f"Paired with the baseline, {label}: {x(q['median_of_ratios'])} (median of round ratios; "
                             f"ratio of medians {x(q['ratio_of_medians'])}).")
        lines.append("")
    h = results.get("hops")
    if h:
        for name in ("this", "baseline"):
            if name not in h:
                continue
            t = h[name]
            label = results["trees"][name]
            lines += [f"| per hop, {label} | per hop | over 1 fn | gap | wait | init | duration | after | warm est. |",
                      "|---|" + "---:|" * 8]
            for size, rows in t["sizes"].items():
                for key, row in rows.items():
                    n = row["n"]
                    part = row.get("rest", row["first"])
                    cells = [ms(row["per_hop"]), ms(row["over_one_median"]) if n > 1 else "-",
                             *(ms(part[q]) for q in PARTS), ms(row["warm_estimate"]) if n > 1 else "-"]
                    lines.append(f"| {size}, N={n}{' (hops 2..N)' if n > 1 else ''} | " + " | ".join(cells) + " |")
                    if n > 1:
                        lines.append("| &nbsp;&nbsp;first hop | | | " + " | ".join(ms(row["first"][q]) for q in PARTS) + " | |")
            lines += ["", "Per hop = (last step end - first step start) / N; over 1 fn = (median total N - median total 1)"
                          " / (N - 1); gap, wait, init, duration, after: see the script's method (its docstring and"
                          " output); warm est. = gap + duration + after. Before issue 8 the runtime counted the import"
                          " inside Duration, so a baseline's 'after' is negative by about its init."]
            c = t["census"]
            lines += ["", f"census raw in-process, {label}: total {ms(c['total']['median'])}, execution "
                          f"{ms(c['pipeline'])}; per step " + "; ".join(
                              f"{s['function']}: wait {ms(s['wait'])}, init {ms(s['init'])}, duration {ms(s['duration'])}"
                              for s in c["steps"]) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmarks of dorc's local target (see the module docstring).")
    ap.add_argument("--runs", type=int, default=None, help="timed rounds/runs per measurement (default 7; --quick: 3)")
    ap.add_argument("--quick", action="store_true", help="fewer runs, chains of 1 and 10, 1 KB events only")
    ap.add_argument("--baseline", metavar="PATH", help="a checkout of another dorc to pair with (e.g. a git worktree)")
    ap.add_argument("--chains", help="chain lengths, comma-separated (default 1,10,100; --quick: 1,10)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (the report goes to stderr)")
    ap.add_argument("--only", choices=("processes", "hops"), action="append", help="run only these parts")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "PARAMS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        chain_worker(json.loads(args.worker[1]))
        return 0
    if args.json:
        set_output(sys.stderr)
    runs = args.runs or (3 if args.quick else 7)
    if runs < 1:
        ap.error("--runs must be at least 1")
    try:
        chains = tuple(sorted({int(v) for v in args.chains.split(",")})) if args.chains else (
            (1, 10) if args.quick else CHAINS)
    except ValueError:
        ap.error("--chains: comma-separated whole numbers, e.g. 1,10,100")
    if chains[0] != 1 or any(n < 1 for n in chains):
        ap.error("--chains must include 1 (the 1-function pipeline every hop is compared with)")
    parts = args.only or ["processes", "hops"]
    cmdline = "python bench/bench_local.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    results: dict[str, Any] = {"command_line": cmdline, "runs": runs, "machine": machine()}
    m = results["machine"]
    say(f"dorc local-target benchmark (sandboxed) — {cmdline}")
    say(f"machine: {m['cpu']}, nproc {m['nproc']} (cpu_count {m['cpu_count']}), {m['implementation']} {m['python']} "
        f"({m['executable']}), {m['platform']}")
    say(f"versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}")
    say(f"load average at start: {m['loadavg_start']}; bytecode caches written by dorc's processes: "
        f"{not m['dont_write_bytecode']} (the sandbox workers run with -I, which ignores PYTHONDONTWRITEBYTECODE)")
    with tempfile.TemporaryDirectory(prefix="dorc-bench-") as tmp:
        work = Path(tmp)
        try:
            tr = trees(args.baseline, work)
            results["trees"] = {k: v["label"] for k, v in tr.items()}
            hops = work / "hops"
            for name in tr:  # a copy per tree: each keeps its own .dorc (task roots, local AWS)
                write_hop_config(hops / name, chains)
            say("trees: " + "; ".join(f"{v['label']} ({v['root']})" for v in tr.values()))
            if "processes" in parts:
                say("\n== 1. whole processes, paired rounds ==")
                results["processes"] = bench_processes(runs, tr, work, hops)
                report_processes(results["processes"])
            if "hops" in parts:
                for tree in tr.values():
                    if "census_copy" not in tree:
                        repo = work / f"census-{tree['label'].split()[0]}"
                        shutil.copytree(CONFIG, repo, ignore=shutil.ignore_patterns(".dorc", "__pycache__"))
                        tree["census_copy"] = str(repo)
                say(f"\n== 2. per hop: chains of {', '.join(map(str, chains))} trivial functions, and census raw split"
                    " per step (dorc.api.run_pipeline) ==")
                results["hops"] = bench_hops(runs, tr, work, hops, chains, args.quick)
                report_hops(results["hops"], tr)
        except BenchError as exc:
            say(f"\nbenchmark failed: {exc}")
            return 1
    results["loadavg_end"] = loadavg()
    la = results["loadavg_end"]
    say(f"\nload average at end: {la}" + (f"  (busy machine: more than half of nproc={m['nproc']};"
        " expect noisy figures, compare the min columns and the paired ratios)" if la and la[0] > m["nproc"] / 2 else ""))
    return benchlib.finish(results, markdown(results), args.json)


if __name__ == "__main__":
    sys.exit(main())
