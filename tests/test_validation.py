"""Definitions and their validation: ``dorc.api.validate`` and ``dorc validate`` (exit 0 / 2)."""

from __future__ import annotations

import pytest

from dorc.api import validate
from dorc.errors import DefinitionError
from dorc.project import find_project
from helpers import HEADER, OK_HANDLER, chain_main, main_py

BAD_HANDLERS = {
    "one-param": ("def handler(event):\n    return {}\n", "handler must take two positional parameters"),
    "three-params": ("def handler(event, context, extra):\n    return {}\n", "handler must take two positional parameters"),
    "kw-only-context": ("def handler(event, *, context):\n    return {}\n", "handler must take two positional parameters"),
    "async": ("async def handler(event, context):\n    return {}\n", "handler is `async def`"),
    "missing": ("def main(event, context):\n    return {}\n", "defines no `handler(event, context)` function"),
    "syntax-error": ("def handler(event, context)\n    return {}\n", "syntax error at line 1"),
}

GOOD_HANDLERS = {
    "plain": OK_HANDLER,
    "defaults": "def handler(event, context=None, *, verbose=False):\n    return {}\n",
    "varargs": "def handler(*args):\n    return {}\n",
    "assigned": "def _impl(event, context):\n    return {}\n\nhandler = _impl\n",
    "imported": "from os.path import join as handler\n",
}


def layer_problems(project_factory, main: str, functions: dict, *, other_layers: dict | None = None,
                   layer: str = "demo/main", **kw):
    root = project_factory({layer: {"main": main, "functions": functions}, **(other_layers or {})}, **kw)
    results = validate(find_project(root))
    return results[layer]


def only(problems, fragment: str):
    """The one problem whose message contains ``fragment``."""
    hits = [p for p in problems if fragment in p.message]
    assert len(hits) == 1, f"expected one problem containing {fragment!r}, got: {[str(p) for p in problems]}"
    return hits[0]


# -- files and handlers ----------------------------------------------------------------------

@pytest.mark.parametrize("folder", [None, {"util.py": "X = 1\n"}], ids=["no-folder", "folder-without-lambda.py"])
def test_missing_lambda_py_names_the_file_and_function(project_factory, folder):
    problems = layer_problems(project_factory, chain_main("f1", "f2"), {"f1": OK_HANDLER, "f2": folder})
    p = only(problems, "does not exist")
    assert p.function == "f2"
    assert p.file.endswith("src/demo/main/__main__.py")
    assert "src/demo/main/src/f2/lambda.py does not exist" in p.message
    assert len(problems) == 1


@pytest.mark.parametrize("case", sorted(BAD_HANDLERS))
def test_bad_handler_is_reported_against_its_lambda_py(project_factory, case):
    source, fragment = BAD_HANDLERS[case]
    problems = layer_problems(project_factory, chain_main("f1", "f2"), {"f1": OK_HANDLER, "f2": source})
    assert len(problems) == 1, [str(p) for p in problems]
    p = problems[0]
    assert fragment in p.message
    assert p.function == "f2"
    assert p.file.endswith("src/demo/main/src/f2/lambda.py")


@pytest.mark.parametrize("case", sorted(GOOD_HANDLERS))
def test_acceptable_handler_shapes(project_factory, case):
    assert layer_problems(project_factory, chain_main("f1"), {"f1": GOOD_HANDLERS[case]}) == []


def test_undeclared_folder_is_reported(project_factory):
    problems = layer_problems(project_factory, chain_main("f1"),
                              {"f1": OK_HANDLER, "f9": OK_HANDLER, "__pycache__": {"x.pyc": ""}})
    p = only(problems, "is not declared as a function")
    assert "src/demo/main/src/f9" in p.message
    assert "Function(name='f9')" in p.message
    assert len(problems) == 1  # __pycache__ is not a function folder


# -- the shape of the chain ------------------------------------------------------------------

