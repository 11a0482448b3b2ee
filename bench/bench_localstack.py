#!/usr/bin/env python
"""Benchmarks of dorc's LocalStack target, next to the in-process target, for ``census raw``,
through dorc's public surface only.

    python bench/bench_localstack.py                       # 5 timed runs per measurement
    python bench/bench_localstack.py --runs 3
    python bench/bench_localstack.py --endpoint http://127.0.0.1:4566   # an already running LocalStack
    python bench/bench_localstack.py --json > r.json      # the report goes to stderr, the JSON to stdout

LocalStack: the one at ``--endpoint`` when it answers (``dorc.api.localstack_status``); otherwise
one started here in host mode (``dorc.api.localstack_start``: dorc's Lambda executor, no Docker) on
a free 127.0.0.1 port with a temporary state folder, and stopped with ``dorc.api.localstack_stop``
at the end, whatever happens. That it is gone is checked with public facts only: the PID that
``localstack_status`` reports and its descendant processes (its Lambda workers), read from /proc
before the stop, must all be gone after it (any left are killed, and the report says so).

The pipeline is a copy of ``pipeline-config`` in a temporary folder (its ``.dorc`` is not copied,
the repository's is never touched). ``census raw`` hands over to ``census processed``: 3 functions,
2 state machines. Runs use ``dorc.api.run_pipeline(..., record=False)``.

1. cold: the first ``run_pipeline(target="localstack")`` against that LocalStack (plan, package,
   upload, create roles/functions/state machines/rule, execute, read the history and logs);
2. warm re-run: the same call again, no change (the deploy finds everything up to date), median of N;
3. execution only: ``deploy=False``, median of N;
   1-3 are split into stages by the AWS API calls dorc makes, observed from outside with botocore's
   documented event hooks (``provide-client-params`` / ``after-call``) on boto3's default session,
   which ``boto3.client`` uses: before the first call (plan, health check, fixtures), deploy (first
   call -> StartExecution; API time per kind of resource, the rest is client-side work such as
   packaging), execute (``RunResult.duration_ms``), after;
4. per function: REPORT ``Duration`` (the handler, timed in the worker), and from the Step
   Functions history (read here with boto3) the Lambda invoke (TaskStarted -> TaskSucceeded) and
   the Task state's wall time (TaskStateEntered -> TaskStateExited); the execution span split into
   Lambda tasks, the hand-over (startExecution.sync) and the rest (Choice states, transitions);
5. in-process: ``run_pipeline(target="local", env="localstack")`` (same names), median of N, with
   per-function durations, and the LocalStack / in-process ratios;
6. direct Lambda ``Invoke`` (boto3 against the endpoint) of a deployed function, warm, median of
   ``--invokes``; next to it a bare API round trip (GetFunctionConfiguration) and a no-op function
   created for the purpose (deleted afterwards), to separate the Lambda executor's cost from Step
   Functions';
7. whole process: ``dorc run census raw --localstack -q`` (a warm re-run, as a user types it),
   process start to exit, median of N.

Rounds 2, 3 and 5 are interleaved (one of each per round) so that a change in the machine's load
hits them alike.

What the public API does not give (the old script wrapped dorc's internal functions for it): the
time of packaging, of the health check and of creating boto3 clients on their own. They are in the
"client side" and "before the first AWS call" rows here; planning is timed apart with
``dorc.api.plan_layer``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib  # beside this script
from benchlib import BenchError, dorc_command, loadavg, process_env, say, set_output, summarize, time_process


REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pipeline-config"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the repository's dorc, also when run from elsewhere

INSTANCE, LAYER = "census", "raw"
INVOKE_FUNCTION = ("census/processed", "function2")  # reads and writes the holding bucket only
NOOP_NAME = "dorc-bench-noop"
NOOP_SOURCE = "def handler(event, context):\n    return event\n"

# -- small helpers ---------------------------------------------------------------------------------

def med(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def sec(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.2f} s"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:,.1f}x"


def _cmdline(pid: int) -> list[str]:
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return []


def localstack_processes() -> list[int]:
    """PIDs of every ``localstack.runtime.main`` on this machine (Linux; [] elsewhere)."""
    if not Path("/proc").is_dir():
        return []
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and "localstack.runtime.main" in _cmdline(int(p.name))]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent PID, start time in clock ticks) from /proc/PID/stat; None when there is no such process."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return rest[0], int(rest[1]), int(rest[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, ...), from /proc ([] elsewhere)."""
    if not Path("/proc").is_dir():
        return []
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st:
                children.setdefault(st[1], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def _still_there(pid: int, started: int) -> bool:
    """The same process (same start time: the PID was not reused) still runs (a zombie does not)."""
    st = _stat(pid)
    return st is not None and st[2] == started and st[0] != "Z"


def endpoint_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def machine(health: dict | None) -> dict[str, Any]:
    return {**benchlib.machine(("dorc", "boto3", "moto")), "localstack_version": (health or {}).get("version")}


# -- the AWS API calls dorc makes, observed from outside -------------------------------------------

@dataclass
class Call:
    start: float
    end: float
    service: str
    operation: str

    @property
    def op(self) -> str:
        return f"{self.service} {self.operation}"

    @property
    def seconds(self) -> float:
        return self.end - self.start


class ApiCalls:
    """Times every AWS API call made in this process through boto3's default session (what
    ``boto3.client`` uses; the clients dorc makes for a run) while ``recording``, with botocore's
    documented event hooks. The benchmark's own clients come from a session of their own, so
    they are never counted."""

    KEY = "dorc_bench_call"

    def __init__(self):
        import boto3

        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        events = boto3.DEFAULT_SESSION.events
        events.register("provide-client-params", self._started, unique_id="dorc-bench-started")
        events.register("after-call", self._ended, unique_id="dorc-bench-ended")
        events.register("after-call-error", self._ended, unique_id="dorc-bench-failed")
        self.recording = False
        self.calls: list[Call] = []

    def _started(self, model=None, context=None, **kwargs):
        if self.recording and context is not None and model is not None:
            context[self.KEY] = (time.perf_counter(), model.service_model.service_name, model.name)

    def _ended(self, context=None, **kwargs):
        mark = (context or {}).pop(self.KEY, None)
        if mark:
            self.calls.append(Call(mark[0], time.perf_counter(), mark[1], mark[2]))

    @contextlib.contextmanager
    def record(self):
        self.calls = []
        self.recording = True
        try:
            yield self
        finally:
            self.recording = False


# Rows of the stage breakdown: (label, indent). Nested labels are inside the one above them (the
# plan row is timed apart: what the planning inside "before the first AWS call" costs).
STAGES = [("before the first AWS call", 0), ("plan (api.plan_layer, both layers, timed apart)", 1),
          ("deploy", 0), ("buckets + roles", 1), ("upload packages", 1), ("functions", 1), ("wait for Active", 2),
          ("state machines", 1), ("rules", 1), ("other AWS calls", 1), ("client side", 1),
          ("execute", 0), ("StartExecution + DescribeExecution", 1), ("history pages", 1), ("log lines (REPORT)", 1),
          ("after the execution", 0)]
STAGE_NOTES = {
    "before the first AWS call": " (plan, health check, census API fixture; deploy=False: the deployment records)",
    "deploy": " (first AWS call -> StartExecution)",
    "buckets + roles": " (API time)", "upload packages": " (API time)", "functions": " (API time)",
    "wait for Active": " (GetFunctionConfiguration polls, API time)", "state machines": " (API time)",
    "rules": " (API time)", "other AWS calls": " (API time)",
    "client side": " (packaging, waits between polls, boto3 clients, records)",
    "execute": " (RunResult.duration_ms)",
    "StartExecution + DescribeExecution": " (API time)",
    "history pages": " (API time, client side, overlaps)", "log lines (REPORT)": " (API time, client side, overlaps)",
    "after the execution": " (fixture stop, result)",
}
_DEPLOY_API_ROWS = ("buckets + roles", "upload packages", "functions", "state machines", "rules", "other AWS calls")
_BUCKET_OPS = {"HeadBucket", "CreateBucket", "PutBucketNotificationConfiguration"}


def _groups(call: Call, deploying: bool) -> list[str]:
    """The stage rows an API call counts in, by service and operation (public AWS names)."""
    svc, op = call.service, call.operation
    if not deploying:
        if svc == "stepfunctions" and op == "GetExecutionHistory":
            return ["history pages"]
        if svc == "logs":
            return ["log lines (REPORT)"]
        if svc == "stepfunctions":
            return ["StartExecution + DescribeExecution"]
        return []
    if svc == "iam" or (svc == "s3" and op in _BUCKET_OPS):
        return ["buckets + roles"]
    if svc == "s3":
        return ["upload packages"]
    if svc == "lambda" and op == "GetFunctionConfiguration":
        return ["functions", "wait for Active"]
    if svc in ("lambda", "logs"):
        return ["functions"]
    if svc == "stepfunctions":
        return ["state machines"]
    if svc == "events":
        return ["rules"]
    return ["other AWS calls"]


class Recorder:
    """An observer: deploy progress messages and step timestamps (as the client sees them)."""

    def __init__(self):
        self.messages: list[tuple[float, str]] = []
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}

    def progress(self, message: str) -> None:
        self.messages.append((time.perf_counter(), message))

    def step_started(self, layer, function, deployed_name):
        self.started[f"{layer}/{function}"] = time.perf_counter()

    def log(self, line):
        pass

    def step_finished(self, step):
        self.finished[f"{step.layer}/{step.function}"] = time.perf_counter()

    def engine_output(self, text):
        pass

    def step_walls(self) -> dict[str, float]:
        return {k: self.finished[k] - self.started[k] for k in self.finished if k in self.started}


