"""Reading a Step Functions execution (and the executions it hands over to) into a RunResult:
the same steps, errors and logs an in-process run records."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ...observer import NullObserver
from ...plan import LayerPlan
from ...result import RunResult, StepError, StepResult
from .clients import TARGET, Clients, log_event_pages

LOG_WAIT = 10.0  # seconds: how long a finished step waits for its lines in CloudWatch Logs


def execute(c: Clients, plans: dict[str, LayerPlan], start: str, event_json: bytes, observer,
            timeout: float) -> RunResult:
    plan = plans[start]
    t0 = time.perf_counter()
    arn = c.states.start_execution(stateMachineArn=plan.state_machine_arn, name=f"dorc-{uuid.uuid4().hex[:20]}",
                                   input=event_json.decode())["executionArn"]
    return follow_execution(c, plans, start, arn, observer, timeout, t0=t0)


def follow_execution(c: Clients, plans: dict[str, LayerPlan], start: str, arn: str, observer,
                     timeout: float, *, t0: float | None = None) -> RunResult:
    """An execution of ``start``'s state machine, started by dorc or by anything else (an
    EventBridge rule), followed to its end and read into a ``RunResult``."""
    plan = plans[start]
    result = RunResult(pipeline=plan.instance, layer=plan.layer, target=TARGET, env=plan.env)
    started_here = t0 is not None
    t0 = time.perf_counter() if t0 is None else t0
    result.execution_arn = arn
    reader = _HistoryReader(c, plans, result, observer)
    status, details = reader.follow(arn, timeout)
    result.duration_ms = (time.perf_counter() - t0) * 1000
    if not started_here and details.get("startDate") and details.get("stopDate"):  # its own start, not ours
        result.started_at = details["startDate"].timestamp()
        result.duration_ms = (details["stopDate"] - details["startDate"]).total_seconds() * 1000
    if status == "SUCCEEDED":
        out = details.get("output")
        result.output_json = json.dumps(json.loads(out)).encode() if out is not None else None
    else:
        failed = result.failed_step
        if status == "TIMED_OUT_WAITING":
            result.error = StepError("dorc.ExecutionTimeout", details["message"])
        else:
            result.error = failed.error if failed and failed.error else StepError(
                details.get("error") or status, details.get("cause") or "")
    return result


def read_execution(c: Clients, plans: dict[str, LayerPlan], arn: str) -> tuple[RunResult, dict[str, Any]]:
    """An execution that anyone started (dorc, an S3 upload's rule, a schedule), read as it stands
    into a RunResult, and its ``describe_execution``; a running one is not waited for."""
    desc = c.states.describe_execution(executionArn=arn)
    sm_arn = desc["stateMachineArn"]
    plan = next(p for p in plans.values() if p.state_machine_arn == sm_arn)
    result = RunResult(pipeline=plan.instance, layer=plan.layer, target=TARGET, env=plan.env,
                       started_at=desc["startDate"].timestamp(), execution_arn=arn)
    reader = _HistoryReader(c, plans, result, NullObserver())
    reader.passive = True
    status, desc = reader.follow(arn, 0.0)
    stop = desc.get("stopDate")
    result.duration_ms = ((stop - desc["startDate"]).total_seconds() * 1000) if stop else 0.0
    if status == "SUCCEEDED":
        out = desc.get("output")
        result.output_json = json.dumps(json.loads(out)).encode() if out is not None else None
    elif status != "RUNNING":
        failed = result.failed_step
        result.error = failed.error if failed and failed.error else StepError(
            desc.get("error") or status, desc.get("cause") or "")
    return result, desc


def execution_history(sfn, arn: str) -> list[dict[str, Any]]:
    """Every event of an execution, all pages."""
    events, token = [], None
    while True:
        kw = {"executionArn": arn, "maxResults": 1000}
        if token:
            kw["nextToken"] = token
        page = sfn.get_execution_history(**kw)
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


class _HistoryReader:
    """Follows an execution (and the child executions it starts), emitting steps as they end."""

    def __init__(self, c: Clients, plans: dict[str, LayerPlan], result: RunResult, observer):
        self.c = c
        self.result = result
        self.observer = observer
        self.functions = {fn.arn: (p, fn) for p in plans.values() for fn in p.functions}
        self.by_state = {(p.state_machine_arn, fn.key): (p, fn) for p in plans.values() for fn in p.functions}
        self.claimed: set[str] = set()  # request ids whose logs an earlier step of this run took
        self.passive = False  # reading someone else's execution: never wait for it, never stop it

    def follow(self, execution_arn: str, timeout: float) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        seen = 0
        open_step: dict[str, Any] | None = None
        sm_arn = execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        while True:
            events = self._history(execution_arn)
            for ev in events[seen:]:
                open_step = self._on_event(ev, execution_arn, sm_arn, open_step, deadline)
            seen = len(events)
            desc = self.c.states.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING" or self.passive:
                events = self._history(execution_arn)
                for ev in events[seen:]:
                    open_step = self._on_event(ev, execution_arn, sm_arn, open_step, deadline)
                return desc["status"], desc
            if time.monotonic() > deadline:
                try:
                    self.c.states.stop_execution(executionArn=execution_arn, error="dorc.ExecutionTimeout",
                                                 cause=f"not finished after {timeout:.0f} s")
                except Exception:
                    pass
                return "TIMED_OUT_WAITING", {"message": f"execution {execution_arn} did not finish within "
                                                        f"{timeout:.0f} s; dorc stopped it"}
            time.sleep(0.05)

    def _history(self, arn: str) -> list[dict[str, Any]]:
        return execution_history(self.c.states, arn)

    def _on_event(self, ev: dict[str, Any], execution_arn: str, sm_arn: str, open_step, deadline: float):
        kind = ev["type"]
        if kind == "TaskStateEntered":
            name = ev["stateEnteredEventDetails"]["name"]
            hit = self.by_state.get((sm_arn, name))
            if hit is not None:
                plan, fn = hit
                self.observer.step_started(plan.key, fn.key, fn.name)
                return {"plan": plan, "fn": fn, "input": ev["stateEnteredEventDetails"].get("input"),
                        "start": ev["timestamp"], "execution": execution_arn, "state_machine": sm_arn}
            return {"handover": name, "start": ev["timestamp"]}
        if open_step is None:
            if kind in ("FailStateEntered",):
                return None
            return open_step
        if kind == "TaskSucceeded" and "fn" in open_step:
            result = json.loads(ev["taskSucceededEventDetails"]["output"])
            self._finish(open_step, ev, output=json.dumps(result.get("Payload")).encode(), error=None,
                         request_id=_request_id_in_result(result))
            return open_step | {"done": True}
        if kind == "TaskFailed" and "fn" in open_step:
            d = ev["taskFailedEventDetails"]
            self._finish(open_step, ev, output=None, error=_error_from(d.get("error", ""), d.get("cause", "")),
                         request_id=_request_id_from(d.get("cause", "")))
            return open_step | {"done": True}
        if kind == "TaskSubmitted" and "handover" in open_step:
            child = json.loads(ev["taskSubmittedEventDetails"]["output"]).get("ExecutionArn")
            if child:
                status, _ = self.follow(child, max(1.0, deadline - time.monotonic()))
            return open_step
        if kind == "ExecutionFailed" and open_step.get("done") and "fn" in open_step:
            d = ev.get("executionFailedEventDetails", {})
            step = self.result.steps[-1]
            if step.error is None:  # a Fail state after a successful invoke: the step failed the checks
                step.status = "failed"
                step.error = StepError(d.get("error", "States.Failed"), d.get("cause", ""))
                self.observer.step_finished(step)
        return open_step

    def _finish(self, open_step, ev, *, output: bytes | None, error: StepError | None,
                request_id: str | None = None) -> None:
        plan, fn = open_step["plan"], open_step["fn"]
        logs, request_id, duration, memory = self._logs(fn, open_step, request_id)
        for line in logs.splitlines():
            self.observer.log(line)
        if duration is None:
            duration = (ev["timestamp"] - open_step["start"]).total_seconds() * 1000
        inp = open_step.get("input")
        step = StepResult(
            function=fn.key, layer=plan.key, deployed_name=fn.name,
            status="succeeded" if error is None else "failed", duration_ms=duration,
            input_json=json.dumps(json.loads(inp)).encode() if inp is not None else None,
            output_json=output, error=error, request_id=request_id, logs=logs, max_memory_mb=memory,
        )
        self.result.steps.append(step)
        self.observer.step_finished(step)

    def _logs(self, fn, step: dict[str, Any], request_id: str | None) -> tuple[str, str | None, float | None, int | None]:
        """The step's own invocation in CloudWatch Logs (START..REPORT) and what its REPORT says.

        Which call is the step's: the one with ``request_id``, which the execution history names
        (a lambda:invoke result's ``SdkResponseMetadata``, as AWS returns it and dorc's LocalStack
        executor makes LocalStack return it; a failed call's error). Another execution of the same
        state machine running at the same time calls the same function: only the id tells the
        calls apart, never their order or timing. Without an id (a LocalStack not started by dorc)
        see ``_unnamed_call``.

        LocalStack writes a call's lines from another thread, some time after the call returned (and
        after Step Functions recorded the result), stamped with the time they are written: so no line
        of this step's call is older than the step, and they may arrive late. Poll until the call is
        complete (its REPORT line is there), for ``LOG_WAIT`` seconds at most."""
        since = int(step["start"].timestamp() * 1000)
        deadline = time.monotonic() + LOG_WAIT
        delay = 0.05
        partial: list[str] | None = None
        while True:
            calls = _invocations(self._log_events(fn.log_group, since))
            if request_id is None:
                chunk, complete = self._unnamed_call(calls, step)
                if chunk is None and complete:  # proven ambiguous: no lines rather than another run's
                    return _note(f"this step's call cannot be told apart from the calls of other executions "
                                 f"of {step['state_machine'].rsplit(':', 1)[-1]} that ran at the same time "
                                 "(the execution history names no request id)"), None, None, None
            else:
                chunk, complete = _pick_invocation(calls, request_id, self.claimed)
            if chunk and complete:
                self.claimed.add(_request_id_of(chunk[0]))
                return _parse_report(chunk)
            partial = chunk or partial
            if time.monotonic() >= deadline:
                if partial:  # the step's call, never completed in the logs: what there is of it
                    self.claimed.add(_request_id_of(partial[0]))
                    return "\n".join(partial) + "\n", _request_id_of(partial[0]), None, None
                if request_id is not None:
                    return _note(f"no lines of request {request_id} in {fn.log_group} after {LOG_WAIT:.0f} s"), \
                        request_id, None, None
                return "", None, None, None
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _unnamed_call(self, calls: list[tuple[list[str], bool]], step: dict[str, Any]) -> tuple[list[str] | None, bool]:
        """The step's call when the history names no request id: the first call of the function that
        started since the step began and that no earlier step of this run took (a function's calls
        are logged in the order they end, and the step's call ended before the next one of the same
        function could start) -- but only while no other execution of the step's state machine (the
        only caller of a dorc function) ran between ``LOG_WAIT`` seconds before the step and now:
        such an execution's calls (or their late lines) could be the first. Then ``(None, True)``:
        proven ambiguous, the step gets no lines rather than a guess."""
        chunk, complete = _pick_invocation(calls, None, self.claimed)
        if chunk is None:
            return None, False
        window_start = step["start"].timestamp() - LOG_WAIT
        if self._other_executions(step["state_machine"], step["execution"], window_start):
            return None, True
        return chunk, complete

    def _other_executions(self, sm_arn: str, own_arn: str, since: float) -> bool:
        """True when an execution of ``sm_arn`` other than ``own_arn`` was running at any time since
        ``since`` (epoch seconds), or when that cannot be read."""
        kw: dict[str, Any] = {"stateMachineArn": sm_arn, "maxResults": 1000}
        try:
            for _ in range(20):
                page = self.c.states.list_executions(**kw)
                for ex in page.get("executions", []):
                    if ex["executionArn"] == own_arn:
                        continue
                    stop = ex.get("stopDate")
                    if stop is None or stop.timestamp() >= since:
                        return True
                kw["nextToken"] = page.get("nextToken")
                if not kw["nextToken"]:
                    return False
        except Exception:  # noqa: BLE001 - cannot prove there were none
            return True
        return True

    def _log_events(self, log_group: str, since_ms: int) -> list[dict[str, Any]]:
        """The log group's events since ``since_ms`` (all pages); none while the group does not exist yet."""
        events: list[dict[str, Any]] = []
        try:
            for page in log_event_pages(self.c.logs, log_group, since_ms, max_pages=50):  # a test's group holds far fewer
                events += page
        except Exception:  # noqa: BLE001 - not created yet (the first call's lines create it), or a hiccup
            pass
        return events


