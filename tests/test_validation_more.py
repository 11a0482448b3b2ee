"""Validation of what used to slip through: a definition that exits, the ``__main__`` guard, the
AWS limits of every environment, every bad environment variable, and imports AWS cannot satisfy."""

from __future__ import annotations

import sys

import pytest

from dorc.api import environments, plan_layer, validate
from dorc.errors import DefinitionError
from dorc.project import find_project
from helpers import HEADER, OK_HANDLER, chain_main, main_py, only, problems_of

GUARDED_MAIN = (HEADER + "config = load_config(__file__)\n"
                "definition = PipelineDefinition(file_path=__file__, description=__name__, functions=[Function(name='f1')])\n"
                "\n"
                'if __name__ == "__main__":\n'
                "    CreatePipeline(config, definition).apply()\n")


# -- a definition that calls sys.exit ---------------------------------------------------------

@pytest.mark.parametrize("call, shown", [("sys.exit(0)", "sys.exit(0)"), ("sys.exit(1)", "sys.exit(1)"),
                                         ("sys.exit()", "sys.exit()"), ("raise SystemExit('bye')", "sys.exit('bye')")])
def test_cli_validate_reports_a_definition_that_exits(project_factory, cli, call, shown):
    root = project_factory({"demo/l": {"main": f"import sys\n{call}\n", "functions": {}},
                            "demo/ok": {"main": chain_main("f1"), "functions": {"f1": OK_HANDLER}}}, dirname="cfg")
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert f"cfg/src/demo/l/__main__.py: called {shown} while dorc loaded it (line 2: {call})" in res.stdout
    assert "demo/l: 1 problem(s)" in res.stdout
    assert "demo/ok is valid" in res.stdout  # the other layer is still checked