# -- the Step Functions history: where an execution's time went ------------------------------------

def execution_history(sfn, arn: str) -> list[dict[str, Any]]:
    """Every event of an execution, all pages (GetExecutionHistory with the benchmark's own client)."""
    events: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kw)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kw["nextToken"] = page["nextToken"]


def timeline(sfn, arn: str, state_keys: dict[tuple[str, str], str]) -> dict[str, Any]:
    """Where an execution's time went, from the history's timestamps (child executions included).
    ``state_keys``: (state machine ARN, state name) -> function key.

    span = Lambda tasks + the rest of each execution (start, Choice states, transitions, end)
           + hand-over overhead (the startExecution.sync Task's wall minus the child's span)."""
    out: dict[str, Any] = {"tasks": {}, "invokes": {}, "executions": 0, "other_s": 0.0, "handover_s": 0.0}
    ts = lambda ev: ev["timestamp"].timestamp()  # noqa: E731

    def walk(execution_arn: str) -> float:
        out["executions"] += 1
        sm_arn = execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        events = execution_history(sfn, execution_arn)
        span = ts(events[-1]) - ts(events[0])
        current, entered, started, in_tasks = None, 0.0, None, 0.0
        for ev in events:
            kind = ev["type"]
            if kind == "TaskStateEntered":
                current, entered, started = ev["stateEnteredEventDetails"]["name"], ts(ev), None
            elif kind == "TaskStarted":
                started = ts(ev)
            elif kind == "TaskSucceeded" and current and started is not None:
                key = state_keys.get((sm_arn, current))
                if key:
                    out["invokes"][key] = ts(ev) - started
            elif kind == "TaskSubmitted" and current and (sm_arn, current) not in state_keys:
                child = json.loads(ev["taskSubmittedEventDetails"]["output"]).get("ExecutionArn")
                if child:
                    child_span = walk(child)
                    out["handover_s"] -= child_span
            elif kind == "TaskStateExited" and current:
                wall = ts(ev) - entered
                in_tasks += wall
                key = state_keys.get((sm_arn, current))
                if key:
                    out["tasks"][key] = wall
                else:
                    out["handover_s"] += wall
                current = None
        out["other_s"] += span - in_tasks
        return span

    out["span_s"] = walk(arn)
    out["tasks_s"] = sum(out["tasks"].values())
    return out


