"""The promotion rules (``dorc.promote``) against an in-memory backend.

``MemoryBackend`` is a real implementation of ``dorc.targets.deployments.Backend``: it records
deployments per environment (what the real backends keep in stack outputs or records) and
executions per environment, and reads the last run with ``last_execution_since`` exactly as the
real ones do. The plans are real ``LayerPlan``s of a throw-away project with preprod and prod
stack files; package digests are given to them as ``dorc.package.package_plan`` would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dorc.api import plan_layer
from dorc.errors import DorcError
from dorc.plan import LayerPlan
from dorc.project import find_project
from dorc.promote import PromotionRefused, diff, local_last_run, promote
from dorc.records import write_record
from dorc.result import RunResult, StepError
from dorc.targets.deployments import (Backend, Deployed, LastRun, Running, deployment_stamp, last_execution_since,
                                      running_differences)
from helpers import OK_HANDLER, chain_main, make_project

INSTANCE, LAYER = "demo", "main"
KEY = f"{INSTANCE}/{LAYER}"
# Values of the API_KEY environment variable: a secret, never to be printed by promotion.
SECRETS = {"preprod": "s3cr3t-preprod-value", "prod": "s3cr3t-prod-value"}
ROTATED_SECRET = "r0tated-s3cr3t-value"
API_KEY_ENV = 'environment={"API_KEY": config.get("api_key", "no-key")}'


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


PKG = {"f1": sha("f1 v1"), "f2": sha("f2 v1"), "f3": sha("f3 v1")}
PKG_F1_V2 = {**PKG, "f1": sha("f1 v2")}


# --- the in-memory backend -------------------------------------------------------------------


class MemoryBackend:
    """Deployments per (env, layer) in a dict; executions per env as ``ListExecutions`` items."""

    name = "memory"

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], Deployed] = {}
        self.executions: dict[str, list[dict]] = {}
        self.deploy_calls: list[tuple[str, dict[str, str] | None]] = []
        self.actual: dict[str, Running] = {}  # env -> what really runs there, when not the record

    def deployed(self, plan: LayerPlan) -> Deployed | None:
        return self.deployments.get((plan.env, plan.key))

    def running(self, deployed: Deployed) -> Running:
        """What runs: what was deployed, unless ``self.actual`` says another checkout changed it."""
        if deployed.env in self.actual:
            return self.actual[deployed.env]
        return running_as_recorded(deployed)

    def last_run(self, deployed: Deployed) -> LastRun:
        return last_execution_since(self.executions.get(deployed.env, []), deployed)

    def deploy(self, plan: LayerPlan, packages: dict[str, str] | None) -> Deployed:
        self.deploy_calls.append((plan.env, None if packages is None else dict(packages)))
        if packages is None:  # the local build: the plan's own packages
            packages = plan.packages()
            assert all(packages.values()), "the local build is deployed with its built packages"
        else:  # already in the artifact store: referred to by digest
            packages = dict(packages)
        record = Deployed(
            env=plan.env, packages=packages, plan_settings=plan.snapshot(),
            plan_digest=with_packages(plan, packages).digest(), deployed_at=deployment_stamp(),
            state_machine_arn=plan.state_machine_arn,
        )
        self.deployments[(plan.env, plan.key)] = record
        return record

    def execute(self, env: str, status: str, *, offset: timedelta = timedelta(seconds=5)) -> dict:
        """An execution of ``env``'s state machine started ``offset`` after its deployment."""
        (deployed,) = [d for (e, _), d in self.deployments.items() if e == env]
        since = datetime.fromisoformat(deployed.deployed_at.replace("Z", "+00:00"))
        runs = self.executions.setdefault(env, [])
        item = {"name": f"exec{len(runs) + 1}", "status": status, "startDate": since + offset}
        runs.append(item)
        return item


def running_as_recorded(deployed: Deployed) -> Running:
    """The ``Running`` of an environment that runs exactly what ``deployed`` records."""
    functions = {f["key"]: {"sha256": deployed.packages.get(f["key"]), "timeout": f["timeout"],
                            "memory": f["memory"], "runtime": f["runtime"], "handler": f["handler"],
                            "environment": dict(f["environment"])}
                 for f in deployed.plan_settings.get("functions", [])}
    return Running(functions, deployed.plan_settings.get("asl"), None)


class NonDeterministicBackend(MemoryBackend):
    """Deploys something other than what it was asked (a rebuild that came out different)."""

    def deploy(self, plan, packages):
        after = super().deploy(plan, packages)
        after.packages = {k: sha(f"rebuilt {v}") for k, v in after.packages.items()}
        return after


def test_memory_backend_keeps_deployments_per_environment(v):
    backend: Backend = MemoryBackend()
    assert backend.deployed(v["base"].preprod) is None
    local = backend.deploy(with_packages(v["base"].preprod, PKG), None)  # the local build
    assert local.packages == {"f1": PKG["f1"], "f2": PKG["f2"]}
    given = backend.deploy(v["base"].prod, {"f1": sha("x"), "f2": sha("y")})  # digests referred to
    assert given.packages == {"f1": sha("x"), "f2": sha("y")}
    assert backend.deployed(v["base"].preprod) is local and backend.deployed(v["base"].prod) is given
    assert (local.env, given.env) == ("preprod", "prod")
    assert local.plan_digest == with_packages(v["base"].preprod, PKG).digest() != given.plan_digest
    assert backend.last_run(local).status == "none"
    backend.execute("preprod", "SUCCEEDED")
    assert backend.last_run(local).status == "succeeded" and backend.last_run(given).status == "none"


# --- plans of a throw-away project -----------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One local definition of demo/main: its plans for preprod and prod (packages not built)."""

    preprod: LayerPlan
    prod: LayerPlan


def _variant(base: Path, name: str, main: str, functions: tuple[str, ...], secrets=SECRETS) -> Variant:
    root = make_project(base, {KEY: {"main": main, "functions": {f: OK_HANDLER for f in functions}}},
                        dirname=name)
    for env, secret in secrets.items():
        (root / "src" / INSTANCE / LAYER / f"Pulumi.{env}.yaml").write_text(
            f"config:\n  aws:region: eu-west-2\n  {INSTANCE}:api_key: {secret}\n")
    project = find_project(root)
    return Variant(plan_layer(project, INSTANCE, LAYER, "preprod"), plan_layer(project, INSTANCE, LAYER, "prod"))