def _request_id_of(start_line: str) -> str:
    return start_line.split("RequestId:", 1)[1].split()[0]


def _invocations(events: list[dict[str, Any]]) -> list[tuple[list[str], bool]]:
    """The calls in ``events``: (lines from START to REPORT, complete?), oldest first. A call's lines
    are in one log stream, in order; lines outside a START..REPORT frame are left out."""
    streams: dict[str, list[tuple[int, int, str]]] = {}
    for i, e in enumerate(events):
        streams.setdefault(e.get("logStreamName", ""), []).append((e["timestamp"], i, e["message"].rstrip("\n")))
    calls: list[tuple[int, int, list[str], bool]] = []
    for lines in streams.values():
        lines.sort(key=lambda t: (t[0], t[1]))
        current: list[str] | None = None
        first = (0, 0)
        for ts, i, line in lines:
            if line.startswith("START RequestId:"):
                if current:
                    calls.append((*first, current, False))
                current, first = [line], (ts, i)
            elif current is not None:
                current.append(line)
                if line.startswith("REPORT RequestId:"):
                    calls.append((*first, current, True))
                    current = None
        if current:
            calls.append((*first, current, False))
    calls.sort(key=lambda c: (c[0], c[1]))
    return [(lines, complete) for _, _, lines, complete in calls]


