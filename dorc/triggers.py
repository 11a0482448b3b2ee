"""Triggers, fired on purpose: the event a layer's ``CronTrigger`` or ``S3Trigger`` delivers, in
AWS's own shape, and a file put into the holding store starting every layer whose S3 trigger
matches it, as EventBridge does.

    trigger_event        the event one trigger delivers (``dorc run ... --trigger NAME [--key KEY]``)
    put_object           store a file (local store or LocalStack) and say which layers it starts
    wait_for_executions  LocalStack: the executions the real rules started, read as ``RunResult``s

Locally nothing listens to the store, so ``dorc.api.fire`` runs the layers ``put_object`` found;
in LocalStack the deployed rules fire by themselves and dorc only reads what they started.

The events match AWS's documented samples key for key: EventBridge's "Scheduled Event" (Lambda
developer guide, *Using Lambda with scheduled events*) and S3's "Object Created" event to
EventBridge (S3 user guide, *EventBridge event message structure*; no ``version-id``: the holding
store is not versioned).
"""

from __future__ import annotations

import mimetypes
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .describe import trigger_words
from .errors import DorcError
from .plan import LayerPlan, TriggerPlan
from .planning import plan_layer, reachable_plans
from .project import Project, find_project
from .registry import run_target
from .result import RunResult

S3_URL = re.compile(r"s3://(?P<bucket>[^/]+)/(?P<key>.+)")
SOURCE_IP = "127.0.0.1"  # where the PUT came from: this machine
APPEAR_WITHIN = 15.0  # seconds: how long LocalStack's EventBridge may take to start an execution


# -- the events -------------------------------------------------------------------------------

def _now(now: datetime | None) -> str:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(plan: LayerPlan, trigger: TriggerPlan, *, now: datetime | None = None) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" for ``trigger``'s rule, as its target receives it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": plan.account_id,
        "time": _now(now),
        "region": plan.region,
        "resources": [f"arn:aws:events:{plan.region}:{plan.account_id}:rule/{trigger.rule_name}"],
        "detail": {},
    }


def object_created_event(*, bucket: str, key: str, size: int, etag: str, region: str, account_id: str,
                         now: datetime | None = None) -> dict[str, Any]:
    """S3's "Object Created" event to EventBridge for a single PUT of ``key``."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account_id,
        "time": _now(now),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag, "sequencer": f"{time.time_ns():018X}"},
            "request-id": "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(16)),
            "requester": account_id,
            "source-ip-address": SOURCE_IP,
            "reason": "PutObject",
        },
    }


def pattern_matches(pattern: Any, event: Any) -> bool:
    """EventBridge's matching, for the patterns dorc writes: every field of the pattern is in the
    event, and a list matches when one of its values (a value, or ``{"prefix": ...}``) does."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(k in event and pattern_matches(v, event[k]) for k, v in pattern.items())
    if isinstance(pattern, list):
        return any(isinstance(event, str) and event.startswith(p["prefix"]) if isinstance(p, dict) and "prefix" in p
                   else p == event for p in pattern)
    return pattern == event


def trigger_bucket(trigger: TriggerPlan) -> str:
    return trigger.event_pattern["detail"]["bucket"]["name"][0]


def trigger_prefix(trigger: TriggerPlan) -> str:
    keys = trigger.event_pattern["detail"].get("object", {}).get("key", [{}])
    return keys[0].get("prefix", "")


def describe(trigger: TriggerPlan) -> str:
    """A trigger named in a message: a schedule by its expression, the way the user wrote it."""
    if trigger.kind == "cron":
        return f"{trigger.key} ({trigger.schedule_expression})"
    return f"{trigger.key} ({trigger_words(trigger)})"


# -- one trigger, fired by hand ---------------------------------------------------------------