@pytest.fixture(scope="module")
def v(tmp_path_factory) -> dict[str, Variant]:
    """base: f1 -> f2 (f1 reads API_KEY from the stack); and the same definition changed."""
    base = tmp_path_factory.mktemp("promote")
    return {
        "base": _variant(base, "base", chain_main("f1", "f2", f1=API_KEY_ENV), ("f1", "f2")),
        "added": _variant(base, "added", chain_main("f1", "f2", "f3", f1=API_KEY_ENV), ("f1", "f2", "f3")),
        "removed": _variant(base, "removed", chain_main("f1", f1=API_KEY_ENV), ("f1",)),
        "memory": _variant(base, "memory", chain_main("f1", "f2", f1=API_KEY_ENV + ", memory=1024"), ("f1", "f2")),
        "storage": _variant(base, "storage", chain_main("f1", "f2", f1=API_KEY_ENV + ", ephemeral_storage=2048"),
                            ("f1", "f2")),
        "logs": _variant(base, "logs", chain_main("f1", "f2", f1=API_KEY_ENV + ', log_format="JSON", log_level="WARN"'),
                         ("f1", "f2")),
        "secret": _variant(base, "secret", chain_main("f1", "f2", f1=API_KEY_ENV), ("f1", "f2"),
                           secrets={"preprod": ROTATED_SECRET, "prod": SECRETS["prod"]}),
    }


def with_packages(plan: LayerPlan, packages: dict[str, str]) -> LayerPlan:
    """The plan as ``package_plan`` leaves it: each function's package digest filled in."""
    return plan.model_copy(update={"functions": [
        f.model_copy(update={"package_sha256": packages[f.key]}) for f in plan.functions]})


def run_status(status: str, what: str = "local run 2024-01-01T00:00:00Z"):
    calls = []

    def last_run() -> LastRun:
        calls.append(status)
        return LastRun(status, None if status == "none" else "2024-01-01T00:00:00Z", what)

    last_run.calls = calls
    return last_run


def never_called() -> LastRun:
    raise AssertionError("promotion to prod must not look at local runs")


def to_preprod(backend, variant: Variant, packages=PKG, last_run=None, **kw):
    """As ``dorc promote --to preprod``: source and target are the local build for preprod."""
    built = with_packages(variant.preprod, packages)
    return promote(instance=INSTANCE, layer=LAYER, to="preprod", source_plan=built, target_plan=built,
                   local_packages=built.packages(), backend=backend,
                   local_last_run=last_run or run_status("succeeded"), **kw)


def to_prod(backend, variant: Variant, packages=PKG, **kw):
    """As ``dorc promote --to prod``: the local build for preprod is compared with preprod; the
    target is the (unbuilt) prod plan."""
    built = with_packages(variant.preprod, packages)
    return promote(instance=INSTANCE, layer=LAYER, to="prod", source_plan=built, target_plan=variant.prod,
                   local_packages=built.packages(), backend=backend, local_last_run=never_called, **kw)


@pytest.fixture
def preprod_ran(v) -> MemoryBackend:
    """base promoted to preprod with PKG, and one successful preprod execution since."""
    backend = MemoryBackend()
    to_preprod(backend, v["base"])
    backend.execute("preprod", "SUCCEEDED")
    backend.deploy_calls.clear()
    return backend


def assert_no_secret(text: str) -> None:
    for secret in (*SECRETS.values(), ROTATED_SECRET):
        assert secret not in text


# --- --to ------------------------------------------------------------------------------------


@pytest.mark.parametrize("to", ["local", "localstack", "production", "qa", ""])
def test_only_preprod_and_prod_can_be_promoted_to(v, to):
    backend = MemoryBackend()
    built = with_packages(v["base"].preprod, PKG)
    last_run = run_status("succeeded")
    with pytest.raises(DorcError) as exc:
        promote(instance=INSTANCE, layer=LAYER, to=to, source_plan=built, target_plan=built,
                local_packages=built.packages(), backend=backend, local_last_run=last_run,
                force=True, skip_checks=True)
    assert not isinstance(exc.value, PromotionRefused)
    assert exc.value.exit_code == 2
    assert exc.value.message == f"cannot promote to {to!r}"
    assert "--to preprod or --to prod" in exc.value.hint
    assert backend.deploy_calls == [] and last_run.calls == []


# --- local -> preprod ------------------------------------------------------------------------


@pytest.mark.parametrize("status,what", [
    ("none", "no local or LocalStack run recorded"),
    ("failed", "local run 2024-01-01T00:00:00Z"),
    ("stale", "local run 2024-01-01T00:00:00Z ran other sources; run the current build"),
])
def test_preprod_refused_unless_the_last_local_run_of_this_build_succeeded(v, status, what):
    backend = MemoryBackend()
    with pytest.raises(PromotionRefused) as exc:
        to_preprod(backend, v["base"], last_run=run_status(status, what))
    err = exc.value
    assert err.exit_code == 1
    assert err.message == (f"refused: the last run of {KEY} with this build did not succeed ({status}; {what})")
    assert "dorc run demo main --local or --localstack" in err.hint
    assert "--skip-checks" in err.hint
    assert backend.deploy_calls == [] and backend.deployed(v["base"].preprod) is None


@pytest.mark.parametrize("status", ["none", "failed", "stale", "running"])
def test_skip_checks_promotes_to_preprod_whatever_the_last_local_run(v, status):
    backend = MemoryBackend()
    result = to_preprod(backend, v["base"], last_run=run_status(status), skip_checks=True)
    assert result.checks_skipped is True
    assert result.packages == {"f1": PKG["f1"], "f2": PKG["f2"]}
    assert backend.deployed(v["base"].preprod).packages == result.packages


def test_preprod_receives_the_local_build(v):
    backend = MemoryBackend()
    last_run = run_status("succeeded")
    messages: list[str] = []
    result = to_preprod(backend, v["base"], last_run=last_run, progress=messages.append)
    assert last_run.calls == ["succeeded"]
    assert (result.instance, result.layer, result.source, result.target) == (INSTANCE, LAYER, "local", "preprod")
    assert result.packages == {"f1": PKG["f1"], "f2": PKG["f2"]}
    assert (result.drift, result.forced, result.checks_skipped) == ([], False, False)
    # the local build is deployed (built and uploaded), not packages referred to by digest
    assert backend.deploy_calls == [("preprod", None)]
    deployed = backend.deployed(v["base"].preprod)
    assert result.deployed is deployed
    assert deployed.packages == result.packages
    assert deployed.plan_settings == v["base"].preprod.snapshot()
    assert backend.deployed(v["base"].prod) is None
    assert result.changes == ["first deployment of preprod: 2 function(s)"]
    assert messages[0] == "source: the local build (2 package(s))"
    assert messages[-1].startswith("deploying preprod with the local packages: ")
    assert f"f1 {PKG['f1'][:12]}" in messages[-1] and f"f2 {PKG['f2'][:12]}" in messages[-1]