def report_duration(step) -> float | None:
    """The REPORT line's ``Duration`` in seconds (what ``StepResult.duration_ms`` holds when logs were read)."""
    return step.duration_ms / 1000 if step.logs and "REPORT" in step.logs else None


# -- LocalStack: an existing one, or one of our own -------------------------------------------------

class LocalStack:
    """The endpoint to benchmark; when started here (``dorc.api.localstack_start``), stopped on
    close (``dorc.api.localstack_stop``) and checked gone."""

    def __init__(self, endpoint: str | None, workdir: Path):
        self.requested = endpoint
        self.workdir = workdir
        self.endpoint: str | None = None
        self.health: dict | None = None
        self.mode = "external"
        self.info = None
        self.port: int | None = None
        self.state_dir: Path | None = None
        self.start_wall_s: float | None = None
        self.install_check_s: float | None = None
        self.stopped_check: str | None = None
        self.notes: list[str] = []

    def open(self) -> None:
        from dorc import api

        if self.requested:
            ep = endpoint_url(self.requested)
            # a state folder that records nothing: the status is then whether ``ep`` answers
            st = api.localstack_status(state_dir=self.workdir / "external", endpoint=ep)
            if st.ready:
                self.endpoint, self.health = ep, st.health
                say(f"using the LocalStack at {ep} (it answers; not started or stopped here)")
                return
            self.notes.append(f"--endpoint {ep} did not answer; started one instead")
            say(f"--endpoint {ep} does not answer: starting one instead")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.state_dir = self.workdir / "localstack"
        say("LocalStack's host-mode install (dorc.api.localstack_install: once, about 2 min when missing; "
            "not part of the figures) ...")
        t0 = time.perf_counter()
        api.localstack_install(progress=lambda m: None if m.startswith("  ") else say(f"  {m}"))
        self.install_check_s = time.perf_counter() - t0
        say(f"starting LocalStack (host mode) on 127.0.0.1:{self.port}, state in {self.state_dir} ...")
        self.mode = "host"
        t0 = time.perf_counter()
        self.info = api.localstack_start(port=self.port, state_dir=self.state_dir, mode="host")
        self.start_wall_s = time.perf_counter() - t0
        self.endpoint = self.info.endpoint
        st = api.localstack_status(port=self.port, state_dir=self.state_dir)
        self.health = st.health
        say(f"  ready at {self.endpoint} (pid {self.info.pid}) in {sec(self.start_wall_s)} "
            f"(LocalStack's ready_seconds {self.info.ready_seconds}; install check {sec(self.install_check_s)})")

    def close(self) -> None:
        if self.info is None:
            return
        from dorc import api

        st = api.localstack_status(port=self.port, state_dir=self.state_dir)
        pid = (st.info.pid if st.info else None) or self.info.pid
        tree = [pid, *descendants(pid)] if pid else []
        ours = {p: s[2] for p in tree if (s := _stat(p))}  # PID -> start time, to tell a reused PID apart
        say(f"\nstopping LocalStack pid {pid} (dorc.api.localstack_stop; {len(ours) - 1 if ours else 0} "
            "descendant process(es): its Lambda workers) ...")
        try:
            api.localstack_stop(port=self.port, state_dir=self.state_dir)
        finally:
            left = [p for p, started in ours.items() if _still_there(p, started)]
            for p in left:  # only ours: the reported PID and what ran below it, same start time
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while any(_still_there(p, ours[p]) for p in left) and time.monotonic() < deadline:
                time.sleep(0.05)
            still = [p for p in left if _still_there(p, ours[p])]
            after = api.localstack_status(port=self.port, state_dir=self.state_dir)
            self.stopped_check = (
                ("stopped; nothing left (the LocalStack pid and its descendants are gone)" if not left else
                 f"localstack_stop left {len(left)} process(es) {left}, killed here"
                 + (f"; still alive after SIGKILL: {still}" if still else ""))
                + f"; localstack_status: running={after.running}, ready={after.ready}")
            say(f"  {self.stopped_check}")
            self.info = None


# -- the benchmark -----------------------------------------------------------------------------------

def copy_config(workdir: Path) -> Path:
    repo = workdir / "pipeline-config"
    shutil.copytree(CONFIG, repo, ignore=shutil.ignore_patterns(".dorc", "__pycache__", "build", ".pulumi"))
    return repo


def run_localstack(project, endpoint: str, calls: ApiCalls, *, deploy: bool):
    from dorc import api

    rec = Recorder()
    with calls.record():
        t0 = time.perf_counter()
        res = api.run_pipeline(INSTANCE, LAYER, target="localstack", endpoint=endpoint, deploy=deploy,
                               project=project, observer=rec, record=False)
        wall = time.perf_counter() - t0
        seen = list(calls.calls)
    if not res.succeeded or len(res.steps) != 3:
        raise BenchError(f"LocalStack run failed: {res.status} {res.error} (steps: "
                         f"{[(s.layer, s.function, s.status) for s in res.steps]})")
    return res, t0, wall, rec, seen


def run_local(project):
    from dorc import api

    rec = Recorder()
    t0 = time.perf_counter()
    res = api.run_pipeline(INSTANCE, LAYER, target="local", env="localstack", project=project, observer=rec,
                           record=False)
    wall = time.perf_counter() - t0
    if not res.succeeded or len(res.steps) != 3:
        raise BenchError(f"in-process run failed: {res.status} {res.error}")
    return res, wall, rec


