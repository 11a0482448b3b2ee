"""``dorc init`` and ``dorc new``: a new config repo, and a new layer in it, that validate and run
green as written, so a user's first pipeline starts from something that works.

Nothing is ever overwritten: every target path is checked first (a refusal writes nothing), then
each file is created exclusively (``open(path, "x")``). The names given are checked with the
rules ``dorc validate`` applies (the models' field rules, the folder-name rule and the AWS limits
of the plan, for every environment the project knows) before anything is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from .errors import DorcError, ProjectError
from .loader import LoadedPipeline
from .models import CronTrigger, Function, InvalidFunction, NextFunction, PipelineDefinition, S3Trigger
from .pipeline import PipelineConfig
from .plan import bucket_name_problem, build_plan, plan_problems, pulumi_project_name
from .planning import environments
from .project import LOCAL_ENVS, SETTINGS_FILE, Project, config_root_above, find_project
from .validate import AWS_NAME_PART_RE, HANDLER_FILE

DEFAULT_DIR = "pipeline-config"
DEFAULT_REGION = "eu-west-2"
DEPLOYED_ENVS = ("preprod", "prod")
# `<project>-holding-<env>` must fit S3's 63 characters with room for an environment's name
PROJECT_NAME_MAX = 40


@dataclass
class Scaffold:
    """What ``init_project`` or ``new_layer`` wrote: the folder and each file created."""

    root: Path
    files: list[Path] = field(default_factory=list)
    project_name: str = ""


# -- dorc init -------------------------------------------------------------------------------

def init_project(directory: str | Path | None = None, *, name: str | None = None,
                 region: str = DEFAULT_REGION) -> Scaffold:
    """A new config repo at ``directory`` (default ``./pipeline-config``, which dorc finds from the
    current folder): ``dorc.toml``, the ``universal`` and ``infra`` programs, ``src/``, ``tests/``
    with a ``pytest.ini`` pointing dorc's pytest plugin at it, and ``.gitignore``.

    ``name``: the project's name (part of S3 bucket names); default the folder's name, or the name
    of the folder holding it when the folder is called ``pipeline-config``."""
    if directory is None:
        here = Path.cwd()
        inside = config_root_above(here)
        if inside is not None:  # not a repo nested in a repo
            raise ProjectError(f"{inside} already holds a {SETTINGS_FILE}: you are inside a dorc config repo",
                               hint="add a layer with `dorc new INSTANCE LAYER --functions a,b`, or pass a "
                                    "new folder: `dorc init DIR`")
        directory = here / DEFAULT_DIR
    root = Path(directory).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise ProjectError(f"{root} exists and is not a folder", hint="pass a new or empty folder: dorc init DIR")
    if (root / SETTINGS_FILE).is_file():
        raise ProjectError(f"{root / SETTINGS_FILE} already exists: {root} is a dorc config repo; nothing written",
                           hint="add a layer with `dorc new INSTANCE LAYER --functions a,b`, or pick another folder")
    project = _project_name(root, name)
    problem = bucket_name_problem(f"{project}-holding-preprod") or bucket_name_problem(f"{project}-artifacts")
    if problem:
        raise ProjectError(f"project name {project!r} cannot name the project's S3 buckets: {problem}",
                           hint="pass --name with lower-case letters, digits and '-', e.g. --name my-data")
    files = {
        SETTINGS_FILE: dorc_toml(project, region),
        ".gitignore": GITIGNORE,
        "pytest.ini": PYTEST_INI,
        "universal/__main__.py": UNIVERSAL_MAIN,
        "universal/Pulumi.yaml": pulumi_yaml(pulumi_project_name(project, "universal"),
                                             "dorc shared artifact bucket (stack `universal`)"),
        "universal/Pulumi.universal.yaml": stack_yaml(region),
        "infra/__main__.py": INFRA_MAIN,
        "infra/Pulumi.yaml": pulumi_yaml(pulumi_project_name(project, "infra"),
                                         "dorc roles and holding bucket per environment (stacks `infra-<env>`)"),
        **{f"infra/Pulumi.{env}.yaml": stack_yaml(region) for env in DEPLOYED_ENVS},
        "src/.gitkeep": "",
        "tests/test_pipelines.py": PROJECT_TEST,
    }
    return Scaffold(root=root, files=_write_all(root, files, root), project_name=project)


def _project_name(root: Path, name: str | None) -> str:
    if name is not None:
        if len(name) > PROJECT_NAME_MAX:
            raise ProjectError(f"project name {name!r} is {len(name)} characters; use at most {PROJECT_NAME_MAX} "
                               "(it names S3 buckets, `<project>-holding-<env>`, which S3 limits to 63)",
                               hint="pass a shorter --name")
        return name
    folder = root.parent.name if root.name == DEFAULT_DIR and root.parent.name else root.name
    slug = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", folder.lower()))
    slug = slug[:PROJECT_NAME_MAX].strip("-")
    if not slug:
        raise ProjectError(f"no project name can be made from the folder name {folder!r}",
                           hint="pass --name with lower-case letters, digits and '-', e.g. --name my-data")
    return slug if len(slug) >= 3 else f"{slug}-data"


def dorc_toml(project: str, region: str) -> str:
    return f'''# Project-wide settings for every pipeline under src/. Templates: {{project}} {{env}} {{region}}.
[project]
name = "{project}"          # part of the S3 bucket names below: lower-case letters, digits, '-'
region = "{region}"
source = "src"

[buckets]
holding = "{{project}}-holding-{{env}}"     # between layers
artifacts = "{{project}}-artifacts"       # function packages (universal stack)

[logs]
retention_days = 14

# On this machine (dorc run --local, --localstack) these variables replace the ones functions
# declare; "{{sim.<name>}}" starts the fixture [fixtures.<name>] on 127.0.0.1 (see dorc's README).
# [local.environment]
# SOURCE_API_URL = "{{sim.source_api}}/v1"
'''


GITIGNORE = """\
# dorc's local state: run records and the local holding store
.dorc/
__pycache__/
"""

PYTEST_INI = """\
# `pytest` here runs the tests under tests/ with dorc's fixtures (dorc_run, dorc_invoke, dorc_aws)
# on this config repo.
[pytest]
dorc_config_repo = .
testpaths = tests
"""

UNIVERSAL_MAIN = '''"""The `universal` stack: the artifact bucket every environment's functions are deployed from.