def test_a_second_promotion_to_preprod_lists_what_changed(v):
    backend = MemoryBackend()
    to_preprod(backend, v["base"])
    assert to_preprod(backend, v["base"]).changes == ["preprod already ran exactly this (no change)"]

    changed = to_preprod(backend, v["base"], packages=PKG_F1_V2)
    assert changed.changes == [f"function f1: package {PKG['f1'][:12]} -> {PKG_F1_V2['f1'][:12]}"]

    setting = to_preprod(backend, v["memory"], packages=PKG_F1_V2)
    assert setting.changes == ["setting functions[f1].memory: local 1024, previous preprod 512"]

    added = to_preprod(backend, v["added"], packages=PKG_F1_V2)
    assert f"function f3: added ({PKG['f3'][:12]})" in added.changes
    assert not any(c.startswith(("function f1", "function f2")) for c in added.changes)
    assert backend.deployed(v["base"].preprod).packages == {"f1": PKG_F1_V2["f1"], "f2": PKG["f2"], "f3": PKG["f3"]}


def test_a_changed_secret_is_reported_as_a_change_without_its_value(v):
    backend = MemoryBackend()
    to_preprod(backend, v["base"])
    result = to_preprod(backend, v["secret"])
    assert result.changes == ["setting functions[f1].environment.API_KEY: value changed"]
    assert_no_secret("\n".join(result.changes))


def test_a_function_removed_between_promotions_is_named_in_the_changes(v):
    backend = MemoryBackend()
    to_preprod(backend, v["added"])
    result = to_preprod(backend, v["base"])
    assert backend.deployed(v["base"].preprod).packages == {"f1": PKG["f1"], "f2": PKG["f2"]}
    assert any(c.startswith("function f3:") and "removed" in c for c in result.changes)
    assert f"function f3: removed (was {PKG['f3'][:12]})" in result.changes
    assert "setting functions[f3]: removed locally (still in previous preprod)" in result.changes


# --- preprod -> prod -------------------------------------------------------------------------


def test_prod_refused_when_preprod_is_not_deployed(v):
    backend = MemoryBackend()
    with pytest.raises(PromotionRefused) as exc:
        to_prod(backend, v["base"], force=True, skip_checks=True)
    assert exc.value.exit_code == 1
    assert exc.value.message == f"refused: {KEY} is not deployed to preprod on memory"
    assert exc.value.hint == "dorc promote demo main --to preprod first"
    assert backend.deploy_calls == []


def test_prod_receives_exactly_preprods_packages(v, preprod_ran):
    backend = preprod_ran
    preprod = backend.deployed(v["base"].preprod)
    messages: list[str] = []
    result = to_prod(backend, v["base"], progress=messages.append)
    assert (result.source, result.target, result.drift, result.forced, result.checks_skipped) == (
        "preprod", "prod", [], False, False)
    # preprod's digests are referred to, not rebuilt
    assert backend.deploy_calls == [("prod", preprod.packages)]
    assert result.packages == preprod.packages == {"f1": PKG["f1"], "f2": PKG["f2"]}
    prod = backend.deployed(v["base"].prod)
    assert result.deployed is prod and prod.env == "prod"
    assert prod.packages == preprod.packages
    assert prod.plan_settings == v["base"].prod.snapshot()  # prod's own settings (names, stack values)
    assert result.changes == ["first deployment of prod: 2 function(s)"]
    assert messages[0].startswith(f"source: preprod, deployed {preprod.deployed_at}, plan {preprod.plan_digest[:12]}")
    assert messages[-1].startswith("deploying prod with the same packages: ")
    # promoting again: prod already runs exactly this
    backend.deploy_calls.clear()
    again = to_prod(backend, v["base"])
    assert again.changes == ["prod already ran exactly this (no change)"]
    assert backend.deploy_calls == [("prod", preprod.packages)]


DRIFT = {
    "package differs": ("base", PKG_F1_V2, [
        f"function f1: package differs (local {PKG_F1_V2['f1'][:12]}, preprod {PKG['f1'][:12]})"]),
    "function added locally": ("added", PKG, ["function f3: not deployed in preprod (new locally)"]),
    "function removed locally": ("removed", PKG, [
        "function f2: deployed in preprod but no longer defined locally"]),
    "setting changed": ("memory", PKG, ["setting functions[f1].memory: local 1024, preprod 512"]),
    "environment value changed": ("secret", PKG, ["setting functions[f1].environment.API_KEY: value changed"]),
    "ephemeral storage changed": ("storage", PKG, ["setting functions[f1].ephemeral_storage: local 2048, preprod 512"]),
    "log format and level changed": ("logs", PKG, ['setting functions[f1].log_format: local "JSON", preprod "Text"',
                                                   'setting functions[f1].log_level: local "WARN", preprod null']),
    "package and setting": ("memory", PKG_F1_V2, [
        f"function f1: package differs (local {PKG_F1_V2['f1'][:12]}, preprod {PKG['f1'][:12]})",
        "setting functions[f1].memory: local 1024, preprod 512"]),
}


@pytest.mark.parametrize("case", list(DRIFT))
def test_prod_refused_when_the_local_build_drifts_from_preprod(v, preprod_ran, case):
    name, packages, expected = DRIFT[case]
    with pytest.raises(PromotionRefused) as exc:
        to_prod(preprod_ran, v[name], packages=packages, skip_checks=True)
    err = exc.value
    assert err.exit_code == 1
    head, *lines = err.message.splitlines()
    assert head == "refused: the local build differs from what preprod runs (drift):"
    for line in expected:
        assert f"  - {line}" in lines
    assert all(line.startswith("  - ") for line in lines)
    assert "--force" in err.hint and "deploy these changes to preprod" in err.hint
    assert_no_secret(str(err))
    assert preprod_ran.deploy_calls == [] and preprod_ran.deployed(v[name].prod) is None


@pytest.mark.parametrize("name", ["added", "removed"])
def test_a_drifted_setting_shows_two_different_values(v, preprod_ran, name):
    with pytest.raises(PromotionRefused) as exc:
        to_prod(preprod_ran, v[name])
    compared = [line.split(": local ", 1)[1].split(", preprod ", 1) for line in exc.value.message.splitlines()
                if line.startswith("  - setting ") and ": local " in line]
    assert compared  # e.g. "setting functions: local [...], preprod [...]"
    assert all(mine != theirs for mine, theirs in compared)