def stage_figures(calls: list[Call], t0: float, wall: float, result, plan_s: float) -> dict[str, Any]:
    """The run split at its first AWS call and at StartExecution; API time per kind of call.
    Without any observed call (dorc no longer using boto3's default session) the split is None."""
    st: dict[str, dict[str, Any]] = {label: {"s": 0.0, "calls": 0} for label, _ in STAGES}
    st["plan (api.plan_layer, both layers, timed apart)"] = {"s": plan_s, "calls": 2}
    calls = sorted(calls, key=lambda c: c.start)
    api: dict[str, dict[str, float]] = {}
    for c in calls:
        slot = api.setdefault(c.op, {"calls": 0, "s": 0.0})
        slot["calls"] += 1
        slot["s"] += c.seconds
    execution = result.duration_ms / 1000
    start = next((c for c in calls if c.op == "stepfunctions StartExecution"), None)
    if start is None:
        for label, _ in STAGES:
            if label != "plan (api.plan_layer, both layers, timed apart)":
                st[label] = {"s": None, "calls": None}
        st["execute"] = {"s": execution, "calls": None}
        return {"wall_s": wall, "execution_s": execution, "stages": st, "api": api, "observed": False}
    deploy_calls = [c for c in calls if c.start < start.start]
    for c in calls:
        for label in _groups(c, c.start < start.start):
            st[label]["s"] += c.seconds
            st[label]["calls"] += 1
    deploy_s = start.start - calls[0].start
    st["before the first AWS call"] = {"s": calls[0].start - t0, "calls": 0}
    st["deploy"] = {"s": deploy_s, "calls": len(deploy_calls)}
    api_s = sum(st[label]["s"] for label in _DEPLOY_API_ROWS)
    st["client side"] = {"s": deploy_s - api_s, "calls": 0}
    st["execute"] = {"s": execution, "calls": len(calls) - len(deploy_calls)}
    st["after the execution"] = {"s": wall - (start.start - t0) - execution, "calls": 0}
    return {"wall_s": wall, "execution_s": execution, "stages": st, "api": api, "observed": True}


def layer_plans(project) -> dict[str, Any]:
    """The plans of census/raw and of what it hands over to (``dorc.api.plan_layer``), start first."""
    from dorc import api

    plans: dict[str, Any] = {}
    todo = [(INSTANCE, LAYER)]
    while todo:
        inst, lay = todo.pop(0)
        if f"{inst}/{lay}" not in plans:
            plan = api.plan_layer(project, inst, lay, "localstack")
            plans[f"{inst}/{lay}"] = plan
            if plan.handover:
                todo.append((plan.handover.instance, plan.handover.layer))
    return plans