GRAPH_CASES = {
    "duplicate-name": ("Function(name='f1', next_function='f2'), Function(name='f2'), Function(name='f1')",
                       "'f1' is declared more than once", "f1"),
    "next-undeclared": ("Function(name='f1', next_function='nope'), Function(name='f2')",
                        "next_function 'nope' is not a declared function (declared: f1, f2)", "f1"),
    "self-loop": ("Function(name='f1', next_function='f1')", "points at itself", "f1"),
    "two-point-to-same-next": ("Function(name='f1', next_function='f3'), Function(name='f2', next_function='f3'), "
                               "Function(name='f3')", "is the next_function of f1, f2", "f3"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_graph_problems(project_factory, case):
    functions_src, fragment, function = GRAPH_CASES[case]
    problems = layer_problems(project_factory, main_py(functions_src),
                              {n: OK_HANDLER for n in ("f1", "f2", "f3")})
    p = only(problems, fragment)
    assert p.function == function
    assert p.file.endswith("src/demo/main/__main__.py")


def test_two_starts(project_factory):
    problems = layer_problems(project_factory, main_py("Function(name='f1'), Function(name='f2')"),
                              {"f1": OK_HANDLER, "f2": OK_HANDLER})
    p = only(problems, "exactly one start function")
    assert "found 2: f1, f2" in p.message


def test_cycle_has_no_start_and_no_end(project_factory):
    problems = layer_problems(
        project_factory,
        main_py("Function(name='f1', next_function='f2'), Function(name='f2', next_function='f1')"),
        {"f1": OK_HANDLER, "f2": OK_HANDLER})
    assert "none (cycle)" in only(problems, "exactly one start function").message
    assert "none (cycle)" in only(problems, "exactly one end function").message


def test_unreachable_functions(project_factory):
    problems = layer_problems(
        project_factory,
        main_py("Function(name='f1', next_function='f2'), Function(name='f2'), "
                "Function(name='f3', next_function='f4'), Function(name='f4', next_function='f3')"),
        {n: OK_HANDLER for n in ("f1", "f2", "f3", "f4")})
    p = only(problems, "unreachable from the start function 'f1'")
    assert p.message.endswith("f3, f4")


def test_handover_to_nonexistent_pipeline(project_factory):
    problems = layer_problems(project_factory, chain_main("f1", handover="nope"), {"f1": OK_HANDLER})
    p = only(problems, "hands over to pipeline demo/nope, which does not exist")
    assert p.function == "f1"
    assert "known: demo/main" in p.message


def test_handover_to_itself(project_factory):
    problems = layer_problems(project_factory, chain_main("f1", handover="main"), {"f1": OK_HANDLER})
    assert only(problems, "hands over to its own pipeline demo/main").function == "f1"


# -- field rules (raised while __main__.py builds the definition) -----------------------------

FIELD_CASES = {
    "path-name": ("Function(name='../x')", "not a plain name", "../x"),
    "slash-name": ("Function(name='a/b')", "not a plain name", "a/b"),
    "timeout-0": ("Function(name='f1', timeout=0)", "timeout: Input should be greater than or equal to 1", "f1"),
    "timeout-901": ("Function(name='f1', timeout=901)", "timeout: Input should be less than or equal to 900", "f1"),
    "memory-127": ("Function(name='f1', memory=127)", "memory: Input should be greater than or equal to 128", "f1"),
    "memory-10241": ("Function(name='f1', memory=10241)", "memory: Input should be less than or equal to 10240", "f1"),
    "env-name-digit": ("Function(name='f1', environment={'1BAD': 'x'})", "'1BAD' is invalid", "f1"),
    "env-name-dash": ("Function(name='f1', environment={'BAD-NAME': 'x'})", "'BAD-NAME' is invalid", "f1"),
    "env-reserved-region": ("Function(name='f1', environment={'AWS_REGION': 'x'})",
                            "'AWS_REGION' is reserved by AWS Lambda", "f1"),
    "env-reserved-function-name": ("Function(name='f1', environment={'AWS_LAMBDA_FUNCTION_NAME': 'x'})",
                                   "'AWS_LAMBDA_FUNCTION_NAME' is reserved by AWS Lambda", "f1"),
    "env-name-underscore": ("Function(name='f1', environment={'_HANDLER': 'x'})", "'_HANDLER' is invalid", "f1"),
    "runtime": ("Function(name='f1', runtime='python3.8')", "runtime 'python3.8' is not supported", "f1"),
    "next-is-a-path": ("Function(name='f1', next_function='../f2')", "not a plain name", "f1"),
    "tmp-511": ("Function(name='f1', ephemeral_storage=511)",
                "ephemeral_storage: Input should be greater than or equal to 512", "f1"),
    "tmp-10241": ("Function(name='f1', ephemeral_storage=10241)",
                  "ephemeral_storage: Input should be less than or equal to 10240", "f1"),
    "log-format": ("Function(name='f1', log_format='XML')", "log_format: Input should be 'Text' or 'JSON'", "f1"),
    "log-level": ("Function(name='f1', log_format='JSON', log_level='VERBOSE')",
                  "log_level: Input should be 'TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR' or 'FATAL'", "f1"),
    "env-reserved-log-format": ("Function(name='f1', environment={'AWS_LAMBDA_LOG_FORMAT': 'JSON'})",
                                "'AWS_LAMBDA_LOG_FORMAT' is reserved by AWS Lambda", "f1"),
    "env-reserved-log-level": ("Function(name='f1', environment={'AWS_LAMBDA_LOG_LEVEL': 'DEBUG'})",
                               "'AWS_LAMBDA_LOG_LEVEL' is reserved by AWS Lambda", "f1"),
}


@pytest.mark.parametrize("case", sorted(FIELD_CASES))
def test_field_rules(project_factory, case):
    functions_src, fragment, function = FIELD_CASES[case]
    problems = layer_problems(project_factory, main_py(functions_src), {"f1": OK_HANDLER})
    p = only(problems, fragment)
    assert p.function == function
    assert p.file.endswith("src/demo/main/__main__.py")


def test_no_functions(project_factory):
    problems = layer_problems(project_factory, main_py(""), {})
    assert only(problems, "at least one function").file.endswith("src/demo/main/__main__.py")


def test_invalid_cron(project_factory):
    main = main_py("Function(name='f1')", extra="from dorc import CronTrigger").replace(
        "    functions=", "    trigger=CronTrigger(name='daily', cron='0 6 * *'),\n    functions=")
    problems = layer_problems(project_factory, main, {"f1": OK_HANDLER})
    assert "must have 6 fields" in only(problems, "cron").message


def test_main_that_never_applies(project_factory):
    main = HEADER + "config = load_config(__file__)\nPipelineDefinition(file_path=__file__, functions=[Function(name='f1')])\n"
    problems = layer_problems(project_factory, main, {"f1": OK_HANDLER})
    assert "defines no pipeline" in only(problems, "CreatePipeline").message


def test_main_that_crashes_while_loading(project_factory):
    main = main_py("Function(name='f1')", extra="undefined_name + 1")
    problems = layer_problems(project_factory, main, {"f1": OK_HANDLER})
    assert "loading failed: NameError" in only(problems, "undefined_name").message


# -- AWS limits (from the plan) ---------------------------------------------------------------

def test_lambda_name_longer_than_64(project_factory):
    fn = "f" + "x" * 30
    problems = layer_problems(project_factory, chain_main(fn), {fn: OK_HANDLER},
                              layer="instance-with-a-long-name/layer-with-a-long-name")
    p = only(problems, "deployed Lambda name")
    name = f"instance-with-a-long-name-layer-with-a-long-name-{fn}-local"
    assert f"{name!r} is {len(name)} characters; AWS allows 64" in p.message
    assert p.function == fn
    assert not any("state machine" in q.message for q in problems)


def test_lambda_name_of_exactly_64_is_fine(project_factory):
    # validate checks every environment; 'localstack' is the longest suffix this project has
    inst, layer = "i" * 20, "l" * 20
    fn = "f" * (64 - len(f"{inst}-{layer}--localstack"))
    assert layer_problems(project_factory, chain_main(fn), {fn: OK_HANDLER}, layer=f"{inst}/{layer}") == []


def test_state_machine_name_longer_than_80(project_factory):
    inst, layer = "i" * 40, "l" * 40
    problems = layer_problems(project_factory, chain_main("f1"), {"f1": OK_HANDLER}, layer=f"{inst}/{layer}")
    p = only(problems, "state machine name")
    assert f"'{inst}-{layer}-local' is 87 characters; AWS allows 80" in p.message


def test_environment_larger_than_4kb(project_factory):
    problems = layer_problems(project_factory, chain_main("f1", f1="environment={'BIG': 'x' * 5000}"),
                              {"f1": OK_HANDLER})
    p = only(problems, "environment variables total")
    assert "Lambda allows 4096 (4 KB)" in p.message
    assert p.function == "f1"


def test_limits_use_the_environment_name(project_factory):
    # '-local' fits, '-localstack' does not: the deployed names carry the environment.
    inst, layer = "i" * 20, "l" * 20
    fn = "f" * (64 - len(f"{inst}-{layer}--local"))
    root = project_factory({f"{inst}/{layer}": {"main": chain_main(fn), "functions": {fn: OK_HANDLER}}})
    (p,) = validate(find_project(root), env="localstack")[f"{inst}/{layer}"]
    assert "deployed Lambda name" in p.message and p.message.endswith("(environment 'localstack')")
    # no env (the CLI's default) is the definition as a whole: every environment is checked
    (q,) = validate(find_project(root))[f"{inst}/{layer}"]
    assert q.message.endswith("(environment 'localstack')")
    # one env: that one only
    assert validate(find_project(root), env="local")[f"{inst}/{layer}"] == []


# -- good definitions ------------------------------------------------------------------------

def test_good_definitions_pass(project_factory):
    main_a = main_py(
        "Function(name='first', next_function='second', timeout=1, memory=128, description='say \"hi\"'), "
        "Function(name='second', next_function=NextFunction(name='b', type='pipeline'), timeout=900, memory=10240, "
        "environment={'MY_VAR': 'v', 'OTHER_1': ''})",
        extra="from dorc import CronTrigger, S3Trigger",
    ).replace("    functions=", "    trigger=[CronTrigger(name='daily', cron='cron(0 6 * * ? *)'), "
                                 "S3Trigger(name='drop', bucket_name='{project}-in-{env}', key_prefix='in/')],\n    functions=")
    root = project_factory({
        "demo/a": {"main": main_a, "functions": {"first": OK_HANDLER, "second": OK_HANDLER}},
        "demo/b": {"main": chain_main("g1", "g2", handover="other/c"), "functions": {"g1": OK_HANDLER, "g2": OK_HANDLER}},
        "other/c": {"main": chain_main("h1"), "functions": {"h1": OK_HANDLER}},
    })
    assert validate(find_project(root)) == {"demo/a": [], "demo/b": [], "other/c": []}


def test_functions_may_be_declared_in_any_order(project_factory):
    main = main_py("Function(name='f3'), Function(name='f1', next_function='f2'), Function(name='f2', next_function='f3')")
    assert layer_problems(project_factory, main, {n: OK_HANDLER for n in ("f1", "f2", "f3")}) == []


def test_legacy_import_paths_load(project_factory):
    header = ("from infrastructure.core.Creator import CreatePipeline, load_config\n"
              "from infrastructure.core.models.definition import PipelineDefinition, Function, NextFunction\n")
    main = main_py("Function(name='f1', next_function=NextFunction(name='f2'))," "Function(name='f2')", header=header)
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}}})
    assert validate(find_project(root)) == {"demo/main": []}
    from dorc.api import plan_layer

    assert [f.key for f in plan_layer(find_project(root), "demo", "main").functions] == ["f1", "f2"]