@pytest.mark.parametrize("name, function_line, setting_line", [
    ("added", "function f3: not deployed in preprod (new locally)",
     "setting functions[f3]: added locally (not in preprod)"),
    ("removed", "function f2: deployed in preprod but no longer defined locally",
     "setting functions[f2]: removed locally (still in preprod)"),
])
def test_a_function_added_or_removed_is_named_in_the_settings_drift(v, preprod_ran, name, function_line, setting_line):
    with pytest.raises(PromotionRefused) as exc:
        to_prod(preprod_ran, v[name])
    lines = exc.value.message.splitlines()[1:]
    assert f"  - {function_line}" in lines and f"  - {setting_line}" in lines
    assert not any(line.startswith("  - setting functions:") for line in lines)  # never the whole list
    assert_no_secret(exc.value.message)


def test_an_environment_value_is_never_printed_not_even_hashed(v, preprod_ran):
    with pytest.raises(PromotionRefused) as exc:
        to_prod(preprod_ran, v["secret"])
    (line,) = exc.value.message.splitlines()[1:]
    assert line == "  - setting functions[f1].environment.API_KEY: value changed"
    hashes = [hashlib.sha256(s.encode()).hexdigest()[:16] for s in (SECRETS["preprod"], ROTATED_SECRET)]
    assert not any(h in str(exc.value) for h in hashes)


@pytest.mark.parametrize("case", ["package differs", "function removed locally", "setting changed",
                                  "environment value changed"])
def test_force_promotes_preprods_packages_despite_drift(v, preprod_ran, case):
    name, packages, expected = DRIFT[case]
    preprod = preprod_ran.deployed(v["base"].preprod)
    messages: list[str] = []
    result = to_prod(preprod_ran, v[name], packages=packages, force=True, progress=messages.append)
    # the settings are the local definition's: a drifted one is said to be, never silently promoted
    settings = [d.removeprefix("setting ") for d in result.drift if d.startswith("setting ")]
    warnings = [m for m in messages if m.startswith("--force:")]
    if settings:
        (warning,) = warnings
        assert warning.startswith(f"--force: prod gets preprod's packages but the local definition's settings, "
                                  f"{len(settings)} of which preprod does not run: ")
        assert all(s in warning for s in settings)
        assert_no_secret(warning)
    else:
        assert warnings == []
    assert result.forced is True
    assert set(expected) <= set(result.drift)
    wanted = {f.key: preprod.packages[f.key] for f in v[name].prod.functions}
    assert result.packages == wanted  # preprod's packages, never the local build's
    assert preprod_ran.deploy_calls == [("prod", wanted)]
    assert preprod_ran.deployed(v[name].prod).packages == wanted


@pytest.mark.parametrize("skip_checks", [False, True])
def test_a_function_without_a_package_in_preprod_is_refused_even_with_force(v, preprod_ran, skip_checks):
    with pytest.raises(PromotionRefused) as exc:
        to_prod(preprod_ran, v["added"], force=True, skip_checks=skip_checks)
    assert exc.value.exit_code == 1
    assert exc.value.message == "refused: function(s) f3 have no package in preprod"
    assert exc.value.hint == "deploy them to preprod first"
    assert preprod_ran.deploy_calls == []


@pytest.mark.parametrize("executions,status,what", [
    ([], "none", "no execution of demo-main-preprod since it was deployed at "),
    ([("SUCCEEDED", -5)], "none", "no execution of demo-main-preprod since it was deployed at "),  # older code
    ([("FAILED", 5)], "failed", "execution exec1 (FAILED)"),
    ([("SUCCEEDED", 5), ("TIMED_OUT", 9)], "failed", "execution exec2 (TIMED_OUT)"),
    ([("SUCCEEDED", 5), ("ABORTED", 9)], "failed", "execution exec2 (ABORTED)"),
    ([("SUCCEEDED", 5), ("RUNNING", 9)], "running", "execution exec2 (RUNNING)"),
])
def test_prod_refused_unless_preprods_last_run_succeeded(v, executions, status, what):
    backend = MemoryBackend()
    to_preprod(backend, v["base"])
    for s, seconds in executions:
        backend.execute("preprod", s, offset=timedelta(seconds=seconds))
    with pytest.raises(PromotionRefused) as exc:
        to_prod(backend, v["base"])
    err = exc.value
    assert err.exit_code == 1
    assert err.message.startswith(f"refused: the last run of {KEY} in preprod did not succeed ({status}; {what}")
    assert "run it in preprod" in err.hint and "--skip-checks" in err.hint
    assert backend.deployed(v["base"].prod) is None

    result = to_prod(backend, v["base"], skip_checks=True)
    assert result.checks_skipped is True
    assert backend.deployed(v["base"].prod).packages == backend.deployed(v["base"].preprod).packages


def test_the_newest_preprod_execution_decides(v):
    backend = MemoryBackend()
    to_preprod(backend, v["base"])
    backend.execute("preprod", "FAILED", offset=timedelta(seconds=5))
    backend.execute("preprod", "SUCCEEDED", offset=timedelta(seconds=9))
    assert to_prod(backend, v["base"]).target == "prod"


def test_a_redeploy_of_preprod_needs_a_new_run(v):
    backend = MemoryBackend()
    to_preprod(backend, v["base"])
    backend.execute("preprod", "SUCCEEDED")
    redeployed = to_preprod(backend, v["base"], packages=PKG_F1_V2).deployed  # new code, not run yet
    since = datetime.fromisoformat(redeployed.deployed_at.replace("Z", "+00:00"))
    backend.executions["preprod"][0]["startDate"] = since - timedelta(milliseconds=1)  # ran the old code
    with pytest.raises(PromotionRefused, match=r"did not succeed \(none; no execution"):
        to_prod(backend, v["base"], packages=PKG_F1_V2)


def test_a_non_deterministic_build_is_an_error_not_a_promotion(v):
    backend = NonDeterministicBackend()
    with pytest.raises(DorcError) as exc:
        to_preprod(backend, v["base"])
    assert not isinstance(exc.value, PromotionRefused)
    assert exc.value.message.startswith("preprod was deployed with packages ")
    assert f"expected {{'f1': '{PKG['f1']}', 'f2': '{PKG['f2']}'}}" in exc.value.message
    assert "not deterministic" in exc.value.hint and "bug" in exc.value.hint

    honest = MemoryBackend()
    to_preprod(honest, v["base"])
    honest.execute("preprod", "SUCCEEDED")
    backend.deployments = honest.deployments
    backend.executions = honest.executions
    with pytest.raises(DorcError, match="prod was deployed with packages") as exc:
        to_prod(backend, v["base"])
    assert not isinstance(exc.value, PromotionRefused)
    assert "not deterministic" in exc.value.hint


