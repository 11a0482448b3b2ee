"""Finding the pipeline-config folder and reading its settings.

Layout (the seed's, kept)::

    pipeline-config/
      dorc.toml                        project settings
      src/<instance>/<layer>/__main__.py
      src/<instance>/<layer>/Pulumi.<env>.yaml
      src/<instance>/<layer>/src/<function>/lambda.py
      fixtures/<name>.py               offline stand-ins for outside services ([fixtures.<name>])
"""

from __future__ import annotations

import ast
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dorc_sim.fixtures import NAME as FIXTURE_NAME

from .errors import ProjectError

SETTINGS_FILE = "dorc.toml"
LOCAL_ENVS = ("local", "localstack")
# dorc's pytest plugin deploys LocalStack tests to an environment of their own (one per pytest
# worker), so a test session never touches what `dorc run --localstack` deployed or stored
TEST_ENV = "localstack-t"


def is_machine_local(env: str) -> bool:
    """Environments of this machine, without a ``Pulumi.<env>.yaml``: ``local``, ``localstack``
    and the test environments ``localstack-t``, ``localstack-t<N>``."""
    return env in LOCAL_ENVS or env == TEST_ENV or (env.startswith(TEST_ENV) and env[len(TEST_ENV):].isdigit())
FIXTURE_KEYS = ("module", "factory", "port")


@dataclass(frozen=True)
class FixtureSpec:
    """``[fixtures.<name>]``: a local stand-in for an outside service, started by ``{sim.<name>}``."""

    name: str
    module: str  # absolute path of the module file (declared relative to the folder of dorc.toml)
    factory: str  # callable(port=0) -> object with start(), stop() and url
    port: int | None = None  # fixed port when the URL is written into deployed configuration (LocalStack)
    declared_in: str = SETTINGS_FILE  # the settings file, for messages


@dataclass(frozen=True)
class Settings:
    """``dorc.toml``. Templates may use ``{project}``, ``{env}`` and ``{region}``."""

    project: str
    region: str = "eu-west-2"
    source: str = "src"
    tags: dict[str, str] = field(default_factory=dict)
    holding_bucket: str = "{project}-holding-{env}"
    artifact_bucket: str = "{project}-artifacts"
    log_retention_days: int = 14
    # Environment variables replaced when functions run on this machine (local, LocalStack):
    # values may name a fixture declared under [fixtures.<name>], as "{sim.<name>}".
    local_environment: dict[str, str] = field(default_factory=dict)
    fixtures: dict[str, FixtureSpec] = field(default_factory=dict)  # [fixtures.<name>]
    # [local] server_idle_minutes: the local AWS server stops after this long without a request
    # ($DORC_SIM_IDLE_MINUTES wins; None: the server's default)
    server_idle_minutes: float | None = None
    # [runs] record_payload_limit_kb: a step's input or output larger than this is recorded as its
    # size and sha256 only (the run's event and output and a failed step's input are kept whole)
    record_payload_limit_kb: float = 64

    def render(self, template: str, env: str) -> str:
        try:
            return template.format(project=self.project, env=env, region=self.region)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ProjectError(f"the name template {template!r} cannot be filled in: {_template_fault(exc)}",
                               hint=TEMPLATE_HINT) from None


TEMPLATE_HINT = "templates may use {project}, {env} and {region}; write {{ and }} for a literal brace"
DEFAULT_RECORD_PAYLOAD_LIMIT_KB = 64
PAYLOAD_LIMIT_SETTING = "[runs] record_payload_limit_kb"