Deploy it once, before any infra-<env> or layer stack: `dorc deploy universal`.
Preview offline: `dorc plan universal`.
"""

from dorc import CreateUniversal

CreateUniversal.for_stack(__file__).export()
'''

INFRA_MAIN = '''"""The `infra-<env>` stack: one IAM role per service and the holding bucket of an environment.

Deploy it per environment, after `universal` and before the layers: `dorc deploy infra --env prod`.
Preview offline: `dorc plan infra --env prod`. Each environment is an `infra/Pulumi.<env>.yaml`.
"""

from dorc import CreateInfra

CreateInfra.for_stack(__file__).export()
'''

PROJECT_TEST = '''"""Every pipeline of this config repo is valid (what `dorc validate` checks).

Run `pytest` in this folder; pytest.ini points dorc's pytest plugin at it.
"""

from dorc.api import validate


def test_every_pipeline_is_valid(dorc_project):
    problems = {key: [str(p) for p in found] for key, found in validate(dorc_project).items() if found}
    assert problems == {}
'''


def pulumi_yaml(name: str, description: str) -> str:
    return f"name: {name}\ndescription: {description}\nruntime: python\n"


def stack_yaml(region: str) -> str:
    return f"config:\n  aws:region: {region}\n"


# -- dorc new --------------------------------------------------------------------------------

HOLDING_ALIAS = "holding"
HOLDING_TEMPLATE = "{project}-holding-{env}"


def parse_trigger(text: str) -> CronTrigger | S3Trigger:
    """``cron:EXPR`` (EventBridge's six fields) or ``s3:BUCKET/PREFIX``, checked by the models.
    ``s3:holding/PREFIX`` names the holding store of each environment (``{project}-holding-{env}``),
    so the same trigger fires locally, in LocalStack and in AWS."""
    kind, sep, rest = text.partition(":")
    try:
        if sep and kind == "cron":
            return CronTrigger(name="schedule", cron=rest)
        if sep and kind == "s3":
            bucket, _, prefix = rest.partition("/")
            if bucket == HOLDING_ALIAS:  # the holding store of whichever environment the layer runs in
                bucket = HOLDING_TEMPLATE
            return S3Trigger(name="upload", bucket_name=bucket, key_prefix=prefix)
    except ValidationError as exc:
        raise DorcError(f"--trigger {text!r}: {_messages(exc)}",
                        hint="e.g. --trigger 'cron:0 6 * * ? *' or --trigger s3:my-bucket/incoming/") from None
    raise DorcError(f"--trigger {text!r} is neither cron:EXPR nor s3:BUCKET/PREFIX",
                    hint="e.g. --trigger 'cron:0 6 * * ? *' or --trigger s3:my-bucket/incoming/")


def new_layer(instance: str, layer: str, functions: list[str] | str, *, hands_over_to: str | None = None,
              trigger: str | CronTrigger | S3Trigger | None = None, description: str | None = None,
              config_repo=None, project: Project | None = None) -> Scaffold:
    """``src/<instance>/<layer>/``: the definition (``functions`` chained in order, the last one
    handing over to ``hands_over_to``, ``"instance/layer"`` or a layer of this instance, if
    given), one handler per function, ``requirements.txt``, ``Pulumi.yaml``, a
    ``Pulumi.<env>.yaml`` per deployed environment, and ``tests/test_<instance>_<layer>.py``."""
    project = project or find_project(config_repo)
    names = [n.strip() for n in functions.split(",")] if isinstance(functions, str) else [str(n).strip() for n in functions]
    names = [n for n in names if n]
    if isinstance(trigger, str):
        trigger = parse_trigger(trigger)
    definition, handover = _definition(project, instance, layer, names, hands_over_to, trigger,
                                       description or f"{instance}/{layer}")
    layer_dir = project.layer_dir(instance, layer)
    envs = [e for e in environments(project, instance, layer) if e not in LOCAL_ENVS]
    _check_limits(project, instance, layer, definition, envs)
    rel = f"{project.settings.source}/{instance}/{layer}"
    files = {
        f"{rel}/__main__.py": layer_main(instance, layer, definition, handover),
        f"{rel}/requirements.txt": REQUIREMENTS,
        f"{rel}/Pulumi.yaml": pulumi_yaml(pulumi_project_name(project.settings.project, instance, layer),
                                          f"dorc pipeline {instance}/{layer} (stacks {instance}-{layer}-<env>)"),
        **{f"{rel}/Pulumi.{env}.yaml": stack_yaml(project.settings.region) for env in envs},
        **{f"{rel}/src/{n}/{HANDLER_FILE}": handler_source(instance, layer, n, i, names) for i, n in enumerate(names)},
        f"tests/{test_file_name(instance, layer)}": layer_test(instance, layer, names),
    }
    return Scaffold(root=layer_dir, files=_write_all(project.root, files, project.root),
                    project_name=project.settings.project)


def _definition(project: Project, instance: str, layer: str, names: list[str], hands_over_to: str | None,
                trigger, description: str) -> tuple[PipelineDefinition, str | None]:
    """The definition the generated ``__main__.py`` declares, built by the models (their rules)."""
    for what, value in (("instance", instance), ("layer", layer)):
        if not AWS_NAME_PART_RE.fullmatch(value) or value.startswith("_"):
            raise DorcError(f"{what} name {value!r} cannot be a pipeline folder and part of AWS names "
                            "(Lambda functions, state machine, rules)",
                            hint=f"name the {what} with letters, digits, '-' and '_' only, not starting with '_'")
    if not names:
        raise DorcError("--functions names no function", hint="e.g. --functions extract,transform,load")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DorcError(f"--functions names {', '.join(map(repr, twice))} twice; each function is a folder",
                        hint="give every function its own name")
    handover = None
    if hands_over_to is not None:
        target = hands_over_to if "/" in hands_over_to else f"{instance}/{hands_over_to}"
        if target not in project.known_layers():
            known = ", ".join(sorted(project.known_layers())) or "none yet"
            raise DorcError(f"--hands-over-to {hands_over_to!r}: no layer {target} in {project.root}",
                            hint=f"create that layer first (dorc new {target.replace('/', ' ')} --functions ...); "
                                 f"layers: {known}")
        handover = target.split("/", 1)[1] if target.startswith(f"{instance}/") else target
    try:
        fns = [Function(name=n, next_function=names[i + 1] if i + 1 < len(names) else
                        (NextFunction(name=handover, type="Pipeline") if handover else None))
               for i, n in enumerate(names)]
        return PipelineDefinition(file_path=str(project.layer_dir(instance, layer) / "__main__.py"),
                                  description=description, functions=fns, trigger=trigger), handover
    except InvalidFunction as exc:
        raise DorcError(str(exc), hint="name functions with letters, digits, '-' and '_', starting with a letter "
                                       "(at most 64)") from None
    except ValidationError as exc:
        raise DorcError(f"{instance}/{layer}: {_messages(exc)}") from None


def _check_limits(project: Project, instance: str, layer: str, definition: PipelineDefinition,
                  envs: list[str]) -> None:
    """The AWS limits ``dorc validate`` checks (name lengths, buckets, ...), on the plan of the
    definition about to be written, in every environment the project knows."""
    main_file = project.layer_dir(instance, layer) / "__main__.py"
    found: list[str] = []
    for env in [*LOCAL_ENVS, *envs]:
        loaded = LoadedPipeline(instance=instance, layer=layer, main_file=main_file, definition=definition,
                                config=PipelineConfig(project=project, instance=instance, layer=layer, env=env))
        for p in plan_problems(build_plan(loaded), SETTINGS_FILE):
            message = f"{p.message} ({p.function})" if p.function else p.message
            if message not in found:
                found.append(message)
    if found:
        raise DorcError(f"{instance}/{layer} would not validate; nothing written:\n"
                        + "\n".join(f"  - {m}" for m in found),
                        hint="change what each line names (a shorter instance, layer or function name, "
                             "a valid bucket), then run dorc new again")


def _messages(exc: ValidationError) -> str:
    return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())


REQUIREMENTS = """\
# Packages this layer's functions import (one per line, as pip reads them), vendored into each
# function's package for AWS. Local runs use dorc's environment: pip install -r this file.
# A function's own src/<function>/requirements.txt adds to it.
"""


def layer_main(instance: str, layer: str, definition: PipelineDefinition, handover: str | None) -> str:
    fns = definition.functions
    lines = []
    for i, fn in enumerate(fns):
        if i + 1 < len(fns):
            nxt = f", next_function={_q(fns[i + 1].name)}"
        elif handover:
            nxt = f", next_function=NextFunction(name={_q(handover)}, type=\"Pipeline\")"
        else:
            nxt = ""
        lines.append(f"        Function(name={_q(fn.name)}, timeout=60, memory=256{nxt}),")
    imports = ["CreatePipeline", "Function", "PipelineDefinition", "load_config"]
    trig = ""
    for t in definition.triggers:
        if t.kind == "cron":
            imports.append("CronTrigger")
            trig = f"    trigger=CronTrigger(name={_q(t.name)}, cron={_q(t.cron)}),\n"
        else:
            imports.append("S3Trigger")
            trig = (f"    trigger=S3Trigger(name={_q(t.name)}, bucket_name={_q(t.bucket_name)}, "
                    f"key_prefix={_q(t.key_prefix)}),\n")
    if handover:
        imports.append("NextFunction")
    order = " -> ".join([f.name for f in fns] + ([f"[{handover}]"] if handover else []))
    return f'''"""{instance}/{layer}: {order}. Written by `dorc new`; edit freely.

Each function is src/<name>/lambda.py with handler(event, context); its return value is the next
one's event. Settings per environment: Pulumi.<env>.yaml beside this file (config.get("key")).
"""

from dorc import {", ".join(sorted(imports))}

config = load_config(__file__)  # dorc.toml + Pulumi.<env>.yaml of the current environment

pipeline_definition = PipelineDefinition(
    file_path=__file__,
    description={_q(definition.description)},
    functions=[
{chr(10).join(lines)}
    ],
{trig})

pipeline = CreatePipeline(config, pipeline_definition)
pipeline.apply()
'''


def handler_source(instance: str, layer: str, name: str, index: int, names: list[str]) -> str:
    after = f"its return value is {names[index + 1]}'s event" if index + 1 < len(names) else \
        "its return value is the layer's output (or the next layer's event)"
    return f'''"""{instance}/{layer} {name}: {after}."""

import json


def handler(event, context):
    # The previous function's body (or, for the first function, the run's event)
    data = event.get("body", event) if isinstance(event, dict) else event
    print(f"{name} received {{json.dumps(data)[:200]}}")
    # ... your work here ...
    # dorc's contract, checked on every hop: a JSON object with a numeric 2xx statusCode and a body
    return {{"statusCode": 200, "body": data}}
'''


def test_file_name(instance: str, layer: str) -> str:
    return f"test_{_ident(instance)}_{_ident(layer)}.py"


def _q(text: str) -> str:
    """A Python string literal in double quotes (JSON's escapes are Python's)."""
    return json.dumps(text)


def _ident(name: str) -> str:
    return name.replace("-", "_")


def layer_test(instance: str, layer: str, names: list[str]) -> str:
    prefix = f"test_{_ident(instance)}_{_ident(layer)}"
    return f'''"""{instance}/{layer}, run locally by dorc's pytest plugin (each test has its own store)."""


def {prefix}_runs(dorc_run):
    result = dorc_run({_q(instance)}, {_q(layer)}, event={{"hello": "world"}})
    assert result.succeeded, result.error
    assert result.step({_q(names[-1])}, layer={_q(layer)}).output == {{"statusCode": 200, "body": {{"hello": "world"}}}}


def {prefix}_{_ident(names[0])}_alone(dorc_invoke):
    step = dorc_invoke({_q(instance)}, {_q(layer)}, {_q(names[0])}, event={{"hello": "world"}})
    assert step.succeeded, step.error
    assert step.output["statusCode"] == 200
'''


# -- writing ---------------------------------------------------------------------------------

def _write_all(base: Path, files: dict[str, str], shown_from: Path) -> list[Path]:
    """Refuse before writing anything if any target exists; then create each file exclusively."""
    paths = {base / rel: text for rel, text in files.items()}
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing:
        names = ", ".join(_shown(p, shown_from) for p in existing)
        raise ProjectError(f"{names} already exist{'s' if len(existing) == 1 else ''}; nothing written "
                           "(dorc never overwrites a file)",
                           hint="move or delete it, or choose another name")
    for parent in _blocked_parents(paths, base):
        raise ProjectError(f"{_shown(parent, shown_from)} exists and is not a folder; nothing written",
                           hint="move it away, or choose another name")
    written = []
    for path, text in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
        written.append(path)
    return written


def _blocked_parents(paths: dict[Path, str], base: Path) -> list[Path]:
    blocked = set()
    for path in paths:
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                blocked.add(parent)
            if parent == base or parent == parent.parent:
                break
    return sorted(blocked)


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)