# --- diff ------------------------------------------------------------------------------------


def _deployed(packages, settings, env="preprod") -> Deployed:
    return Deployed(env=env, packages=packages, plan_settings=settings, plan_digest=sha("plan"),
                    deployed_at="2024-05-01T12:00:00.000Z",
                    state_machine_arn="arn:aws:states:eu-west-2:000000000000:stateMachine:demo-main-preprod")


def test_diff_of_identical_builds_is_empty(v):
    built = with_packages(v["base"].preprod, PKG)
    assert diff("preprod", built.packages(), built.snapshot(), _deployed(built.packages(), built.snapshot())) == []


def test_diff_lists_each_difference_on_its_own_line():
    mine = {"timeout": 60, "tags": {"team": "a", "new": "x"},
            "functions": [{"key": "f1", "memory": 256, "environment": {"TOKEN": "h-mine", "ADDED": "h"}}]}
    theirs = {"timeout": 30, "tags": {"team": "b", "old": "y"},
              "functions": [{"key": "f1", "memory": 256, "environment": {"TOKEN": "h-theirs", "GONE": "h"}}]}
    out = diff("preprod", {"f1": sha("a"), "f2": sha("b")}, mine,
               _deployed({"f1": sha("a"), "f3": sha("c")}, theirs))
    assert out == [
        "function f2: not deployed in preprod (new locally)",
        "function f3: deployed in preprod but no longer defined locally",
        "setting functions[f1].environment.ADDED: added locally (not in preprod)",
        "setting functions[f1].environment.GONE: removed locally (still in preprod)",
        "setting functions[f1].environment.TOKEN: value changed",
        "setting tags.new: added locally (not in preprod)",
        "setting tags.old: removed locally (still in preprod)",
        'setting tags.team: local "a", preprod "b"',
        "setting timeout: local 60, preprod 30",
    ]
    assert not any("h-mine" in line or "h-theirs" in line for line in out)


def _setting_lines(mine, theirs) -> list[str]:
    return diff("preprod", {}, mine, _deployed({}, theirs))


F1 = {"key": "f1", "memory": 512, "environment": {"TOKEN": "h-f1"}}
F2 = {"key": "f2", "memory": 512, "environment": {"TOKEN": "h-f2"}}
F3 = {"key": "f3", "memory": 128, "environment": {"TOKEN": "h-f3"}}


@pytest.mark.parametrize("mine, theirs, expected", [
    pytest.param([F1, F2, F3], [F1, F2], ["setting functions[f3]: added locally (not in preprod)"], id="added"),
    pytest.param([F1], [F1, F2], ["setting functions[f2]: removed locally (still in preprod)"], id="removed"),
    pytest.param([F1, {**F2, "memory": 1024}], [F1, F2], ["setting functions[f2].memory: local 1024, preprod 512"],
                 id="changed"),
    pytest.param([F2, F1], [F1, F2], ["setting functions: order changed (local f2, f1; preprod f1, f2)"],
                 id="reordered"),
    pytest.param([F3, F1], [F1, F2], [
        "setting functions[f3]: added locally (not in preprod)",
        "setting functions[f2]: removed locally (still in preprod)",
    ], id="replaced-at-the-front"),
    pytest.param([F1, {**F2, "environment": {"TOKEN": "h-new"}}], [F1, F2],
                 ["setting functions[f2].environment.TOKEN: value changed"], id="environment"),
])
def test_lists_of_keyed_items_are_compared_key_by_key(mine, theirs, expected):
    out = _setting_lines({"functions": mine}, {"functions": theirs})
    assert out == expected
    assert not any("h-f" in line or "h-new" in line for line in out)


@pytest.mark.parametrize("mine, theirs, expected", [
    pytest.param([1, 2, 3], [1, 2], ["setting xs: 3 item(s) locally, 2 in preprod; local also has [2] 3"],
                 id="longer-locally"),
    pytest.param([1], [1, {"a": "b"}], ['setting xs: 1 item(s) locally, 2 in preprod; preprod also has [1] {"a": "b"}'],
                 id="longer-in-the-source"),
    pytest.param([1, 5, 3], [1, 2, 3], ["setting xs[1]: local 5, preprod 2"], id="first-difference"),
    pytest.param([0, 5, 6], [1, 2, 3], ["setting xs[0]: local 0, preprod 1"], id="only-the-first"),
    pytest.param([{"Next": "f3"}], [{"Next": "ok"}], ['setting xs[0].Next: local "f3", preprod "ok"'],
                 id="into-an-object"),
    pytest.param([9, 2], [1, 2, 3], ["setting xs[0]: local 9, preprod 1",
                                     "setting xs: 2 item(s) locally, 3 in preprod; preprod also has [2] 3"],
                 id="both"),
    pytest.param([[1, 2]], [[1]], ["setting xs[0]: 2 item(s) locally, 1 in preprod; local also has [1] 2"],
                 id="nested"),
    pytest.param([{"environment": {"K": "h-secret"}}], [], [
        "setting xs: 1 item(s) locally, 0 in preprod; local also has [0] {…}"], id="environment-never-shown"),
])
def test_other_lists_show_the_first_differing_index_and_the_length(mine, theirs, expected):
    assert _setting_lines({"xs": mine}, {"xs": theirs}) == expected


def test_long_values_are_shown_where_they_differ():
    common = "x" * 200
    (line,) = _setting_lines({"comment": common + "-local-end"}, {"comment": common + "-preprod-end"})
    mine, theirs = line.removeprefix("setting comment: local ").split(", preprod ")
    assert mine != theirs
    assert mine.startswith("…") and "-local-end" in mine and "-preprod-end" in theirs
    assert theirs.endswith(" (first difference at character 202)")
    assert len(mine) < 100
    short = _setting_lines({"n": "a" * 10}, {"n": "b" * 10})
    assert short == [f'setting n: local "{"a" * 10}", preprod "{"b" * 10}"']


# --- last_execution_since and deployment_stamp ------------------------------------------------


DEPLOYED_AT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def _execution(name: str, status: str, delta_ms: int) -> dict:
    return {"name": name, "status": status, "startDate": DEPLOYED_AT + timedelta(milliseconds=delta_ms)}


def test_deployment_stamp_is_utc_to_the_millisecond():
    before = datetime.now(timezone.utc)
    stamp = deployment_stamp()
    after = datetime.now(timezone.utc)
    assert stamp.endswith("Z") and len(stamp.split(".")[1]) == len("123Z")
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= parsed <= after