def _template_fault(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"unknown key {{{exc.args[0]}}}"
    if isinstance(exc, IndexError):
        return "a positional field {} (only named keys are filled in)"
    return str(exc)


def read_text(path: Path, what: str = "file") -> str:
    """A text file the user saved: UTF-8, with or without a BOM, or UTF-16/32 with a BOM (what
    Windows editors write for "Unicode"); anything else is a clear ProjectError, not a traceback."""
    import codecs

    data = path.read_bytes()
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                       (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            break
    else:
        codec = "utf-8"
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{path}: the {what} is not {codec.upper().removesuffix('-SIG')} text "
                           f"(byte {data[exc.start]:#04x} at offset {exc.start})",
                           hint="save it as UTF-8 (or UTF-16 with a byte-order mark)") from None


@dataclass(frozen=True)
class Project:
    root: Path
    settings: Settings
    state_root: Path | None = None  # tests point this at a temporary folder

    @property
    def source_dir(self) -> Path:
        return self.root / self.settings.source

    @property
    def state_dir(self) -> Path:
        """``.dorc/`` beside the settings: run records and the local holding store."""
        return self.state_root or (self.root / ".dorc")

    def layer_dir(self, instance: str, layer: str) -> Path:
        return self.source_dir / instance / layer

    def display_path(self, path: Path) -> str:
        """A path as the user sees it in messages: from the folder that holds pipeline-config."""
        try:
            return str(Path(path).relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def instances(self) -> list[str]:
        if not self.source_dir.is_dir():
            return []
        return sorted(p.name for p in self.source_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

    def layers(self, instance: str) -> list[str]:
        inst = self.source_dir / instance
        if not inst.is_dir():
            known = ", ".join(self.instances()) or "none"
            raise ProjectError(
                f"no pipeline instance {instance!r} in {self.source_dir}",
                hint=f"known instances: {known}; create {inst}/<layer>/__main__.py",
            )
        return sorted(p.name for p in inst.iterdir() if (p / "__main__.py").is_file())

    @property
    def local_aws_dir(self) -> Path:
        """Where local runs keep the holding store between runs (``dorc store``)."""
        return self.state_dir / "local-aws"

    def known_layers(self) -> set[str]:
        """Every ``instance/layer`` of the project: what a hand-over may name."""
        return {f"{i}/{lay}" for i in self.instances() for lay in self.layers(i)}

    def main_file(self, instance: str, layer: str) -> Path:
        path = self.layer_dir(instance, layer) / "__main__.py"
        if not path.is_file():
            known = ", ".join(self.layers(instance)) or "none"
            raise ProjectError(
                f"no pipeline {instance}/{layer}: {path} does not exist",
                hint=f"layers of {instance}: {known}",
            )
        return path

    def stack_config(self, instance: str, layer: str, env: str) -> dict[str, Any]:
        """The ``config:`` of ``Pulumi.<env>.yaml`` with namespaces stripped (``census:x`` -> ``x``).

        Local environments have no stack file; they use the defaults of the definition.
        """
        path = self.layer_dir(instance, layer) / f"Pulumi.{env}.yaml"
        if not path.is_file():
            if is_machine_local(env):
                return {}
            raise ProjectError(
                f"no settings for environment {env!r}: {path} does not exist",
                hint=_missing_stack_hint(path, self.settings.region),
            )
        return read_stack_config(path)


def _missing_stack_hint(path: Path, region: str) -> str:
    """Name a stack file that exists beside the missing one to copy, or give the smallest one."""
    siblings = sorted(p.name for p in path.parent.glob("Pulumi.*.yaml") if p.name != path.name)
    if siblings:
        source = "Pulumi.preprod.yaml" if "Pulumi.preprod.yaml" in siblings else siblings[0]
        return f"create it: copy {source} from the same folder to {path.name} and adjust its values, or pick another --env"
    return (f"create it, e.g. with the one line `config: {{aws:region: {region}}}` plus the settings this "
            "layer reads, or pick another --env")


def read_stack_config(path: Path) -> dict[str, Any]:
    import yaml  # only when a stack file exists

    try:
        doc = yaml.safe_load(read_text(path, "stack settings file")) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path} is not valid YAML: {exc}") from None
    raw = doc.get("config", {}) or {}
    if not isinstance(raw, dict):
        raise ProjectError(f"{path}: 'config' must be a mapping of 'namespace:key: value'")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        short = key.split(":", 1)[1] if ":" in key else key
        if isinstance(value, dict) and "secure" in value:
            value = Secret(value["secure"])
        if key == "aws:region" and not (isinstance(value, str) and value.strip()):
            raise ProjectError(f"{path}: {key}: {value!r} is not a region name",
                               hint=f"write the region as text, e.g. `{key}: eu-west-2`")
        out[short] = value
        out[key] = value
    return out


class Secret(str):
    """A Pulumi ``secure:`` value: never printed, never written to a run record."""

    def __repr__(self) -> str:
        return "Secret('***')"


def find_project(config_repo: str | os.PathLike | None = None) -> Project:
    """``--config-repo``, else ``$CONFIG_REPO_PATH``, else ``./pipeline-config``, else the nearest
    folder at or above the current one that holds a ``dorc.toml`` (the config repo is often its own
    checkout, and users work inside it, as git finds its root)."""
    if config_repo is None:
        config_repo = os.environ.get("CONFIG_REPO_PATH")
    if config_repo is None:
        root = _discover_root(Path.cwd())
        if root is None:
            raise ProjectError(
                f"no pipeline-config found: neither ./pipeline-config nor {Path.cwd()} or a folder above it "
                f"holds a {SETTINGS_FILE}",
                hint="pass --config-repo PATH, set CONFIG_REPO_PATH, or run dorc inside the pipeline-config "
                     "folder or the folder that holds it",
            )
    else:
        root = Path(config_repo).expanduser().resolve()
    settings_path = root / SETTINGS_FILE
    if not settings_path.is_file():
        raise ProjectError(
            f"no pipeline-config found at {root} ({SETTINGS_FILE} missing)",
            hint="pass --config-repo PATH, set CONFIG_REPO_PATH, or run dorc inside the pipeline-config folder "
                 "or the folder that holds it",
        )
    return Project(root=root, settings=load_settings(settings_path))


def _discover_root(cwd: Path) -> Path | None:
    candidate = (cwd / "pipeline-config").resolve()
    if (candidate / SETTINGS_FILE).is_file():
        return candidate
    return config_root_above(cwd)


def config_root_above(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding a ``dorc.toml``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / SETTINGS_FILE).is_file():
            return folder
    return None


def project_of(path: Path) -> "Project":
    """The project a file or folder belongs to: the nearest ``dorc.toml`` at or above it
    (a program run by the Pulumi engine knows only its own path)."""
    root = config_root_above(path)
    if root is None:
        raise ProjectError(f"no {SETTINGS_FILE} above {path}", hint="run inside a pipeline-config folder")
    return find_project(root)


def load_settings(path: Path) -> Settings:
    try:
        doc = tomllib.loads(read_text(path, "settings file"))
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{path} is not valid TOML: {exc}") from None
    proj = doc.get("project", {})
    if "name" not in proj:
        raise ProjectError(f"{path}: [project] name is required", hint='add  [project]\\nname = "my-data"')
    stores = doc.get("buckets", {})
    try:
        settings = Settings(
            project=str(proj["name"]),
            region=str(proj.get("region", "eu-west-2")),
            source=str(proj.get("source", "src")),
            tags={str(k): str(v) for k, v in doc.get("tags", {}).items()},
            holding_bucket=str(stores.get("holding", "{project}-holding-{env}")),
            artifact_bucket=str(stores.get("artifacts", "{project}-artifacts")),
            log_retention_days=int(doc.get("logs", {}).get("retention_days", 14)),
            local_environment={str(k): str(v) for k, v in doc.get("local", {}).get("environment", {}).items()},
            fixtures=load_fixtures(path, doc.get("fixtures", {})),
            server_idle_minutes=_idle_minutes(path, doc.get("local", {})),
            record_payload_limit_kb=_payload_limit_kb(path, doc.get("runs", {})),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ProjectError(f"{path}: {exc}") from None
    for key, template in (("holding", settings.holding_bucket), ("artifacts", settings.artifact_bucket)):
        try:
            template.format(project="p", env="e", region="r")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ProjectError(f"{path}: [buckets] {key} = {template!r}: {_template_fault(exc)}",
                               hint=TEMPLATE_HINT) from None
    return settings


def _payload_limit_kb(path: Path, table: Any) -> float:
    """``[runs] record_payload_limit_kb``: a number of KB, 0 or more (0: records keep digests only)."""
    value = table.get("record_payload_limit_kb", DEFAULT_RECORD_PAYLOAD_LIMIT_KB) if isinstance(table, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1 << 40:
        raise ProjectError(f"{path}: {PAYLOAD_LIMIT_SETTING} = {value!r} is not a size in KB",
                           hint=f"a number, 0 or more, e.g. record_payload_limit_kb = 256 under [runs] "
                                f"(default {DEFAULT_RECORD_PAYLOAD_LIMIT_KB})")
    return value


def _idle_minutes(path: Path, table: Any) -> float | None:
    """``[local] server_idle_minutes``: a number of minutes, more than 0."""
    value = table.get("server_idle_minutes") if isinstance(table, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 7 * 24 * 60:
        raise ProjectError(f"{path}: [local] server_idle_minutes = {value!r} is not a number of minutes",
                           hint="a number above 0 (at most a week), e.g. server_idle_minutes = 30 under [local] "
                                "(default 15)")
    return float(value)


def load_fixtures(path: Path, table: Any) -> dict[str, FixtureSpec]:
    """``[fixtures.<name>]`` tables, checked without running their modules (a run loads them)."""
    example = ('[fixtures.my_api]\nmodule = "fixtures/my_api.py"\nfactory = "MyAPIServer"\n'
               "port = 4581  # optional")
    if not isinstance(table, dict):
        raise ProjectError(f"{path}: [fixtures] must hold one table per fixture", hint=f"write e.g.\n{example}")
    return {str(name): _fixture(path, str(name), decl, example) for name, decl in table.items()}


def _fixture(path: Path, name: str, decl: Any, example: str) -> FixtureSpec:
    where = f"{path}: [fixtures.{name}]"
    if not FIXTURE_NAME.match(name):
        raise ProjectError(f"{where}: the name {name!r} cannot be written as {{sim.{name}}}",
                           hint="name fixtures with lower-case letters, digits and _ (not first a digit)")
    if not isinstance(decl, dict):
        raise ProjectError(f"{where} must be a table with module and factory", hint=f"write e.g.\n{example}")
    unknown = [k for k in decl if k not in FIXTURE_KEYS]
    if unknown:
        raise ProjectError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}; a fixture takes {', '.join(FIXTURE_KEYS)}",
                           hint="remove or correct " + ("them" if len(unknown) > 1 else "it"))
    for key in ("module", "factory"):
        if key not in decl:
            raise ProjectError(f"{where}: {key} is missing", hint=f"write e.g.\n{example}")
        if not isinstance(decl[key], str) or not decl[key].strip():
            raise ProjectError(f"{where} {key} = {decl[key]!r}: must be a non-empty string",
                               hint=f"write e.g.\n{example}")
    module, factory = decl["module"], decl["factory"].strip()
    file = (path.parent / module).resolve()
    if file.is_dir():
        raise ProjectError(f"{where} module = {module!r}: {file} is a folder", hint="give the path of a .py file")
    if not file.is_file():
        raise ProjectError(f"{where} module = {module!r}: {file} does not exist",
                           hint=f"create it, or correct the path (relative to {path.parent})")
    if file.suffix != ".py":
        raise ProjectError(f"{where} module = {module!r}: not a Python file (.py)", hint="give the path of a .py file")
    if not factory.isidentifier():
        raise ProjectError(f"{where} factory = {factory!r}: not a Python name",
                           hint=f"the name of a class or function defined in {module}")
    _check_factory(where, module, file, factory)
    port = decl.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise ProjectError(f"{where} port = {port!r}: not a port number",
                           hint="a whole number from 1 to 65535, or leave port out (any free port)")
    return FixtureSpec(name=name, module=str(file), factory=factory, port=port, declared_in=str(path))


_LITERALS = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.JoinedStr, ast.ListComp, ast.SetComp,
             ast.DictComp, ast.GeneratorExp)


def _check_factory(where: str, module: str, file: Path, factory: str) -> None:
    """The factory is defined in the module, as far as reading its source (not running it) tells:
    a missing name or one bound only to a literal is caught here, anything subtler when a run loads it."""
    try:
        tree = ast.parse(file.read_text(), filename=str(file))
    except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{where} module = {module!r}: not valid Python: {exc}", hint=f"fix {file}") from None
    bindings: dict[str, list[ast.AST | None]] = {}
    dynamic = False

    def visit(body: list[ast.stmt]) -> None:
        nonlocal dynamic
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bindings.setdefault(node.name, []).append(node)
                dynamic = dynamic or node.name == "__getattr__"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    dynamic = dynamic or alias.name == "*"
                    bindings.setdefault(alias.asname or alias.name.split(".")[0], []).append(node)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for n in ast.walk(target):
                        if isinstance(n, ast.Name):
                            bindings.setdefault(n.id, []).append(node.value if target is n else None)
            else:  # if/try/with/for blocks at the top level bind names too
                for field_name in ("body", "orelse", "finalbody", "handlers", "cases"):
                    inner = getattr(node, field_name, None)
                    if isinstance(inner, list):
                        visit([s for s in inner if isinstance(s, ast.stmt)]
                              + [s for h in inner if isinstance(h, (ast.ExceptHandler, ast.match_case))
                                 for s in h.body])

    visit(tree.body)
    found = bindings.get(factory)
    if not found:
        if dynamic:
            return
        defined = sorted(n for n, b in bindings.items()
                         if not n.startswith("_") and any(isinstance(x, (ast.FunctionDef, ast.ClassDef)) for x in b))
        raise ProjectError(f"{where} factory = {factory!r}: {module} defines no {factory!r}",
                           hint=f"define it there (a class or function taking port=0), or correct factory; "
                                f"{module} defines {', '.join(defined) or 'no class or function'}")
    if all(isinstance(b, _LITERALS) for b in found):
        raise ProjectError(f"{where} factory = {factory!r}: {module} binds {factory!r} to a value, not a class "
                           "or function", hint="name a class or function taking port=0 that returns an object "
                                               "with start(), stop() and url")