def test_real_census_definitions_are_valid(census_repo):
    # census only, named: a user's own pipelines beside it in pipeline-config are not this test's
    assert validate(find_project(census_repo), "census") == {"census/processed": [], "census/raw": []}


def test_plan_layer_raises_definition_error_with_every_problem(project_factory):
    from dorc.api import plan_layer

    root = project_factory({"demo/main": {"main": chain_main("f1", "f2"), "functions": {"f1": None, "f2": "x = 1\n"}}})
    with pytest.raises(DefinitionError) as exc:
        plan_layer(find_project(root), "demo", "main")
    assert {p.function for p in exc.value.problems} == {"f1", "f2"}
    assert exc.value.exit_code == 2


# -- every problem is listed -----------------------------------------------------------------

def test_several_problems_in_one_file_are_all_listed(project_factory):
    main = main_py("Function(name='f1', next_function='nope'), Function(name='f2')")
    problems = layer_problems(project_factory, main,
                              {"f1": None, "f2": "def handler(event):\n    pass\n", "f3": OK_HANDLER})
    assert len(problems) == 4, [str(p) for p in problems]
    only(problems, "src/f1/lambda.py does not exist")
    only(problems, "handler must take two positional parameters")
    only(problems, "src/f3 is not declared")
    only(problems, "next_function 'nope'")