def test_executions_before_the_deployment_are_ignored():
    deployed = _deployed({}, {})
    assert deployed.deployed_at == "2024-05-01T12:00:00.000Z"
    runs = [_execution("old", "SUCCEEDED", -1), _execution("older", "FAILED", -60_000)]  # a moment before
    run = last_execution_since(runs, deployed)
    assert run == LastRun("none", None, "no execution of demo-main-preprod since it was deployed at "
                                        "2024-05-01T12:00:00.000Z")
    assert last_execution_since([], deployed).status == "none"


def test_the_newest_execution_since_the_deployment_wins():
    deployed = _deployed({}, {})
    runs = [_execution("b", "FAILED", 3000), _execution("old", "FAILED", -2000),
            _execution("c", "SUCCEEDED", 9000), _execution("a", "RUNNING", 1000)]
    run = last_execution_since(runs, deployed)
    assert run.status == "succeeded"
    assert run.when == (DEPLOYED_AT + timedelta(seconds=9)).isoformat()
    assert run.what == "execution c (SUCCEEDED)"


@pytest.mark.parametrize("sfn_status,status", [
    ("SUCCEEDED", "succeeded"), ("RUNNING", "running"), ("FAILED", "failed"),
    ("TIMED_OUT", "failed"), ("ABORTED", "failed"), ("PENDING_REDRIVE", "failed"),
])
def test_execution_status_mapping(sfn_status, status):
    run = last_execution_since([_execution("x", sfn_status, 10)], _deployed({}, {}))
    assert (run.status, run.what) == (status, f"execution x ({sfn_status})")


def test_without_a_deployment_time_every_execution_counts():
    deployed = _deployed({}, {})
    deployed.deployed_at = ""
    run = last_execution_since([_execution("ancient", "SUCCEEDED", -10**9)], deployed)
    assert (run.status, run.what) == ("succeeded", "execution ancient (SUCCEEDED)")


# --- local_last_run over real run records ------------------------------------------------------


SOURCES = {"f1": sha("src f1"), "f2": sha("src f2")}
T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def record(state_dir: Path, *, at: float, sources=SOURCES, failed=False, target="local", key=KEY) -> str:
    result = RunResult(pipeline=INSTANCE, layer=LAYER, target=target, env=target, started_at=at,
                       error=StepError("Boom", "it broke") if failed else None)
    write_record(state_dir, result, {"sources": {key: sources}})
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_no_record_means_no_run(tmp_path):
    assert local_last_run(tmp_path / ".dorc", KEY, SOURCES) == LastRun(
        "none", None, "no local or LocalStack run recorded")
    record(tmp_path, at=T0, key="demo/other")  # a run that did not cover demo/main
    assert local_last_run(tmp_path, KEY, SOURCES).status == "none"


def test_a_successful_run_of_these_sources(tmp_path):
    when = record(tmp_path, at=T0)
    assert local_last_run(tmp_path, KEY, SOURCES) == LastRun("succeeded", when, f"local run {when}")


def test_a_failed_run_of_these_sources(tmp_path):
    when = record(tmp_path, at=T0, failed=True)
    assert local_last_run(tmp_path, KEY, SOURCES) == LastRun("failed", when, f"local run {when}")


def test_a_run_of_other_sources_is_stale(tmp_path):
    when = record(tmp_path, at=T0, sources={**SOURCES, "f1": sha("src f1 edited")})
    run = local_last_run(tmp_path, KEY, SOURCES)
    assert run == LastRun("stale", when, f"local run {when} ran other sources; run the current build")
    # a new function since the run is another source too
    assert local_last_run(tmp_path, KEY, {**SOURCES, "f1": sha("src f1 edited"), "f3": sha("f3")}).status == "stale"


def test_the_newest_run_decides(tmp_path):
    record(tmp_path, at=T0, failed=True)
    when = record(tmp_path, at=T0 + 60)
    assert local_last_run(tmp_path, KEY, SOURCES).status == "succeeded"
    later = record(tmp_path, at=T0 + 120, failed=True)
    assert local_last_run(tmp_path, KEY, SOURCES) == LastRun("failed", later, f"local run {later}")
    assert when != later


def test_a_run_that_started_upstream_counts_for_this_layer(tmp_path):
    result = RunResult(pipeline=INSTANCE, layer="upstream", target="local", env="local", started_at=T0)
    write_record(tmp_path, result, {"sources": {"demo/upstream": {"u": sha("u")}, KEY: SOURCES}})
    assert local_last_run(tmp_path, KEY, SOURCES).status == "succeeded"


def test_only_local_and_localstack_runs_count(tmp_path):
    local = record(tmp_path, at=T0, failed=True)
    for i, target in enumerate(["aws", "preprod", "pulumi"]):
        record(tmp_path, at=T0 + 60 * (i + 1), target=target)  # newer, succeeded, but not on this machine
    assert local_last_run(tmp_path, KEY, SOURCES) == LastRun("failed", local, f"local run {local}")
    ls = record(tmp_path, at=T0 + 600, target="localstack")
    assert local_last_run(tmp_path, KEY, SOURCES) == LastRun("succeeded", ls, f"localstack run {ls}")


def test_promotion_to_preprod_reads_the_run_records(v, tmp_path):
    """The CLI's wiring: ``local_last_run`` over the project's state dir, with the current sources."""
    backend = MemoryBackend()

    def check() -> LastRun:
        return local_last_run(tmp_path, KEY, SOURCES)

    with pytest.raises(PromotionRefused, match=r"\(none; no local or LocalStack run recorded\)"):
        to_preprod(backend, v["base"], last_run=check)
    record(tmp_path, at=T0, sources={**SOURCES, "f2": sha("old f2")})
    with pytest.raises(PromotionRefused, match=r"\(stale; local run .* ran other sources"):
        to_preprod(backend, v["base"], last_run=check)
    record(tmp_path, at=T0 + 60, failed=True)
    with pytest.raises(PromotionRefused, match=r"\(failed; local run "):
        to_preprod(backend, v["base"], last_run=check)
    assert backend.deploy_calls == []
    record(tmp_path, at=T0 + 120)
    assert to_preprod(backend, v["base"], last_run=check).changes == ["first deployment of preprod: 2 function(s)"]


# --- what the source actually runs -------------------------------------------------------------


def _other_checkout(backend: MemoryBackend, env: str, **changes) -> Running:
    """What ``env`` runs once another checkout deployed there: the record's functions with
    ``changes`` (function key -> fields) applied; the record itself is left as it was."""
    actual = running_as_recorded(backend.deployments[(env, KEY)])
    for key, fields in changes.items():
        actual.functions[key] = None if fields is None else {**actual.functions[key], **fields}
    backend.actual[env] = actual
    return actual