def trigger_event(instance: str, layer: str | None, name: str, *, key: str | None = None, target: str = "local",
                  env: str | None = None, endpoint: str | None = None, project: Project | None = None,
                  config_repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """The event the trigger ``name`` of ``instance/layer`` delivers. An S3 trigger's event is
    about a real object (its size and etag): ``key``, or the newest object under the trigger's
    prefix, in the local store (``target="local"``) or in LocalStack's bucket."""
    project = project or find_project(config_repo)
    if layer is None:
        raise DorcError("--trigger fires one layer's trigger: name the layer",
                        hint=f"dorc run {instance} LAYER --trigger {name} (see dorc list)")
    env = env or run_target(target).DEFAULT_ENV
    plan = plan_layer(project, instance, layer, env)
    trigger = next((t for t in plan.triggers if t.key == name), None)
    if trigger is None:
        have = ", ".join(describe(t) for t in plan.triggers)
        raise DorcError(f"{instance}/{layer} has no trigger {name!r} ({project.display_path(Path(plan.main_file))})",
                        hint=f"its triggers: {have}" if have else
                        "it declares none: add trigger=CronTrigger(...) or S3Trigger(...) to its PipelineDefinition")
    if trigger.kind == "cron":
        if key is not None:
            raise DorcError(f"--key is for S3 triggers; {describe(trigger)} of {instance}/{layer} is a schedule",
                            hint="drop --key")
        return scheduled_event(plan, trigger)
    bucket, prefix = trigger_bucket(trigger), trigger_prefix(trigger)
    objects = _objects(project, bucket, target, plan.region, endpoint)
    under = sorted((k for k in objects if k.startswith(prefix)), key=lambda k: objects[k]["modified"])
    where = "LocalStack" if target == "localstack" else "the local store"
    put_hint = f"store one first: dorc store put s3://{bucket}/{prefix}FILE FILE --no-trigger" + \
               (" --localstack" if target == "localstack" else "")
    if key is None:
        if not under:
            raise DorcError(f"S3 trigger {name!r} of {instance}/{layer} fires for an object under "
                            f"s3://{bucket}/{prefix}, and {where} holds none", hint=put_hint)
        key = under[-1]  # the newest
    elif not key.startswith(prefix):
        raise DorcError(f"s3://{bucket}/{key} is not under s3://{bucket}/{prefix}: EventBridge would not start "
                        f"{instance}/{layer} for it (S3 trigger {name!r})",
                        hint=f"give a key that starts with {prefix!r}")
    elif key not in objects:
        shown = ", ".join(under[-5:]) or "none"
        raise DorcError(f"s3://{bucket}/{key} is not in {where}: the event would name an object that does not exist",
                        hint=f"{put_hint}; objects under the prefix: {shown}")
    meta = objects[key]
    return object_created_event(bucket=bucket, key=key, size=int(meta["size"]), etag=meta["etag"],
                                region=plan.region, account_id=plan.account_id)


def _objects(project: Project, bucket: str, target: str, region: str, endpoint: str | None) -> dict[str, dict]:
    """key -> {"size", "etag", "modified"} of one bucket, locally or in LocalStack."""
    if target != "localstack":
        from dorc_sim.aws import stored_objects

        return stored_objects(project.local_aws_dir, bucket)
    c = _clients(endpoint, region)
    out: dict[str, dict] = {}
    try:
        for page in c.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = {"size": obj["Size"], "etag": obj["ETag"].strip('"'),
                                   "modified": obj["LastModified"].timestamp()}
    except Exception as exc:
        _bucket_error(exc, bucket, c.endpoint)
    return out


def _clients(endpoint: str | None, region: str):
    from .localstack.endpoint import require_ready
    from .targets.localstack.clients import Clients

    return Clients(require_ready(endpoint), region)


def _bucket_error(exc: Exception, bucket: str, endpoint: str):
    from .targets.localstack.clients import error_code

    if error_code(exc) == "NoSuchBucket":
        raise DorcError(f"LocalStack at {endpoint} has no bucket {bucket}",
                        hint="deploy a layer first (dorc deploy INSTANCE LAYER --target localstack, or dorc run "
                             "... --localstack): the deployment creates the holding store") from None
    raise exc


# -- a file stored, and the layers it starts --------------------------------------------------

@dataclass
class Firing:
    """One layer that an S3 trigger starts for a stored object, with the event it receives."""
    instance: str
    layer: str
    trigger: str
    rule_name: str
    event: dict[str, Any]
    state_machine_arn: str = ""

    @property
    def key(self) -> str:
        return f"{self.instance}/{self.layer}"


@dataclass
class StoredObject:
    """What ``put_object`` stored, and which layers' S3 triggers match it."""
    bucket: str
    key: str
    size: int
    etag: str
    target: str
    env: str
    firings: list[Firing] = field(default_factory=list)
    not_deployed: list[Firing] = field(default_factory=list)  # LocalStack: matching, but no rule there
    skipped: list[str] = field(default_factory=list)  # layers whose definitions could not be planned
    s3_triggers: list[str] = field(default_factory=list)  # every S3 trigger of the env, in words
    endpoint: str | None = None
    existing: dict[str, set[str]] = field(default_factory=dict)  # LocalStack: executions before the put
    region: str = ""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str) -> tuple[str, str]:
    m = S3_URL.fullmatch(url)
    if not m:
        raise DorcError(f"{url!r} is not an S3 object URL", hint="write s3://BUCKET/KEY, e.g. s3://shop-holding-local/inbox/day.csv")
    return m["bucket"], m["key"]


def _s3_triggers(project: Project, env: str) -> tuple[list[tuple[LayerPlan, TriggerPlan]], list[str]]:
    """Every S3 trigger of the project's layers in ``env``; layers that cannot be planned are
    skipped (named): one broken definition must not stop a file from reaching the others."""
    found, skipped = [], []
    for instance in project.instances():
        for layer in project.layers(instance):
            try:
                plan = plan_layer(project, instance, layer, env)
            except DorcError as exc:
                skipped.append(f"{instance}/{layer} ({exc.message.splitlines()[0]}; see dorc validate)")
                continue
            found += [(plan, t) for t in plan.triggers if t.kind == "s3"]
    return found, skipped