def _pick_invocation(calls: list[tuple[list[str], bool]], request_id: str | None,
                     claimed: set[str]) -> tuple[list[str] | None, bool]:
    for lines, complete in calls:
        rid = _request_id_of(lines[0])
        if request_id is not None:
            if rid == request_id:
                return lines, complete
        elif rid not in claimed:
            return lines, complete  # the first unclaimed call: wait for it to complete, not skip it
    return None, False


def _request_id_in_result(result: Any) -> str | None:
    """The Lambda call's request id in a lambda:invoke result: ``SdkResponseMetadata.RequestId``, or
    the ``x-amzn-RequestId`` header in ``SdkHttpMetadata`` (AWS returns both)."""
    if not isinstance(result, dict):
        return None
    rid = (result.get("SdkResponseMetadata") or {}).get("RequestId")
    if not rid:
        headers = (result.get("SdkHttpMetadata") or {}).get("HttpHeaders") or {}
        rid = next((v for k, v in headers.items() if k.lower() == "x-amzn-requestid"), None)
    return rid if isinstance(rid, str) and rid else None


def _note(text: str) -> str:
    """What a step's logs hold when dorc cannot show its call's lines: why, and no one else's lines."""
    return f"[dorc] no logs: {text}\n"


def _request_id_from(cause: str) -> str | None:
    """The request id a Lambda error names (dorc's runtime adds it, as Lambda does)."""
    try:
        doc = json.loads(cause)
    except ValueError:
        return None
    rid = doc.get("requestId") if isinstance(doc, dict) else None
    return rid if isinstance(rid, str) and rid else None


