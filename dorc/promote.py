"""Promotion: the target environment receives exactly what the source ran, never a rebuild.

    --to preprod   source = the local build (this checkout), checked by dorc's run records
    --to prod      source = what preprod runs, checked by preprod's own executions

Steps: read what the source runs (package digests + settings) -> build locally and compare
(drift) -> check the source's last run -> deploy the target with the source's packages.
Each refusal names its reason first; ``--force`` skips the drift check, ``--skip-checks`` the
last-run check. The environments behind a target are reached through ``Backend``.

What ``--force`` can promote is the source's packages: an environment's settings are recorded
only as a snapshot (environment values hashed), not as something to deploy from, so the target's
settings always come from the local definition. Without ``--force`` the drift check makes those
settings the source's; with it, a setting that drifted reaches the target although the source
never ran it, and promotion says so (progress, and ``drift`` in the result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .errors import DorcError
from .plan import LayerPlan
from .targets.deployments import Backend, Deployed, LastRun, running_differences, running_since

SOURCE_OF = {"preprod": "local", "prod": "preprod"}


class PromotionRefused(DorcError):
    exit_code = 1


@dataclass
class PromotionResult:
    instance: str
    layer: str
    source: str
    target: str
    packages: dict[str, str]
    drift: list[str] = field(default_factory=list)
    forced: bool = False
    checks_skipped: bool = False
    changes: list[str] = field(default_factory=list)
    deployed: Deployed | None = None
    target_name: str | None = None  # the deployment target ("pulumi", "localstack"), set by the caller

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``dorc promote``."""
        return {"instance": self.instance, "layer": self.layer, "from": self.source, "to": self.target,
                "target": self.target_name, "packages": self.packages, "drift": self.drift,
                "forced": self.forced, "checks_skipped": self.checks_skipped, "changes": self.changes,
                "plan_digest": self.deployed.plan_digest if self.deployed else None}


def diff(source: str, expected_packages: dict[str, str | None], expected_settings: dict[str, Any],
         actual: Deployed) -> list[str]:
    """Differences between the local build and what ``source`` runs, one line each."""
    out: list[str] = []
    for fn in sorted(set(expected_packages) | set(actual.packages)):
        mine, theirs = expected_packages.get(fn), actual.packages.get(fn)
        if theirs is None:
            out.append(f"function {fn}: not deployed in {source} (new locally)")
        elif mine is None:
            out.append(f"function {fn}: deployed in {source} but no longer defined locally")
        elif mine != theirs:
            out.append(f"function {fn}: package differs (local {mine[:12]}, {source} {theirs[:12]})")
    out += [f"setting {p}: {d}" for p, d in _settings_diff(expected_settings, actual.plan_settings, "", source)]
    return out


def _settings_diff(mine: Any, theirs: Any, path: str, source: str) -> list[tuple[str, str]]:
    """One (setting, difference) per difference: dicts key by key, lists of dicts with a "key"
    item by item (added, removed, changed, reordered), other lists at their first differing index
    and their length; an environment value is never shown, not even hashed."""
    if mine == theirs:
        return []
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return _members_diff(mine, theirs, sorted(set(mine) | set(theirs)),
                             lambda k: f"{path}.{k}" if path else str(k), source)
    if _is_secret(path):
        return [(path, "value changed")]
    if isinstance(mine, list) and isinstance(theirs, list):
        keyed_mine, keyed_theirs = _keyed(mine), _keyed(theirs)
        if keyed_mine is not None and keyed_theirs is not None:
            return _keyed_diff(keyed_mine, keyed_theirs, path, source)
        return _list_diff(mine, theirs, path, source)
    return [(path, _contrast(mine, theirs, source))]


def _members_diff(mine: dict[Any, Any], theirs: dict[Any, Any], keys: list[Any], name, source: str) -> list[tuple[str, str]]:
    """Member by member (``name(key)`` is the setting's path): added, removed, or changed inside."""
    out = []
    for k in keys:
        if k not in theirs:
            out.append((name(k), f"added locally (not in {source})"))
        elif k not in mine:
            out.append((name(k), f"removed locally (still in {source})"))
        else:
            out += _settings_diff(mine[k], theirs[k], name(k), source)
    return out


def _is_secret(path: str) -> bool:
    return path.endswith("environment") or ".environment." in path


def _keyed(items: list[Any]) -> dict[Any, dict[str, Any]] | None:
    """``items`` by their "key", if each is a dict with a distinct one."""
    if not all(isinstance(x, dict) and "key" in x for x in items):
        return None
    by_key = {x["key"]: x for x in items}
    return by_key if len(by_key) == len(items) else None


def _keyed_diff(mine: dict[Any, Any], theirs: dict[Any, Any], path: str, source: str) -> list[tuple[str, str]]:
    out = _members_diff(mine, theirs, list(mine) + [k for k in theirs if k not in mine], lambda k: f"{path}[{k}]",
                        source)
    order_mine, order_theirs = [k for k in mine if k in theirs], [k for k in theirs if k in mine]
    if order_mine != order_theirs:
        local, there = ", ".join(map(str, order_mine)), ", ".join(map(str, order_theirs))
        out.append((path, f"order changed (local {local}; {source} {there})"))
    return out