def test_cli_run_and_list_report_a_definition_that_exits(project_factory, cli):
    root = project_factory({"demo/l": {"main": "import sys\nsys.exit(0)\n", "functions": {}},
                            "demo/ok": {"main": chain_main("f1"), "functions": {"f1": OK_HANDLER}}}, dirname="cfg")
    res = cli("run", "demo", "l", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert "cfg/src/demo/l/__main__.py: called sys.exit(0) while dorc loaded it (line 2: sys.exit(0))" in res.stderr
    res = cli("list", "--config-repo", root)
    assert "l: invalid (1 problem(s); run dorc validate)" in res.stdout
    assert "demo-ok-f1-local" in res.stdout


def test_exit_in_a_module_the_definition_imports_names_the_import_line(project_factory):
    root = project_factory({"demo/main": {"main": "import helper_that_exits\n" + chain_main("f1"),
                                          "functions": {"f1": OK_HANDLER}}})
    (root / "src/demo/main/helper_that_exits.py").write_text("raise SystemExit(3)\n")
    (p,) = problems_of(root)
    assert p.message.startswith("called sys.exit(3) while dorc loaded it (line 1: import helper_that_exits)")
    with pytest.raises(DefinitionError):
        plan_layer(find_project(root), "demo", "main")


def test_keyboard_interrupt_while_loading_is_not_swallowed(project_factory):
    root = project_factory({"demo/main": {"main": "raise KeyboardInterrupt\n", "functions": {}}})
    with pytest.raises(KeyboardInterrupt):
        validate(find_project(root))


# -- if __name__ == "__main__": --------------------------------------------------------------

def test_main_guard_is_loaded_as_pulumi_runs_it(project_factory, cli):
    root = project_factory({"demo/main": {"main": GUARDED_MAIN, "functions": {"f1": OK_HANDLER}}})
    main_module = sys.modules["__main__"]
    assert problems_of(root) == []
    assert sys.modules["__main__"] is main_module  # the real __main__ is back after loading
    assert plan_layer(find_project(root), "demo", "main").description == "__main__"
    res = cli("run", "demo", "main", "--config-repo", root)
    assert res.exit_code == 0, res.output


def test_main_guard_with_the_seed_import_paths(project_factory):
    legacy = ("from infrastructure.core.Creator import CreatePipeline, load_config\n"
              "from infrastructure.core.models.definition import PipelineDefinition, Function\n")
    root = project_factory({"demo/main": {"main": GUARDED_MAIN.replace(HEADER, legacy), "functions": {"f1": OK_HANDLER}}})
    assert problems_of(root) == []


# -- the AWS limits of every environment ------------------------------------------------------

def _long_name_project(project_factory, suffix: str, stack_files=("preprod",), infra=()):
    inst, layer = "i" * 20, "l" * 20
    fn = "f" * (64 - len(f"{inst}-{layer}--{suffix}"))
    root = project_factory({f"{inst}/{layer}": {"main": chain_main(fn), "functions": {fn: OK_HANDLER}}}, dirname="cfg")
    for env in stack_files:
        (root / f"src/{inst}/{layer}/Pulumi.{env}.yaml").write_text("config:\n  aws:region: eu-west-2\n")
    for env in infra:
        (root / "infra").mkdir(exist_ok=True)
        (root / f"infra/Pulumi.{env}.yaml").write_text("config: {}\n")
    return root, f"{inst}/{layer}", fn


def test_validate_without_env_checks_every_environment_of_the_layer(project_factory, cli):
    # 64 characters with '-localstack'; '-preproduction' makes it 67
    root, key, fn = _long_name_project(project_factory, "localstack", stack_files=("preproduction",))
    assert environments(find_project(root), *key.split("/")) == ["local", "localstack", "preproduction"]
    (p,) = problems_of(root, key)
    assert p.function == fn
    assert "-preproduction' is 67 characters; AWS allows 64" in p.message
    assert p.message.endswith("(environment 'preproduction')")
    assert problems_of(root, key, env="localstack") == []
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2
    assert "(environment 'preproduction')" in res.stdout


def test_the_reported_case_local_fits_preprod_does_not(project_factory, cli):
    root, key, fn = _long_name_project(project_factory, "local")
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert f"{key}: 1 problem(s)" in res.stdout  # one limit, however many environments break it
    assert "is 69 characters; AWS allows 64" in res.stdout
    assert "(environment 'localstack'; also broken in 'preprod')" in res.stdout
    res = cli("validate", "--env", "preprod", "--config-repo", root)
    assert res.exit_code == 2
    assert "-preprod' is 66 characters" in res.stdout and "(environment 'preprod')" in res.stdout


def test_environments_of_the_project_come_from_infra(project_factory):
    root, key, _ = _long_name_project(project_factory, "localstack", stack_files=("preprod",), infra=("preprod", "prod"))
    (p,) = problems_of(root, key)
    assert p.message.startswith("environment 'prod': no settings for environment 'prod'")
    assert "fix: create it: copy Pulumi.preprod.yaml from the same folder to Pulumi.prod.yaml" in p.message
    assert p.file == f"cfg/src/{key}/__main__.py"


def test_environment_independent_problems_are_listed_once(project_factory):
    root = project_factory({"demo/main": {"main": chain_main("f1"), "functions": {"f1": None}}})
    (root / "src/demo/main/Pulumi.preprod.yaml").write_text("config: {}\n")
    (p,) = problems_of(root)
    assert "src/f1/lambda.py does not exist" in p.message


def test_a_setting_missing_in_one_environment_is_reported_for_it(project_factory):
    main = main_py("Function(name='f1')", extra="").replace(
        "config = load_config(__file__)\n", "config = load_config(__file__)\nif config.env == 'preprod':\n    config.require('api_url')\n")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    (root / "src/demo/main/Pulumi.preprod.yaml").write_text("config: {}\n")
    (p,) = problems_of(root)
    assert p.message.startswith("environment 'preprod': demo/main: setting 'api_url' is missing for environment 'preprod'")


def test_missing_stack_file_hint_names_an_existing_file_or_a_template(project_factory, cli):
    root = project_factory({"demo/a": {"main": chain_main("f1"), "functions": {"f1": OK_HANDLER}},
                            "demo/b": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}}})
    (root / "src/demo/a/Pulumi.staging.yaml").write_text("config: {}\n")
    res = cli("validate", "--env", "prod", "--config-repo", root)
    assert res.exit_code == 2
    assert "fix: create it: copy Pulumi.staging.yaml from the same folder to Pulumi.prod.yaml" in res.stdout
    assert "fix: create it, e.g. with the one line `config: {aws:region: eu-west-2}`" in res.stdout
    assert "copy Pulumi.prod.yaml" not in res.stdout
    res = cli("run", "demo", "a", "--env", "prod", "--config-repo", root)
    assert res.exit_code == 2
    assert "fix: create it: copy Pulumi.staging.yaml" in res.stderr


# -- every bad environment variable ------------------------------------------------------------

def test_every_bad_environment_variable_is_listed(project_factory, cli):
    main = chain_main("f1", f1="environment={'AWS_REGION': 'x', '1BAD': 'y', 'GOOD': 'z', 'BAD-NAME': 'w'}")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    problems = problems_of(root)
    assert len(problems) == 3, [str(p) for p in problems]
    assert only(problems, "'AWS_REGION' is reserved by AWS Lambda").function == "f1"
    assert only(problems, "'1BAD' is invalid").message.startswith("environment: ")
    only(problems, "'BAD-NAME' is invalid")
    res = cli("validate", "--config-repo", root)
    assert "demo/main: 3 problem(s)" in res.stdout


# -- imports that only work on this machine ----------------------------------------------------

THIRD_PARTY = "import rich\nimport yaml.constructor\nfrom pydantic import BaseModel\n" + OK_HANDLER


def _fn_project(project_factory, files, *, layer_requirements: str | None = None, runtime: str | None = None,
                dirname: str = "cfg"):
    kwargs = {"f1": f"runtime={runtime!r}"} if runtime else {}
    root = project_factory({"demo/main": {"main": chain_main("f1", **kwargs), "functions": {"f1": files}}}, dirname=dirname)
    if layer_requirements is not None:
        (root / "src/demo/main/requirements.txt").write_text(layer_requirements)
    return root


