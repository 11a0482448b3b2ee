"""Reading a Step Functions execution (and the executions it hands over to) into a RunResult:
the same steps, errors and logs an in-process run records."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..plan import LayerPlan
from ..result import RunResult, StepError, StepResult
from .aws_deploy import TARGET, Clients

def execute(c: Clients, plans: dict[str, LayerPlan], start: str, event_json: bytes, observer,
            timeout: float) -> RunResult:
    plan = plans[start]
    result = RunResult(pipeline=plan.instance, layer=plan.layer, target=TARGET, env=plan.env)
    t0 = time.perf_counter()
    arn = c.states.start_execution(stateMachineArn=plan.state_machine_arn, name=f"dorc-{uuid.uuid4().hex[:20]}",
                                   input=event_json.decode())["executionArn"]
    result.execution_arn = arn
    reader = _HistoryReader(c, plans, result, observer)
    status, details = reader.follow(arn, timeout)
    result.duration_ms = (time.perf_counter() - t0) * 1000
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

    def follow(self, execution_arn: str, timeout: float) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        seen = 0
        open_step: dict[str, Any] | None = None
        sm_arn = execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        while True:
            events = self._history(execution_arn)
            for ev in events[seen:]:
                open_step = self._on_event(ev, sm_arn, open_step, deadline)
            seen = len(events)
            desc = self.c.states.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                events = self._history(execution_arn)
                for ev in events[seen:]:
                    open_step = self._on_event(ev, sm_arn, open_step, deadline)
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

    def _on_event(self, ev: dict[str, Any], sm_arn: str, open_step, deadline: float):
        kind = ev["type"]
        if kind == "TaskStateEntered":
            name = ev["stateEnteredEventDetails"]["name"]
            hit = self.by_state.get((sm_arn, name))
            if hit is not None:
                plan, fn = hit
                self.observer.step_started(plan.key, fn.key, fn.name)
                return {"plan": plan, "fn": fn, "input": ev["stateEnteredEventDetails"].get("input"),
                        "start": ev["timestamp"]}
            return {"handover": name, "start": ev["timestamp"]}
        if open_step is None:
            if kind in ("FailStateEntered",):
                return None
            return open_step
        if kind == "TaskSucceeded" and "fn" in open_step:
            payload = json.loads(ev["taskSucceededEventDetails"]["output"]).get("Payload")
            self._finish(open_step, ev, output=json.dumps(payload).encode(), error=None)
            return open_step | {"done": True}
        if kind == "TaskFailed" and "fn" in open_step:
            d = ev["taskFailedEventDetails"]
            self._finish(open_step, ev, output=None, error=_error_from(d.get("error", ""), d.get("cause", "")))
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

    def _finish(self, open_step, ev, *, output: bytes | None, error: StepError | None) -> None:
        plan, fn = open_step["plan"], open_step["fn"]
        logs, request_id, duration, memory = self._logs(fn, open_step["start"], ev["timestamp"])
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

    def _logs(self, fn, start, end) -> tuple[str, str | None, float | None, int | None]:
        """The invocation's CloudWatch lines (START..REPORT), written asynchronously: retry briefly."""
        t_start = int(start.timestamp() * 1000) - 2000
        t_end = int(end.timestamp() * 1000) + 5000
        for _ in range(20):
            try:
                events = self.c.logs.filter_log_events(logGroupName=fn.log_group, startTime=t_start, endTime=t_end)["events"]
            except Exception:
                events = []
            lines = [e["message"].rstrip("\n") for e in sorted(events, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))]
            chunk = _last_invocation(lines)
            if chunk and chunk[-1].startswith("REPORT"):
                return _parse_report(chunk)
            time.sleep(0.05)
        return "", None, None, None


def _last_invocation(lines: list[str]) -> list[str]:
    starts = [i for i, l in enumerate(lines) if l.startswith("START RequestId:")]
    if not starts:
        return []
    chunk = lines[starts[-1]:]
    for i, l in enumerate(chunk):
        if l.startswith("REPORT RequestId:"):
            return chunk[: i + 1]
    return chunk


def _parse_report(chunk: list[str]) -> tuple[str, str | None, float | None, int | None]:
    request_id = chunk[0].split("RequestId:", 1)[1].split()[0]
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