def _list_diff(mine: list[Any], theirs: list[Any], path: str, source: str) -> list[tuple[str, str]]:
    out = []
    first = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)
    if first is not None:  # the first difference only: after it, items may merely have shifted
        out += _settings_diff(mine[first], theirs[first], f"{path}[{first}]", source)
    if len(mine) != len(theirs):
        n = min(len(mine), len(theirs))
        longer, side = (mine, "local") if len(mine) > len(theirs) else (theirs, source)
        change = f"{len(mine)} item(s) locally, {len(theirs)} in {source}; {side} also has [{n}] {_short(longer[n])}"
        out.append((path, change))
    return out


_SHOWN = 80  # characters of a value shown in a difference


def _short(value: Any) -> str:
    text = json.dumps(value)
    if '"environment"' in text:  # environment values are never shown, not even hashed
        return "{…}"
    return text if len(text) <= _SHOWN else text[:_SHOWN - 1] + "…"


def _contrast(mine: Any, theirs: Any, source: str) -> str:
    """Both values; when either is long, the same stretch of each around their first difference."""
    a, b = json.dumps(mine), json.dumps(theirs)
    if len(a) <= _SHOWN and len(b) <= _SHOWN:
        return f"local {a}, {source} {b}"
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, at - _SHOWN // 4)

    def window(text: str) -> str:
        part = text[start:start + _SHOWN]
        return ("…" if start else "") + part + ("…" if start + _SHOWN < len(text) else "")

    return f"local {window(a)}, {source} {window(b)} (first difference at character {at})"


def promote(*, instance: str, layer: str, to: str, source_plan: LayerPlan, target_plan: LayerPlan,
            local_packages: dict[str, str], backend: Backend, local_last_run: Callable[[], LastRun],
            force: bool = False, skip_checks: bool = False, handover_chain: list[LayerPlan] = (),
            progress: Callable[[str], None] = lambda m: None) -> PromotionResult:
    """``source_plan`` and ``target_plan`` are the local definition's plans for the two envs;
    ``local_packages`` the digests of a fresh local build (the same for both envs);
    ``handover_chain`` the target env's plans of the layers this one hands over to, in order."""
    if to not in SOURCE_OF:
        raise DorcError(f"cannot promote to {to!r}", hint="use --to preprod or --to prod")
    source = SOURCE_OF[to]
    result = PromotionResult(instance, layer, source, to, packages={}, forced=force, checks_skipped=skip_checks)
    _require_chain(instance, layer, to, handover_chain, backend)
    if source == "local":
        packages = dict(local_packages)
        progress(f"source: the local build ({len(packages)} package(s))")
        run = local_last_run()
        if not skip_checks and run.status != "succeeded":
            raise PromotionRefused(
                f"refused: the last run of {instance}/{layer} with this build did not succeed ({run.status}; {run.what})",
                hint=f"run it first (dorc run {instance} {layer} --local or --localstack), or pass --skip-checks",
            )
    else:
        src = backend.deployed(source_plan)
        if src is None:
            raise PromotionRefused(
                f"refused: {instance}/{layer} is not deployed to {source} on {backend.name}",
                hint=f"dorc promote {instance} {layer} --to {source} first",
            )
        progress(f"source: {source}, deployed {src.deployed_at}, plan {src.plan_digest[:12]}")
        running = backend.running(src)
        unlike = running_differences(src, running)
        if unlike:  # the record is not what runs: its packages and its runs prove nothing
            lines = "\n".join(f"  - {d}" for d in unlike)
            raise PromotionRefused(
                f"refused: what {source} runs is not what its deployment record says ({backend.name}):\n{lines}",
                hint=f"another checkout or a change outside dorc deployed {instance}/{layer} to {source}: deploy "
                     f"the build to promote there (dorc promote {instance} {layer} --to {source}), run it, then "
                     f"promote; --force cannot promote packages {source} does not run")
        drift = diff(source, local_packages, source_plan.snapshot(), src)
        result.drift = drift
        if drift and not force:
            lines = "\n".join(f"  - {d}" for d in drift)
            raise PromotionRefused(
                f"refused: the local build differs from what {source} runs (drift):\n{lines}",
                hint=f"deploy these changes to {source} and test them there, or pass --force to promote "
                     f"{source}'s packages as they are",
            )
        drifted_settings = [d for d in drift if d.startswith("setting ")]
        if drifted_settings:  # forced: the packages are the source's, these settings are not
            progress(f"--force: {to} gets {source}'s packages but the local definition's settings, "
                     f"{len(drifted_settings)} of which {source} does not run: "
                     + "; ".join(d.removeprefix("setting ") for d in drifted_settings))
        missing = [f.key for f in target_plan.functions if f.key not in src.packages]
        if missing:
            raise PromotionRefused(f"refused: function(s) {', '.join(missing)} have no package in {source}",
                                   hint=f"deploy them to {source} first")
        # an execution counts only if it started after these very packages were put in place
        run = backend.last_run(replace(src, deployed_at=running_since(src, running)))
        if not skip_checks and run.status != "succeeded":
            raise PromotionRefused(
                f"refused: the last run of {instance}/{layer} in {source} did not succeed ({run.status}; {run.what})",
                hint=f"run it in {source} and check it, or pass --skip-checks",
            )
        packages = {f.key: src.packages[f.key] for f in target_plan.functions}
    result.packages = packages
    before = backend.deployed(target_plan)
    progress(f"deploying {to} with {'the same' if source != 'local' else 'the local'} packages: "
             + ", ".join(f"{k} {v[:12]}" for k, v in packages.items()))
    # From the local build the packages are built (deterministically) and uploaded; from an
    # environment they already are in the artifact store and are only referred to.
    after = backend.deploy(target_plan, None if source == "local" else packages)
    if after.packages != packages:
        raise DorcError(f"{to} was deployed with packages {after.packages}, expected {packages}",
                        hint="the build is not deterministic here; report this as a bug")
    result.deployed = after
    result.changes = _changes(before, after, to)
    return result