def test_undeclared_third_party_imports_are_reported(project_factory, cli):
    root = _fn_project(project_factory, THIRD_PARTY)
    problems = problems_of(root)
    assert len(problems) == 3, [str(p) for p in problems]
    p = only(problems, "imports 'yaml'")
    assert p.file == "cfg/src/demo/main/src/f1/lambda.py" and p.function == "f1"
    assert p.message.startswith("line 2: imports 'yaml', which Lambda's python3.12 runtime does not provide")
    assert "Runtime.ImportModuleError" in p.message
    assert p.message.endswith("add PyYAML to cfg/src/demo/main/src/f1/requirements.txt "
                              "(or to the layer's cfg/src/demo/main/requirements.txt)")
    assert only(problems, "imports 'pydantic'").message.startswith("line 3:")
    only(problems, "imports 'rich'")
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2
    assert "cfg/src/demo/main/src/f1/lambda.py [function f1]: line 1: imports 'rich'" in res.stdout


@pytest.mark.parametrize("where", ["function", "layer"])
def test_declared_requirements_satisfy_imports(project_factory, where):
    reqs = "# what the handler needs\nRich>=13\npyyaml==6.*  # PEP 503: any case, '-', '_' or '.'\npydantic[email] ; python_version >= '3.11'\n"
    files = {"lambda.py": THIRD_PARTY}
    if where == "function":
        files["requirements.txt"] = reqs
    root = _fn_project(project_factory, files, layer_requirements=reqs if where == "layer" else None)
    assert problems_of(root) == []


def test_what_aws_provides_is_accepted(project_factory):
    lam = ("from __future__ import annotations\nimport json, os.path, urllib.request\nimport boto3, botocore.exceptions\n"
           "import dateutil.parser, urllib3, six, jmespath, s3transfer\nimport util\nfrom pkg.sub import thing\n"
           "from . import sibling\n" + OK_HANDLER)
    root = _fn_project(project_factory, {"lambda.py": lam, "util.py": "X = 1\n", "sibling.py": ""})
    folder = root / "src/demo/main/src/f1"
    for name, text in {"pkg/__init__.py": "", "pkg/sub.py": "import pkg\nthing = 1\n",
                       "tests/test_f1.py": "import pytest\n"}.items():  # tests/ is not packaged
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text)
    assert problems_of(root) == []


def test_guarded_imports_are_not_checked(project_factory):
    lam = """
    from typing import TYPE_CHECKING
    import typing
    try:
        import ujson as json
    except ImportError:
        import json
    try:
        import orjson
    except (ModuleNotFoundError, ValueError):
        orjson = None
    if TYPE_CHECKING:
        import mypy_boto3_s3
    if typing.TYPE_CHECKING:
        from rich.console import Console
    if __name__ == "__main__":
        import rich
        rich.print(handler({}, None))


    def handler(event, context):
        return {"statusCode": 200, "body": {}}
    """
    assert problems_of(_fn_project(project_factory, lam)) == []


def test_helper_modules_and_imports_inside_functions_are_checked(project_factory):
    lam = "from helper import load\n\ndef handler(event, context):\n    import rich\n    return load()\n"
    root = _fn_project(project_factory, {"lambda.py": lam, "helper.py": "import json\nimport yaml\n\ndef load():\n    return {}\n"})
    problems = problems_of(root)
    assert len(problems) == 2, [str(p) for p in problems]
    assert only(problems, "imports 'yaml'").file == "cfg/src/demo/main/src/f1/helper.py"
    assert only(problems, "imports 'rich'").message.startswith("line 4:")


def test_a_module_not_installed_here_needs_a_requirement_of_its_name(project_factory):
    lam = "import some_module_nobody_has\n" + OK_HANDLER
    p = only(problems_of(_fn_project(project_factory, lam)), "some_module_nobody_has")
    assert "it is not installed here either" in p.message
    assert "add some_module_nobody_has to cfg/src/demo/main/src/f1/requirements.txt" in p.message
    declared = {"lambda.py": lam, "requirements.txt": "Some-Module.Nobody-Has==1.0\n"}
    assert problems_of(_fn_project(project_factory, declared, dirname="other")) == []


def test_dependencies_of_declared_requirements_are_vendored_too(project_factory):
    # pip installs pydantic's own dependencies (pydantic-core) into the package as well
    files = {"lambda.py": "import pydantic_core\n" + OK_HANDLER, "requirements.txt": "pydantic\n"}
    assert problems_of(_fn_project(project_factory, files)) == []
    only(problems_of(_fn_project(project_factory, files["lambda.py"], dirname="other")), "imports 'pydantic_core'")


def test_stdlib_modules_the_runtime_no_longer_has(project_factory):
    lam = "import cgi\n" + OK_HANDLER  # removed from the standard library in Python 3.13
    assert problems_of(_fn_project(project_factory, lam, runtime="python3.12")) == []
    (p,) = problems_of(_fn_project(project_factory, lam, runtime="python3.13", dirname="other"))
    assert "imports 'cgi', which is not in the standard library of python3.13" in p.message


def test_census_example_passes_the_import_check(census_repo, cli):
    res = cli("validate", "--config-repo", census_repo)
    assert res.exit_code == 0, res.output