def test_several_bad_fields_of_one_function_are_all_listed(project_factory):
    problems = layer_problems(project_factory, main_py("Function(name='f1', timeout=0, memory=1)"), {"f1": OK_HANDLER})
    only(problems, "timeout:")
    only(problems, "memory:")


def test_bad_fields_of_two_functions_are_all_listed(project_factory):
    # Each Function(...) is validated as __main__.py builds it: the first invalid one must not
    # hide the second (the user would fix one, re-run, and only then learn about the next).
    main = main_py("Function(name='f1', timeout=0, next_function='f2'), Function(name='f2', memory=1)")
    problems = layer_problems(project_factory, main, {"f1": OK_HANDLER, "f2": OK_HANDLER})
    assert only(problems, "timeout:").function == "f1"
    assert only(problems, "memory:").function == "f2"


def test_definition_and_limit_problems_are_listed_together(project_factory):
    fn = "f" * 60  # deployed name far beyond 64 characters
    problems = layer_problems(project_factory, chain_main(fn, "other"), {fn: OK_HANDLER, "other": None})
    only(problems, "src/other/lambda.py does not exist")
    only(problems, "deployed Lambda name")


# -- the CLI ---------------------------------------------------------------------------------

def test_cli_validate_lists_every_problem_and_exits_2(project_factory, cli):
    root = project_factory({
        "demo/bad": {"main": main_py("Function(name='f1', next_function='nope'), Function(name='f2')"),
                     "functions": {"f1": None, "f2": "async def handler(event, context):\n    pass\n", "f3": OK_HANDLER}},
        "demo/good": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}},
    }, dirname="cfg")
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2, res.output
    out = res.stdout
    assert "demo/bad: 4 problem(s)" in out
    assert "demo/good is valid" in out
    assert "cfg/src/demo/bad/__main__.py [function f1]: cfg/src/demo/bad/src/f1/lambda.py does not exist" in out
    assert "cfg/src/demo/bad/src/f2/lambda.py [function f2]: line 1: handler is `async def`" in out
    assert "folder cfg/src/demo/bad/src/f3 is not declared as a function" in out
    assert "cfg/src/demo/bad/__main__.py [function f1]: next_function 'nope' is not a declared function" in out