@pytest.mark.parametrize("force, skip_checks", [(False, False), (True, True)])
def test_prod_refused_when_preprod_runs_other_code_than_its_record(v, force, skip_checks):
    """Another checkout deployed other code to preprod and ran it successfully: this build
    failed its own preprod run, and the record still names its packages."""
    backend = MemoryBackend()
    to_preprod(backend, v["base"])
    backend.execute("preprod", "FAILED", offset=timedelta(seconds=1))
    _other_checkout(backend, "preprod", f1={"sha256": sha("their f1")})
    backend.execute("preprod", "SUCCEEDED", offset=timedelta(seconds=9))  # their code's run
    with pytest.raises(PromotionRefused) as exc:
        to_prod(backend, v["base"], force=force, skip_checks=skip_checks)
    err = exc.value
    assert err.exit_code == 1
    assert err.message.splitlines() == [
        "refused: what preprod runs is not what its deployment record says (memory):",
        f"  - function f1: runs code {sha('their f1')[:12]}, recorded {PKG['f1'][:12]}",
    ]
    assert "another checkout" in err.hint and "dorc promote demo main --to preprod" in err.hint
    assert backend.deploy_calls[1:] == [] and backend.deployed(v["base"].prod) is None


@pytest.mark.parametrize("changes, line", [
    ({"f2": {"timeout": 3}}, "function f2: runs timeout 3, recorded 600"),
    ({"f1": {"environment": {"API_KEY": "0" * 16}}},  # the variables dorc sets are gone, API_KEY changed
     "function f1: runs other environment variable(s) API_KEY, DORC_ENV, DORC_PIPELINE, DORC_PROJECT, "
     "HOLDING_BUCKET"),
    ({"f2": None}, f"function f2: not there (recorded {PKG['f2'][:12]})"),
])
def test_prod_refused_when_preprods_functions_run_other_settings(v, preprod_ran, changes, line):
    _other_checkout(preprod_ran, "preprod", **changes)
    with pytest.raises(PromotionRefused) as exc:
        to_prod(preprod_ran, v["base"])
    assert f"  - {line}" in exc.value.message.splitlines()
    assert_no_secret(exc.value.message)


def test_a_changed_state_machine_definition_is_refused(v, preprod_ran):
    actual = _other_checkout(preprod_ran, "preprod")
    actual.asl = {**actual.asl, "Comment": "deployed from elsewhere"}
    with pytest.raises(PromotionRefused, match="  - state machine: runs another definition than recorded"):
        to_prod(preprod_ran, v["base"])