def _require_chain(instance: str, layer: str, to: str, chain: list[LayerPlan], backend: Backend) -> None:
    """A layer that hands over starts the next layer's state machine: promoting it where that
    one is not deployed gives a pipeline that fails at run time."""
    missing = [p.key for p in chain if backend.deployed(p) is None]
    if missing:
        # the end of the chain first: each layer needs the one it hands over to
        order = " then ".join(f"dorc promote {k.replace('/', ' ')} --to {to}" for k in reversed(missing))
        raise PromotionRefused(
            f"refused: {instance}/{layer} hands over to {' -> '.join(p.key for p in chain)}, and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not deployed to {to} on {backend.name}",
            hint=f"promote the hand-over chain first, last layer first: {order}")


def _changes(before: Deployed | None, after: Deployed, env: str) -> list[str]:
    if before is None:
        return [f"first deployment of {env}: {len(after.packages)} function(s)"]
    out = []
    for fn, sha in after.packages.items():
        old = before.packages.get(fn)
        if old is None:
            out.append(f"function {fn}: added ({sha[:12]})")
        elif old != sha:
            out.append(f"function {fn}: package {old[:12]} -> {sha[:12]}")
    for fn, old in before.packages.items():
        if fn not in after.packages:
            out.append(f"function {fn}: removed (was {old[:12]})")
    out += [f"setting {p}: {d}" for p, d in _settings_diff(after.plan_settings, before.plan_settings, "", f"previous {env}")]
    return out or [f"{env} already ran exactly this (no change)"]


def local_last_run(state_dir: Path, key: str, current_sources: dict[str, str], *,
                   packages: dict[str, str] | None = None,
                   plan_digest: Callable[[str, bool], str | None] | None = None) -> LastRun:
    """The newest dorc run (local or LocalStack) that covered layer ``key``, and whether it ran
    this very build: the record's function sources (what a local run or a deploying LocalStack
    run ran), its packages (what a LocalStack run ran: with ``--no-deploy``, what was deployed)
    and its plan digest (the settings: ``__main__.py``, ``Pulumi.<env>.yaml``). ``packages``:
    the local build's digests; ``plan_digest(env, packaged)``: the current definition's digest
    in a record's environment, with the local build's packages or (a local run) none."""
    from .records import read_records

    records = [r for r in read_records(state_dir) if r.get("target") in ("local", "localstack")
               and (key in (r.get("sources") or {}) or key in (r.get("packages") or {}))]
    if not records:
        return LastRun("none", None, "no local or LocalStack run recorded")
    last = records[-1]
    where = f"{last.get('target')} run {last.get('started_at')}"
    other = _ran_other(last, key, current_sources, packages, plan_digest)
    if other:
        return LastRun("stale", last.get("started_at"), f"{where} ran other {other}; run the current build")
    return LastRun(last.get("status", "unknown"), last.get("started_at"), where)


def _ran_other(record: dict[str, Any], key: str, sources: dict[str, str], packages: dict[str, str] | None,
               plan_digest: Callable[[str, bool], str | None] | None) -> str | None:
    """What a run record shows was not this build: "sources", "packages" or "settings"."""
    ran_sources = (record.get("sources") or {}).get(key)
    ran_packages = (record.get("packages") or {}).get(key)
    if ran_sources is not None and ran_sources != sources:
        return "sources"
    if ran_packages is not None and (packages is None or ran_packages != packages):
        return "packages (what was deployed, not this build)" if ran_sources is None else "packages"
    if plan_digest is not None:
        ran = (record.get("plan_digests") or {}).get(key)
        if ran is None or ran != plan_digest(record.get("env") or "", ran_packages is not None):
            return "settings (the definition or its settings changed since)"
    return None