def bench(args, ls: LocalStack, workdir: Path) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    from dorc import find_project

    calls = ApiCalls()  # before any client dorc makes
    repo = copy_config(workdir)
    project = find_project(repo)
    if not str(project.state_dir.resolve()).startswith(str(workdir.resolve())):
        raise BenchError(f"the copy's state folder {project.state_dir} is not under {workdir}")
    out: dict[str, Any] = {"config_copy": str(repo)}
    endpoint = ls.endpoint
    runs = args.runs

    plan_t = []
    for _ in range(5):
        t0 = time.perf_counter()
        plans = layer_plans(project)
        plan_t.append(time.perf_counter() - t0)
    out["plan_s"] = plan_s = statistics.median(plan_t)
    region = next(iter(plans.values())).region
    cfg = Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=120)
    own = boto3.session.Session()  # not the default session: these calls are not dorc's
    mk = lambda svc: own.client(svc, endpoint_url=endpoint, region_name=region, config=cfg,  # noqa: E731
                                aws_access_key_id="test", aws_secret_access_key="test")
    sfn, lam = mk("stepfunctions"), mk("lambda")
    state_keys = {(p.state_machine_arn, fn.key): f"{key.split('/')[1]}/{fn.key}" for key, p in plans.items()
                  for fn in p.functions}
    fkeys = [f"{key.split('/')[1]}/{fn.key}" for key, p in plans.items() for fn in p.functions]

    existing = []
    for p in plans.values():
        for fn in p.functions:
            with contextlib.suppress(Exception):
                lam.get_function_configuration(FunctionName=fn.name)
                existing.append(fn.name)
    out["fresh"] = not existing
    if existing:
        say(f"  note: {len(existing)} of the functions already exist on this LocalStack: the 'cold' run updates "
            "rather than creates")

    def step_map(res) -> dict[str, Any]:
        return {f"{s.layer.split('/')[1]}/{s.function}": s for s in res.steps}

    def one_ls(deploy: bool) -> tuple[dict[str, Any], Any]:
        res, t0, wall, rec, seen = run_localstack(project, endpoint, calls, deploy=deploy)
        if not res.execution_arn or res.execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0] \
                != plans[f"{INSTANCE}/{LAYER}"].state_machine_arn:
            raise BenchError(f"the execution {res.execution_arn} is not of the planned state machine "
                             f"{plans[f'{INSTANCE}/{LAYER}'].state_machine_arn}")
        tl = timeline(sfn, res.execution_arn, state_keys)
        steps = step_map(res)
        r = stage_figures(seen, t0, wall, res, plan_s) | {
            "messages": [m for _, m in rec.messages], "timeline": tl,
            "sfn": sfn_split(tl, res.duration_ms / 1000),
            "report_s": {k: report_duration(st) for k, st in steps.items()},
            "init_s": {k: _init_s(st.logs) for k, st in steps.items()},
        }
        return r, res

    # == 1. cold ==
    say("\n== 1. cold: the first run_pipeline(target='localstack') on this LocalStack ==")
    cold, _ = one_ls(deploy=True)
    cold |= {"wall": summarize([cold["wall_s"]]), "execution": summarize([cold["execution_s"]])}
    out["cold"] = cold
    report_stages(cold)
    say(f"  deploy actions: {len(cold['messages'])} ({', '.join(_count_actions(cold['messages']))})")
    say("  first invocation of each function (a new worker process): "
        + ", ".join(f"{k} Task {ms(v)} (REPORT Duration {ms(cold['report_s'].get(k))}, Init {ms(cold['init_s'].get(k))})"
                    for k, v in cold["timeline"]["tasks"].items()))

    # == 2, 3, 5 interleaved ==
    say(f"\n== 2/3/5: {runs} rounds of [warm re-run, execution only, in-process], after 1 in-process warm-up ==")
    run_local(project)  # warm-up: moto's import, first-run caches
    warm, exec_only, local = [], [], []
    last_ls = None
    for i in range(runs):
        r, _ = one_ls(deploy=True)
        warm.append(r)
        r, last_ls = one_ls(deploy=False)
        exec_only.append(r)
        res, wall, rec = run_local(project)
        local.append({"wall_s": wall, "pipeline_s": res.duration_ms / 1000,
                      "duration_s": {k: st.duration_ms / 1000 for k, st in step_map(res).items()},
                      "step_wall_s": {f"{k.split('/')[1]}/{k.split('/')[2]}": v for k, v in rec.step_walls().items()}})
        changed = warm[-1]["messages"]
        say(f"  round {i + 1}: warm re-run {sec(warm[-1]['wall_s'])}, execution only {sec(exec_only[-1]['wall_s'])}, "
            f"in-process {sec(local[-1]['wall_s'])}" + (f"  (the warm re-run's deploy changed: {'; '.join(changed)})"
                                                         if changed else ""))
    out["warm"] = aggregate(warm)
    out["exec_only"] = aggregate(exec_only)
    changes = sorted({m for r in warm for m in r["messages"]})
    out["warm"]["deploy_actions"] = changes
    if changes:
        say(f"  note: a warm re-run changed something (expected nothing): {changes[:5]}; a changed function"
            " environment usually means the census API fixture's fixed port (4580) was taken by another run,"
            " so a free port was used and written into the function's configuration")
    out["local"] = {"wall": summarize([r["wall_s"] for r in local]),
                    "pipeline": summarize([r["pipeline_s"] for r in local]),
                    "duration_s": {k: med(r["duration_s"].get(k) for r in local) for k in fkeys},
                    "step_wall_s": {k: med(r["step_wall_s"].get(k) for r in local) for k in fkeys}}

    say("\n== 2. warm re-run, no change (deploy check + execution), median of runs ==")
    report_stages(out["warm"])
    say("\n== 3. execution only (deploy=False), median of runs ==")
    report_stages(out["exec_only"])
    say("\n== 1-3. the execution, from the Step Functions history ==")
    report_sfn(out)
    say("\n== 1-3. AWS API calls made by dorc (this process's boto3), by total time ==")
    report_api(out)

    # == 4. per function ==
    per = {}
    both = warm + exec_only
    for k in fkeys:
        per[k] = {
            "cold_task_s": cold["timeline"]["tasks"].get(k), "cold_report_s": cold["report_s"].get(k),
            "cold_init_s": cold["init_s"].get(k),
            "ls_report_s": med(r["report_s"].get(k) for r in both),
            "ls_task_s": med(r["timeline"]["tasks"].get(k) for r in both),
            "ls_invoke_s": med(r["timeline"]["invokes"].get(k) for r in both),
            "local_duration_s": out["local"]["duration_s"].get(k), "local_wall_s": out["local"]["step_wall_s"].get(k),
        }
    out["per_function"] = per
    say(f"\n== 4. per function (LocalStack: median over the {len(both)} warm re-runs and execution-only runs) ==")
    report_per_function(out)

    # == 5. ratios ==
    say(f"\n== 5. LocalStack / in-process (run_pipeline(target='local', env='localstack'), median of {runs}) ==")
    report_ratios(out)

    # == 6. direct invoke ==
    say(f"\n== 6. direct Lambda Invoke (boto3 against {endpoint}), warm, median of {args.invokes} ==")
    fn_plan = next(f for f in plans[INVOKE_FUNCTION[0]].functions if f.key == INVOKE_FUNCTION[1])
    payload = step_map(last_ls)[f"{INVOKE_FUNCTION[0].split('/')[1]}/{INVOKE_FUNCTION[1]}"].input_json
    role = lam.get_function_configuration(FunctionName=fn_plan.name)["Role"]  # the role dorc deployed it with
    out["invoke"] = bench_invoke(lam, fn_plan.name, payload, args.invokes, role, fn_plan.runtime)
    report_invoke(out)

    # == 7. whole process ==
    cmd = [*dorc_command(), "run", INSTANCE, LAYER, "--localstack", "-q", "--endpoint", endpoint,
           "--config-repo", str(repo)]
    say(f"\n== 7. whole process: `dorc run {INSTANCE} {LAYER} --localstack -q` (a warm re-run), "
        f"{runs} runs after 1 warm-up ==")
    out["process"] = time_process(cmd, runs, env=process_env(), cwd=str(workdir)) | {"command": cmd}
    report_process(out)
    return out


def sfn_split(tl: dict[str, Any], execution_s: float) -> dict[str, float]:
    """The execution as dorc's client timed it, split with the history's timestamps."""
    return {"execution_s": execution_s, "span_s": tl["span_s"], "tasks_s": tl["tasks_s"], "other_s": tl["other_s"],
            "handover_s": tl["handover_s"], "client_s": execution_s - tl["span_s"]}


_INIT = re.compile(r"Init Duration: ([0-9.]+) ms")


def _init_s(logs: str) -> float | None:
    m = _INIT.search(logs or "")
    return float(m.group(1)) / 1000 if m else None