def test_only_an_execution_after_the_code_was_put_in_place_counts(v):
    """Another checkout deployed its code, ran it, then put this build's code back: the record is
    right again, but the successful execution ran their code (it predates the functions' change)."""
    backend = MemoryBackend()
    to_preprod(backend, v["base"])
    backend.execute("preprod", "SUCCEEDED", offset=timedelta(seconds=5))
    since = datetime.fromisoformat(backend.deployed(v["base"].preprod).deployed_at.replace("Z", "+00:00"))
    put_back = (since + timedelta(seconds=7)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    _other_checkout(backend, "preprod").changed_at = put_back
    with pytest.raises(PromotionRefused, match=rf"\(none; no execution of demo-main-preprod since it was deployed "
                                               rf"at {put_back}\)"):
        to_prod(backend, v["base"])
    backend.execute("preprod", "SUCCEEDED", offset=timedelta(seconds=9))
    assert to_prod(backend, v["base"]).packages == {"f1": PKG["f1"], "f2": PKG["f2"]}


def test_running_differences_of_what_runs_as_recorded_are_none(v, preprod_ran):
    deployed = preprod_ran.deployed(v["base"].preprod)
    assert running_differences(deployed, running_as_recorded(deployed)) == []
    replaced = running_as_recorded(deployed)
    replaced.functions["f1"]["environment"]["API_KEY"] = None  # replaced on this machine: not compared
    assert running_differences(deployed, replaced) == []
    gone = Running(running_as_recorded(deployed).functions, None)
    assert running_differences(deployed, gone) == ["state machine: not there"]


# --- the hand-over chain ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Variant]:
    """demo/main hands over to demo/next, which hands over to demo/last."""
    root = make_project(tmp_path_factory.mktemp("chain"), {
        KEY: {"main": chain_main("f1", handover="next"), "functions": {"f1": OK_HANDLER}},
        "demo/next": {"main": chain_main("g1", handover="last"), "functions": {"g1": OK_HANDLER}},
        "demo/last": {"main": chain_main("h1"), "functions": {"h1": OK_HANDLER}},
    })
    for layer in ("main", "next", "last"):
        for env in ("preprod", "prod"):
            (root / "src/demo" / layer / f"Pulumi.{env}.yaml").write_text("config:\n  aws:region: eu-west-2\n")
    project = find_project(root)
    return {layer: Variant(*(plan_layer(project, INSTANCE, layer, env) for env in ("preprod", "prod")))
            for layer in ("main", "next", "last")}


def test_a_layer_is_refused_where_its_hand_over_chain_is_not_deployed(chain):
    backend = MemoryBackend()
    pkgs = {"f1": PKG["f1"]}
    targets = [chain["next"].preprod, chain["last"].preprod]
    with pytest.raises(PromotionRefused) as exc:
        to_preprod(backend, chain["main"], packages=pkgs, handover_chain=targets)
    err = exc.value
    assert err.message == ("refused: demo/main hands over to demo/next -> demo/last, and demo/next, demo/last "
                           "are not deployed to preprod on memory")
    assert err.hint == ("promote the hand-over chain first, last layer first: dorc promote demo last --to preprod "
                        "then dorc promote demo next --to preprod")
    assert backend.deploy_calls == []

    backend.deploy(with_packages(chain["last"].preprod, {"h1": sha("h1")}), None)
    with pytest.raises(PromotionRefused, match=r"and demo/next is not deployed to preprod on memory") as exc:
        to_preprod(backend, chain["main"], packages=pkgs, handover_chain=targets, force=True, skip_checks=True)
    assert exc.value.hint == "promote the hand-over chain first, last layer first: dorc promote demo next --to preprod"

    backend.deploy(with_packages(chain["next"].preprod, {"g1": sha("g1")}), None)
    assert to_preprod(backend, chain["main"], packages=pkgs, handover_chain=targets).packages == pkgs


def test_prod_checks_the_chain_in_prod(chain):
    """The chain deployed in preprod says nothing about prod: even --force --skip-checks refuse."""
    backend = MemoryBackend()
    for layer, fn in (("last", "h1"), ("next", "g1")):
        backend.deploy(with_packages(chain[layer].preprod, {fn: sha(fn)}), None)
    pkgs = {"f1": PKG["f1"]}
    to_preprod(backend, chain["main"], packages=pkgs, handover_chain=[chain["next"].preprod, chain["last"].preprod])
    with pytest.raises(PromotionRefused, match="demo/next, demo/last are not deployed to prod on memory"):
        to_prod(backend, chain["main"], packages=pkgs, force=True, skip_checks=True,
                handover_chain=[chain["next"].prod, chain["last"].prod])
    assert backend.deployed(chain["main"].prod) is None


# --- local_last_run: the very packages and settings --------------------------------------------


BUILD = {"f1": sha("pkg f1"), "f2": sha("pkg f2")}


def _digests(expected: dict[tuple[str, bool], str]):
    """``plan_digest(env, packaged)`` as promotion computes it for the current definition."""
    asked = []

    def plan_digest(env: str, packaged: bool) -> str | None:
        asked.append((env, packaged))
        return expected.get((env, packaged))

    plan_digest.asked = asked
    return plan_digest


def _identity_record(state_dir: Path, *, at: float, target="localstack", sources=None, packages=None,
                     digest=None) -> str:
    result = RunResult(pipeline=INSTANCE, layer=LAYER, target=target, env=target, started_at=at)
    extra = {"sources": {KEY: sources} if sources else {}, "packages": {KEY: packages} if packages else {},
             "plan_digests": {KEY: digest}}
    write_record(state_dir, result, extra)
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_no_deploy_run_of_deployed_code_is_not_a_run_of_this_build(tmp_path):
    """``--no-deploy`` ran what was deployed (its record has packages, no sources)."""
    digest = _digests({("localstack", True): sha("plan with BUILD")})
    when = _identity_record(tmp_path, at=T0, packages={**BUILD, "f1": sha("old f1")}, digest=sha("old plan"))
    run = local_last_run(tmp_path, KEY, SOURCES, packages=BUILD, plan_digest=digest)
    assert run == LastRun("stale", when, f"localstack run {when} ran other packages (what was deployed, not this "
                                         "build); run the current build")
    later = _identity_record(tmp_path, at=T0 + 60, packages=BUILD, digest=sha("plan with BUILD"))
    assert local_last_run(tmp_path, KEY, SOURCES, packages=BUILD, plan_digest=digest) == LastRun(
        "succeeded", later, f"localstack run {later}")  # deployed code that is this very build counts
    assert digest.asked == [("localstack", True)]


def test_a_run_whose_settings_changed_since_is_stale(tmp_path):
    """Same function sources, but ``__main__.py`` changed (a timeout, a variable) after the run."""
    when = _identity_record(tmp_path, at=T0, target="local", sources=SOURCES, digest=sha("plan before the edit"))
    digest = _digests({("local", False): sha("plan after the edit")})
    run = local_last_run(tmp_path, KEY, SOURCES, packages=BUILD, plan_digest=digest)
    assert run == LastRun("stale", when, f"local run {when} ran other settings (the definition or its settings "
                                         "changed since); run the current build")
    assert digest.asked == [("local", False)]
    assert local_last_run(tmp_path, KEY, SOURCES, packages=BUILD,
                          plan_digest=_digests({("local", False): sha("plan before the edit")})).status == "succeeded"
    # a record without a plan digest proves no settings
    _identity_record(tmp_path, at=T0 + 60, target="local", sources=SOURCES, digest=None)
    assert local_last_run(tmp_path, KEY, SOURCES, packages=BUILD, plan_digest=digest).status == "stale"


def test_a_deploying_localstack_run_of_this_build(tmp_path):
    digest = _digests({("localstack", True): sha("plan")})
    when = _identity_record(tmp_path, at=T0, sources=SOURCES, packages=BUILD, digest=sha("plan"))
    assert local_last_run(tmp_path, KEY, SOURCES, packages=BUILD, plan_digest=digest).status == "succeeded"
    assert local_last_run(tmp_path, KEY, SOURCES, packages={**BUILD, "f2": sha("other")},
                          plan_digest=digest).what == f"localstack run {when} ran other packages; run the current build"


# --- what runs in AWS: the Pulumi backend reads it with boto3 (moto here) ----------------------


def test_the_pulumi_backend_reads_what_aws_runs(v, monkeypatch):
    """Stack outputs say what ``pulumi up`` meant to deploy; ``running`` asks Lambda and Step
    Functions what runs, and a function updated outside the stack shows as a difference."""
    import io
    import json
    import zipfile

    import boto3
    from moto import mock_aws

    from dorc.package import hex_digest
    from dorc.targets.pulumi.backend import PulumiBackend

    plan = v["base"].preprod
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("MOTO_ACCOUNT_ID", plan.account_id)):
        monkeypatch.setenv(var, value)
    with mock_aws():
        role = boto3.client("iam", region_name=plan.region).create_role(
            RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=plan.region)
        packages = {}
        for fn in plan.functions:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("lambda.py", f"def handler(event, context):\n    return {fn.key!r}\n")
            cfg = lam.create_function(FunctionName=fn.name, Runtime=fn.runtime, Role=role, Handler=fn.handler,
                                      Timeout=fn.timeout, MemorySize=fn.memory, Code={"ZipFile": buf.getvalue()},
                                      Environment={"Variables": fn.environment})
            packages[fn.key] = hex_digest(cfg["CodeSha256"])
        boto3.client("stepfunctions", region_name=plan.region).create_state_machine(
            name=plan.state_machine_name, definition=json.dumps(plan.asl), roleArn=role)
        built = with_packages(plan, packages)
        outputs = {"packages": packages, "plan_settings": built.snapshot(), "plan_digest": built.digest(),
                   "deployed_at": deployment_stamp(), "state_machine_arn": plan.state_machine_arn}

        class Outputs:
            def outputs(self, spec):
                return outputs

        backend = PulumiBackend(None, engine=Outputs())
        monkeypatch.setattr("dorc.targets.pulumi.backend.layer_stack", lambda project, p: None)
        deployed = backend.deployed(plan)
        running = backend.running(deployed)
        assert running.packages == packages and running.asl == plan.asl
        assert running.changed_at and running.changed_at.endswith("Z")
        assert running_differences(deployed, running) == []

        lam.update_function_configuration(FunctionName=plan.functions[1].name, Timeout=5)
        assert running_differences(deployed, backend.running(deployed)) == [
            "function f2: runs timeout 5, recorded 600"]