def put_object(url: str, source: str | os.PathLike | bytes, *, target: str = "local", env: str | None = None,
               endpoint: str | None = None, content_type: str | None = None, project: Project | None = None,
               config_repo: str | os.PathLike | None = None) -> StoredObject:
    """Store ``source`` (a file's path, or bytes) at ``url`` (``s3://BUCKET/KEY``): in the local
    holding store, or (``target="localstack"``) in LocalStack's bucket. The result names every
    layer whose S3 trigger matches the object in ``env``, with the "Object Created" event each
    receives (``firings``); storing starts nothing by itself locally (``dorc.api.fire``)."""
    project = project or find_project(config_repo)
    bucket, key = parse_s3_url(url)
    if isinstance(source, bytes):
        body, name = source, key
    else:
        path = Path(source).expanduser()
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise DorcError(f"cannot read {path}: {exc.strerror or exc}", hint="give the path of a file to store") from None
        name = path.name
    content_type = content_type or mimetypes.guess_type(name)[0] or "binary/octet-stream"
    env = env or run_target(target).DEFAULT_ENV
    triggers, skipped = _s3_triggers(project, env)
    region = triggers[0][0].region if triggers else project.settings.region
    stored = StoredObject(bucket, key, len(body), "", target, env, skipped=skipped, region=region,
                          s3_triggers=[f"{p.key} {describe(t)}" for p, t in triggers])
    matching = [(p, t) for p, t in triggers if pattern_matches(t.event_pattern, _pattern_view(bucket, key))]
    if target == "localstack":
        c = _clients(endpoint, region)
        stored.endpoint = c.endpoint
        stored.not_deployed, deployed = _deployed(c, matching)
        stored.existing = {p.state_machine_arn: _execution_arns(c, p.state_machine_arn) for p, _ in deployed}
        try:
            c.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except Exception as exc:
            _bucket_error(exc, bucket, c.endpoint)
        stored.etag = c.s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        matching = deployed
    else:
        from dorc_sim.aws import put_stored_object

        stored.etag = put_stored_object(project.local_aws_dir, bucket, key, body, content_type)["etag"]
    for plan, trig in matching:
        event = object_created_event(bucket=bucket, key=key, size=len(body), etag=stored.etag,
                                     region=plan.region, account_id=plan.account_id)
        stored.firings.append(Firing(plan.instance, plan.layer, trig.key, trig.rule_name, event, plan.state_machine_arn))
    return stored


def _pattern_view(bucket: str, key: str) -> dict[str, Any]:
    """The fields of an "Object Created" event that a rule's pattern can look at."""
    return {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": bucket},
                                                                            "object": {"key": key}}}


def _deployed(c, matching: list[tuple[LayerPlan, TriggerPlan]]):
    """Split matching triggers into (not deployed to LocalStack, deployed): only a rule there fires."""
    from .targets.localstack.clients import error_code

    missing, deployed = [], []
    for plan, trig in matching:
        try:
            c.events.describe_rule(Name=trig.rule_name)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            missing.append(Firing(plan.instance, plan.layer, trig.key, trig.rule_name, {}, plan.state_machine_arn))
            continue
        deployed.append((plan, trig))
    return missing, deployed


def _execution_arns(c, state_machine_arn: str) -> set[str]:
    try:
        return {e["executionArn"] for e in c.states.get_paginator("list_executions")
                .paginate(stateMachineArn=state_machine_arn).build_full_result().get("executions", [])}
    except Exception:  # noqa: BLE001 - no state machine yet: no executions
        return set()


def wait_for_executions(stored: StoredObject, *, project: Project | None = None,
                        config_repo: str | os.PathLike | None = None, observer=None,
                        appear_within: float = APPEAR_WITHIN, timeout: float | None = None) -> list[tuple[Firing, RunResult | None]]:
    """LocalStack: for each layer the stored object's rules fire, the execution that started
    after the put (polled for ``appear_within`` seconds), followed to its end and read as a
    ``RunResult``; ``None`` when no execution started in time."""
    from .targets.localstack.history import follow_execution

    project = project or find_project(config_repo)
    if stored.target != "localstack":
        raise DorcError("wait_for_executions reads LocalStack's executions; locally use dorc.api.fire")
    c = _clients(stored.endpoint, stored.region)
    out = []
    for firing in stored.firings:
        plans = reachable_plans(project, [firing.key], stored.env)
        deadline = time.monotonic() + appear_within
        arn = None
        while arn is None and time.monotonic() < deadline:
            new = _execution_arns(c, firing.state_machine_arn) - stored.existing.get(firing.state_machine_arn, set())
            arn = min(new) if new else None
            if arn is None:
                time.sleep(0.2)
        if arn is None:
            out.append((firing, None))
            continue
        stored.existing.setdefault(firing.state_machine_arn, set()).add(arn)
        limit = timeout if timeout is not None else sum(fn.timeout for p in plans.values() for fn in p.functions) + 60.0
        out.append((firing, follow_execution(c, plans, firing.key, arn, observer or _null(), limit)))
    return out


def _null():
    from .observer import NullObserver

    return NullObserver()


__all__ = ["Firing", "StoredObject", "trigger_event", "put_object", "wait_for_executions", "scheduled_event",
           "object_created_event", "pattern_matches", "parse_s3_url"]