def _parse_report(chunk: list[str]) -> tuple[str, str | None, float | None, int | None]:
    request_id = _request_id_of(chunk[0])
    duration = memory = None
    for part in chunk[-1].split("\t"):
        part = part.strip()
        if part.startswith("Duration:"):
            duration = float(part.split()[1])
        elif part.startswith("Max Memory Used:"):
            memory = int(part.split()[3])
    return "\n".join(chunk) + "\n", request_id, duration, memory


def _error_from(error: str, cause: str) -> StepError:
    """Lambda errors arrive with the function's error JSON as the cause."""
    try:
        doc = json.loads(cause)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "errorMessage" in doc:
        return StepError(error or doc.get("errorType", "Error"), doc["errorMessage"], doc.get("stackTrace") or [])
    return StepError(error, cause)


def invoke(c: Clients, plan: LayerPlan, function: str, event_json: bytes) -> StepResult:
    """One deployed function invoked directly (``Invoke``, its log tail read back): the same
    ``StepResult`` as a local ``invoke_function``. Only Lambda's rules apply, as in AWS: a
    non-2xx ``statusCode`` is a successful invocation."""
    import base64

    fn = plan.function(function)
    t0 = time.perf_counter()
    resp = c.awslambda.invoke(FunctionName=fn.name, Payload=event_json, LogType="Tail")
    wall_ms = (time.perf_counter() - t0) * 1000
    payload = resp["Payload"].read()
    logs = base64.b64decode(resp.get("LogResult") or b"").decode("utf-8", "replace")
    lines = [line for line in logs.splitlines() if line]
    start = next((i for i, line in enumerate(lines) if line.startswith("START RequestId:")), None)
    if start is not None and lines[-1].startswith("REPORT RequestId:"):
        logs, request_id, duration, memory = _parse_report(lines[start:])
    else:
        request_id, duration, memory = resp["ResponseMetadata"].get("RequestId"), None, None
    error = None
    if resp.get("FunctionError"):
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None
        error = (StepError(doc.get("errorType", "Error"), doc.get("errorMessage", ""), doc.get("stackTrace") or [])
                 if isinstance(doc, dict) else StepError(resp["FunctionError"], payload.decode("utf-8", "replace")))
    return StepResult(
        function=fn.key, layer=plan.key, deployed_name=fn.name, status="failed" if error else "succeeded",
        duration_ms=duration if duration is not None else wall_ms, input_json=event_json,
        output_json=None if error else json.dumps(json.loads(payload)).encode(), error=error,
        request_id=request_id, logs=logs, max_memory_mb=memory,
    )