def _count_actions(messages: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for m in messages:
        verb = " ".join(m.split()[:2]) if m.split()[0] in ("created", "updated", "deleted") else m.split()[0]
        counts[verb] = counts.get(verb, 0) + 1
    return [f"{n} {v}" for v, n in counts.items()]


def aggregate(rs: list[dict[str, Any]]) -> dict[str, Any]:
    stages = {label: {"s": med(r["stages"][label]["s"] for r in rs), "calls": med(r["stages"][label]["calls"] for r in rs)}
              for label in rs[0]["stages"]}
    ops = {op for r in rs for op in r["api"]}
    api = {op: {"s": med(r["api"].get(op, {}).get("s", 0.0) for r in rs),
                "calls": med(r["api"].get(op, {}).get("calls", 0) for r in rs)} for op in ops}
    return {"wall": summarize([r["wall_s"] for r in rs]), "execution": summarize([r["execution_s"] for r in rs]),
            "wall_s": med(r["wall_s"] for r in rs), "execution_s": med(r["execution_s"] for r in rs),
            "stages": stages, "api": api, "sfn": {k: med(r["sfn"][k] for r in rs) for k in rs[0]["sfn"]},
            "observed": all(r.get("observed", True) for r in rs)}


def _tail_duration(resp) -> float | None:
    tail = resp.get("LogResult")
    if not tail:
        return None
    m = re.search(r"REPORT RequestId:.*?\tDuration: ([0-9.]+) ms", base64.b64decode(tail).decode(errors="replace"))
    return float(m.group(1)) / 1000 if m else None


def bench_invoke(lam, name: str, payload: bytes, n: int, role: str, runtime: str) -> dict[str, Any]:
    out: dict[str, Any] = {"function": name}

    def timed(fn) -> tuple[list[float], list[float | None]]:
        walls, durs = [], []
        fn()  # warm-up: an execution environment exists
        for _ in range(n):
            t0 = time.perf_counter()
            resp = fn()
            walls.append(time.perf_counter() - t0)
            durs.append(_tail_duration(resp) if isinstance(resp, dict) else None)
        return walls, durs

    def invoke(fname: str, body: bytes):
        def call():
            resp = lam.invoke(FunctionName=fname, Payload=body, LogType="Tail")
            data = resp["Payload"].read()
            if resp.get("FunctionError"):
                raise BenchError(f"Invoke {fname}: {resp['FunctionError']}: {data[:300]!r}")
            return resp
        return call

    walls, durs = timed(lambda: lam.get_function_configuration(FunctionName=name))
    out["api_floor"] = summarize(walls)
    walls, durs = timed(invoke(name, payload))
    out["function"] = name
    out["invoke"] = summarize(walls)
    out["invoke_report_s"] = med(durs)
    # a no-op function: what the Lambda service + dorc's executor cost with no handler work
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda_function.py", NOOP_SOURCE)
    try:
        with contextlib.suppress(Exception):
            lam.delete_function(FunctionName=NOOP_NAME)
        lam.create_function(FunctionName=NOOP_NAME, Runtime=runtime, Role=role, Handler="lambda_function.handler",
                            Code={"ZipFile": buf.getvalue()}, Timeout=10, MemorySize=128)
        deadline = time.monotonic() + 60
        while lam.get_function_configuration(FunctionName=NOOP_NAME).get("State") != "Active":
            if time.monotonic() > deadline:
                raise BenchError(f"{NOOP_NAME} did not become Active")
            time.sleep(0.1)
        t0 = time.perf_counter()
        invoke(NOOP_NAME, b'{"x": 1}')()
        out["noop_first_s"] = time.perf_counter() - t0  # a new execution environment (worker process)
        walls, durs = timed(invoke(NOOP_NAME, b'{"x": 1}'))
        out["noop"] = summarize(walls)
        out["noop_report_s"] = med(durs)
    except BenchError:
        raise
    except Exception as exc:
        out["noop_error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            lam.delete_function(FunctionName=NOOP_NAME)
    return out


# -- report ------------------------------------------------------------------------------------------

KINDS = (("cold", "cold"), ("warm", "warm re-run"), ("exec_only", "exec. only"))


def stage_label(label: str, indent: int) -> str:
    return label + STAGE_NOTES.get(label, "")


def report_stages(r: dict[str, Any]) -> None:
    wall = r["wall_s"]
    w = r["wall"]
    say(f"  run_pipeline wall {sec(wall)}" + (f" (min {sec(w['min'])}, max {sec(w['max'])})" if w["n"] > 1 else "")
        + f"; of which execution (start_execution -> history and logs read) {sec(r['execution_s'])}")
    if not r.get("observed", True):
        say("  (no AWS call of dorc's was observed on boto3's default session: the stage split is unavailable)")
    say(f"    {'stage':100} {'time':>11} {'share':>7} {'calls':>6}")
    for label, indent in STAGES:
        st = r["stages"][label]
        if not st["s"] and label not in ("deploy", "execute"):
            continue
        name = "  " * max(indent, 0) + stage_label(label, indent)
        calls = st["calls"]
        share = f"{st['s'] / wall * 100:6.1f}%" if st["s"] is not None else ""
        say(f"    {name:100} {ms(st['s']):>11} {share:>7} {f'{calls:g}' if calls else '':>6}")


SFN_ROWS = [("execution_s", "execution, as dorc's client times it", 0),
            ("span_s", "Step Functions span (history: ExecutionStarted -> ExecutionSucceeded)", 1),
            ("tasks_s", "Lambda Task states (3)", 2),
            ("handover_s", "hand-over: startExecution.sync Task minus the child's span", 2),
            ("other_s", "the rest: execution start/end, Choice states, transitions (2 executions)", 2),
            ("client_s", "client after the span (start_execution call, poll interval, last log read)", 1)]


def report_sfn(out: dict[str, Any]) -> None:
    say(f"    {'':78}" + "".join(f"{label:>12}" for _, label in KINDS))
    for key, label, indent in SFN_ROWS:
        say(f"    {'  ' * indent + label:78}" + "".join(f"{ms(out[k]['sfn'][key]):>12}" for k, _ in KINDS))


def report_api(out: dict[str, Any], top: int = 12) -> None:
    ops = {op for k, _ in KINDS for op in out[k]["api"]}
    rank = sorted(ops, key=lambda op: -max(out[k]["api"].get(op, {}).get("s", 0) for k, _ in KINDS))
    say(f"    {'service operation':44}" + "".join(f"{label + ' (n)':>22}" for _, label in KINDS))
    for op in rank[:top]:
        cells = []
        for k, _ in KINDS:
            x = out[k]["api"].get(op)
            cells.append(f"{ms(x['s']) + ' (' + format(x['calls'], 'g') + ')' if x and x['calls'] else '-':>22}")
        say(f"    {op:44}" + "".join(cells))
    totals = [sum(x["s"] for x in out[k]["api"].values()) for k, _ in KINDS]
    counts = [sum(x["calls"] for x in out[k]["api"].values()) for k, _ in KINDS]
    say(f"    {'all ' + str(len(ops)) + ' operations':44}" + "".join(f"{ms(t) + ' (' + format(n, 'g') + ')':>22}"
                                                                for t, n in zip(totals, counts)))


def report_per_function(out: dict[str, Any]) -> None:
    say(f"  {'function':22} {'REPORT':>10} {'Invoke':>10} {'Task':>10} {'cold Task':>10} {'cold Init':>10} "
        f"{'local dur.':>11} {'local wall':>11}")
    for k, v in out["per_function"].items():
        say(f"  {k:22} {ms(v['ls_report_s']):>10} {ms(v['ls_invoke_s']):>10} {ms(v['ls_task_s']):>10} "
            f"{ms(v['cold_task_s']):>10} {ms(v['cold_init_s']):>10} {ms(v['local_duration_s']):>11} {ms(v['local_wall_s']):>11}")
    say("  REPORT = Duration on the function's REPORT line (the handler, timed inside the worker); Invoke = TaskStarted ->")
    say("  TaskSucceeded and Task = TaskStateEntered -> TaskStateExited in the history; cold = the first run (a new worker")
    say("  process, Init = import of lambda.py); local dur. = the in-process runtime's Duration, local wall =")
    say("  step_started -> step_finished seen by an observer of the in-process run.")


def ratio_rows(out: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    lw = out["local"]["wall"]["median"]
    return [("cold deploy + run", out["cold"]["wall_s"], lw),
            ("warm re-run (deploy check + execution)", out["warm"]["wall_s"], lw),
            ("execution only (deploy=False)", out["exec_only"]["wall_s"], lw),
            ("Step Functions span / in-process execution", out["exec_only"]["sfn"]["span_s"],
             out["local"]["pipeline"]["median"])]


def report_ratios(out: dict[str, Any]) -> None:
    lw = out["local"]["wall"]
    say(f"  in-process run_pipeline: median {sec(lw['median'])} (min {sec(lw['min'])}, max {sec(lw['max'])}); "
        f"its execution (RunResult.duration_ms: the state machine, without moto's start/stop) "
        f"{sec(out['local']['pipeline']['median'])}")
    for label, a, b in ratio_rows(out):
        say(f"  {label:42} {sec(a):>9} / {sec(b)} = {ratio(a, b)}")
    for k, v in out["per_function"].items():
        say(f"  {k:42} Task {ms(v['ls_task_s'])} / wall {ms(v['local_wall_s'])} = {ratio(v['ls_task_s'], v['local_wall_s'])};"
            f" REPORT {ms(v['ls_report_s'])} / Duration {ms(v['local_duration_s'])} = "
            f"{ratio(v['ls_report_s'], v['local_duration_s'])}")


def report_invoke(out: dict[str, Any]) -> None:
    r = out["invoke"]
    say(f"  {'':56} {'median':>10} {'min':>10} {'max':>10} {'REPORT':>10}")
    rows = [("API round trip: GetFunctionConfiguration", r["api_floor"], None),
            (f"Invoke {r['function']}", r["invoke"], r.get("invoke_report_s"))]
    if "noop" in r:
        rows.append((f"Invoke {NOOP_NAME} (returns its event)", r["noop"], r.get("noop_report_s")))
    for label, st, rep in rows:
        say(f"  {label:56} {ms(st['median']):>10} {ms(st['min']):>10} {ms(st['max']):>10} {ms(rep) if rep else '':>10}")
    if "noop" in r:
        say(f"  {NOOP_NAME}: first call (creates the worker process) {ms(r.get('noop_first_s'))}")
    else:
        say(f"  no-op function: {r.get('noop_error')}")
    v = out["per_function"].get("processed/function2", {})
    if v.get("ls_task_s"):
        d = r["invoke"]["median"]
        say(f"  processed/function2 inside the state machine: Task {ms(v['ls_task_s'])}, of which the Lambda invoke "
            f"{ms(v['ls_invoke_s'])}; direct Invoke {ms(d)}: Step Functions' Task costs {ms(v['ls_task_s'] - d)} more")


def report_process(out: dict[str, Any]) -> None:
    pr = out["process"]
    say(f"  command: {' '.join(pr['command'])}")
    say(f"  process start to exit: median {sec(pr['median'])} (min {sec(pr['min'])}, max {sec(pr['max'])}); "
        f"run_pipeline's warm re-run in this process {sec(out['warm']['wall_s'])}; the difference "
        f"{sec(pr['median'] - out['warm']['wall_s'])} is the process's own cost (interpreter, imports, run record, "
        "terminal output) plus noise")


def markdown(results: dict[str, Any]) -> str:
    m, ls_, o = results["machine"], results["localstack"], results["bench"]
    ls_text = (f"LocalStack {m['localstack_version']} " + (f"in host mode (dorc's Lambda executor), started by the script "
               f"in {sec(ls_['start_wall_s'])}" if ls_["mode"] == "host" else f"at {ls_['endpoint']} (already running)"))
    lines = [
        "### dorc LocalStack target: benchmark (census raw -> processed: 3 functions, 2 state machines)",
        "",
        f"`{results['command_line']}` on {m['cpu'] or 'unknown CPU'}, nproc {m['nproc']}, {m['implementation']} "
        f"{m['python']}, {m['platform']}; {ls_text}; dorc {m['versions'].get('dorc')}, boto3 {m['versions'].get('boto3')}, "
        f"moto {m['versions'].get('moto')}; load average {m['loadavg_start']} at start, {results.get('loadavg_end')} at end"
        + (f"; {results['other_localstacks']} other LocalStack process(es) were running on the machine"
           + ("" if ls_["mode"] == "host" else " (the one benchmarked among them, if local)")
           if results.get("other_localstacks") else "") + ". All runs `dorc.api.run_pipeline(..., record=False)`.",
        "",
        "| run_pipeline | median | min | max | vs in-process |",
        "|---|---:|---:|---:|---:|",
    ]
    lw = o["local"]["wall"]["median"]
    rows = [(f"cold: first deploy + run on {'a fresh' if o['fresh'] else 'this'} LocalStack", o["cold"]["wall"]),
            ("warm re-run, no change (deploy check + execution)", o["warm"]["wall"]),
            ("execution only (`deploy=False`)", o["exec_only"]["wall"]),
            ("in-process (`target=\"local\"`, `env=\"localstack\"`)", o["local"]["wall"])]
    for label, w in rows:
        lines.append(f"| {label} | {sec(w['median'])} | {sec(w['min']) if w['n'] > 1 else ''} | "
                     f"{sec(w['max']) if w['n'] > 1 else ''} | {ratio(w['median'], lw)} |")
    lp, span = o["local"]["pipeline"], o["exec_only"]["sfn"]["span_s"]
    lines.append(f"| execution alone: Step Functions span (history) vs in-process `RunResult.duration_ms` | "
                 f"{ms(span)} vs {ms(lp['median'])} | | | {ratio(span, lp['median'])} |")
    pr = o.get("process")
    if pr:
        lines.append(f"| whole process: `dorc run {INSTANCE} {LAYER} --localstack -q` (warm re-run) | {sec(pr['median'])} | "
                     f"{sec(pr['min']) if pr['n'] > 1 else ''} | {sec(pr['max']) if pr['n'] > 1 else ''} | |")
    lines += ["", "Stages: the run split at dorc's first AWS call and at StartExecution, with the API time per kind "
                  "of call (botocore's event hooks on boto3's default session; no dorc internals). Packaging, the "
                  "health check and boto3 client creation are not separable through the public API: they are in "
                  "\"client side\" and \"before the first AWS call\"."]
    lines += ["", "| where the time goes (median) | cold | warm re-run | execution only |", "|---|---:|---:|---:|"]
    for label, indent in STAGES:
        vals = [o[k]["stages"][label]["s"] for k, _ in KINDS]
        if not any(vals) and label not in ("deploy", "execute"):
            continue
        lines.append(f"| {'&nbsp;' * 4 * max(indent, 0)}{stage_label(label, indent)} | "
                     + " | ".join(ms(v) for v in vals) + " |")
    for key, label, indent in SFN_ROWS:
        lines.append(f"| {'&nbsp;' * 4 * indent}{label} | " + " | ".join(ms(o[k]["sfn"][key]) for k, _ in KINDS) + " |")
    lines += ["", "| per function | REPORT Duration | Lambda invoke (history) | Task state (history) | cold Task "
                  "| in-process Duration | in-process wall | Task / in-process wall |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k, v in o["per_function"].items():
        lines.append(f"| {k} | {ms(v['ls_report_s'])} | {ms(v['ls_invoke_s'])} | {ms(v['ls_task_s'])} | "
                     f"{ms(v['cold_task_s'])} | {ms(v['local_duration_s'])} | {ms(v['local_wall_s'])} | "
                     f"{ratio(v['ls_task_s'], v['local_wall_s'])} |")
    r = o["invoke"]
    lines += ["", f"| direct call, warm, {results['invokes']} calls | median | min | REPORT Duration |", "|---|---:|---:|---:|",
              f"| API round trip (GetFunctionConfiguration) | {ms(r['api_floor']['median'])} | {ms(r['api_floor']['min'])} | |",
              f"| Lambda Invoke `{r['function']}` | {ms(r['invoke']['median'])} | {ms(r['invoke']['min'])} | "
              f"{ms(r.get('invoke_report_s'))} |"]
    if "noop" in r:
        lines.append(f"| Lambda Invoke, a no-op function | {ms(r['noop']['median'])} | {ms(r['noop']['min'])} | "
                     f"{ms(r.get('noop_report_s'))} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmarks of dorc's LocalStack target (see the module docstring).")
    ap.add_argument("--runs", type=int, default=5, help="timed runs for the warm, execution-only and in-process "
                                                        "measurements (default 5)")
    ap.add_argument("--endpoint", help="use the LocalStack at this URL if it answers (else one is started here)")
    ap.add_argument("--invokes", type=int, default=20, help="direct Lambda invocations (default 20)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (the report goes to stderr)")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.invokes < 1:
        ap.error("--runs and --invokes must be at least 1")
    if args.json:
        set_output(sys.stderr)
    cmdline = "python bench/bench_localstack.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))

    # A SIGTERM or SIGHUP unwinds through the finally blocks below (LocalStack is stopped).
    def _unwind(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, _unwind)

    from dorc import DorcError

    say(f"dorc LocalStack-target benchmark — {cmdline}")
    others_before = localstack_processes()
    results: dict[str, Any] = {"command_line": cmdline, "runs": args.runs, "invokes": args.invokes}
    with tempfile.TemporaryDirectory(prefix="dorc-bench-ls-") as tmp:
        work = Path(tmp)
        ls = LocalStack(args.endpoint, work)
        code = 0
        try:
            ls.open()
            results["machine"] = m = machine(ls.health)
            results["other_localstacks"] = len([p for p in others_before if not ls.info or p != ls.info.pid])
            say(f"machine: {m['cpu']}, nproc {m['nproc']} (cpu_count {m['cpu_count']}), {m['implementation']} "
                f"{m['python']}, {m['platform']}; LocalStack {m['localstack_version']}; "
                + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
            say(f"load average at start: {m['loadavg_start']}"
                + (f"; {results['other_localstacks']} other LocalStack process(es) on this machine"
                   + (" (not ours)" if ls.info else " (the one at --endpoint among them, if it runs here)")
                   if results["other_localstacks"] else ""))
            results["localstack"] = {"mode": ls.mode, "endpoint": ls.endpoint, "start_wall_s": ls.start_wall_s,
                                     "install_check_s": ls.install_check_s,
                                     "ready_seconds": ls.info.ready_seconds if ls.info else None,
                                     "pid": ls.info.pid if ls.info else None, "notes": ls.notes}
            results["bench"] = bench(args, ls, work)
        except (BenchError, DorcError) as exc:
            say(f"\nbenchmark failed: {exc}")
            code = 1
        finally:
            ls.close()
            if "localstack" in results:
                results["localstack"]["stopped"] = ls.stopped_check
    if code:
        return code
    results["loadavg_end"] = loadavg()
    say(f"\nload average at end: {results['loadavg_end']}")
    return benchlib.finish(results, markdown(results), args.json)


if __name__ == "__main__":
    sys.exit(main())