def test_cli_validate_one_layer(project_factory, cli):
    root = project_factory({
        "demo/bad": {"main": chain_main("f1"), "functions": {"f1": None}},
        "demo/good": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}},
    })
    res = cli("validate", "demo", "good", "--config-repo", root)
    assert res.exit_code == 0, res.output
    assert "demo/good is valid" in res.stdout
    assert "demo/bad" not in res.stdout


def test_cli_validate_field_error_names_function(project_factory, cli):
    root = project_factory({"demo/main": {"main": main_py("Function(name='f1', timeout=901)"), "functions": {"f1": OK_HANDLER}}})
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2
    assert "src/demo/main/__main__.py [function f1]: timeout: Input should be less than or equal to 900" in res.stdout


def test_cli_validate_refuses_a_log_level_with_the_text_format(project_factory, cli):
    """Lambda refuses ApplicationLogLevel unless LogFormat is JSON: said before any deploy, with the fix."""
    main = chain_main("f1", "f2", f1="log_level='DEBUG'",
                      f2="log_format='JSON', log_level='DEBUG', ephemeral_storage=10240")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}}})
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert ("src/demo/main/__main__.py [function f1]: log_level: 'DEBUG' needs log_format='JSON' (AWS Lambda "
            "refuses a log level with the Text format): add log_format='JSON' or remove log_level") in res.stdout
    assert "demo/main: 1 problem(s)" in res.stdout  # f2, JSON with a level and the largest /tmp, is fine


def test_cli_validate_census_is_valid(census_repo, cli):
    res = cli("validate", "census", "--config-repo", census_repo)
    assert res.exit_code == 0, res.output
    assert "census/raw is valid" in res.stdout
    assert "census/processed is valid" in res.stdout


def test_cli_validate_empty_project_exits_2(project_factory, cli):
    root = project_factory({})
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2
    assert "no pipelines found" in res.stderr
