"""What AWS refuses at deploy time, refused by ``dorc validate`` first: names (functions, folders,
environments, buckets, roles, rules, tags), the state machine's size and state names, cron fields,
environment variable names, hand-over cycles, and definitions that end dorc (``os._exit``) or use
the seed's other import paths. Each problem names the file (and function) and says the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from dorc.api import plan_layer, validate
from dorc.errors import DefinitionError
from dorc.plan import DEFINITION_MAX_BYTES, STATE_NAME_MAX
from dorc.project import find_project
from helpers import OK_HANDLER, chain_main, handler_returning, main_py, only, problems_of


def cli_refuses(cli, root: Path, *fragments: str, args: tuple = ("validate",)) -> str:
    """``dorc <args>`` exits 2 with every fragment in its output and no traceback."""
    res = cli(*args, "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    for fragment in fragments:
        assert fragment in res.output, res.output
    return res.output


def one_function(project_factory, fn_args: str = "", *, layer: str = "demo/main", extra: str = "", **kw) -> Path:
    main = main_py(f"Function(name='f1'{', ' + fn_args if fn_args else ''})", extra=extra)
    return project_factory({layer: {"main": main, "functions": {"f1": OK_HANDLER}}}, **kw)


def trigger_main(trigger: str) -> str:
    """A one-function __main__.py started by ``trigger`` (Python source)."""
    return ("from dorc import CreatePipeline, CronTrigger, Function, PipelineDefinition, S3Trigger, load_config\n"
            "config = load_config(__file__)\n"
            "CreatePipeline(config, PipelineDefinition(file_path=__file__, functions=[Function(name='f1')],\n"
            f"    trigger={trigger})).apply()\n")


# -- names ---------------------------------------------------------------------------------------

def test_a_name_with_a_trailing_newline_is_refused(project_factory, cli):
    root = project_factory({"demo/main": {"main": main_py("Function(name='f1\\n')"), "functions": {}}})
    p = only(problems_of(root), "is not a plain name")
    assert p.function == "f1\n" and p.file.endswith("src/demo/main/__main__.py")
    assert "'f1\\n'" in p.message and "use letters, digits, '-' and '_'" in p.message
    cli_refuses(cli, root, "is not a plain name")


def test_a_huge_name_is_refused_before_it_reaches_the_filesystem(project_factory, cli):
    root = project_factory({"demo/main": {"main": main_py("Function(name='f' * 100_000)"), "functions": {}}})
    p = only(problems_of(root), "100000 characters")
    assert "use at most 64" in p.message and "shorten it" in p.message
    assert len(p.message) < 400  # the name is not echoed whole
    out = cli_refuses(cli, root, "use at most 64")
    assert "OSError" not in out and len(out) < 2000


@pytest.mark.parametrize("folder", ["ra w", "raw.v2", "råw"])
def test_layer_folders_aws_cannot_name_are_refused(project_factory, cli, folder):
    root = project_factory({f"demo/{folder}": {"main": chain_main("f1"), "functions": {"f1": OK_HANDLER}}})
    p = only(problems_of(root, f"demo/{folder}"), "cannot be part of AWS names")
    assert p.message.startswith(f"layer folder {folder!r} (proj0/src/demo/{folder})")
    assert "rename the folder with letters, digits, '-' and '_' only" in p.message
    assert len(problems_of(root, f"demo/{folder}")) == 1  # not once more per deployed name
    cli_refuses(cli, root, "cannot be part of AWS names")


def test_instance_folders_aws_cannot_name_are_refused(project_factory, cli):
    root = project_factory({"my demo/main": {"main": chain_main("f1"), "functions": {"f1": OK_HANDLER}}})
    p = only(problems_of(root, "my demo/main"), "instance folder 'my demo'")
    assert "rename the folder" in p.message
    with pytest.raises(DefinitionError):  # a run stops there too
        plan_layer(find_project(root), "my demo", "main")


def test_an_environment_aws_cannot_name_is_refused(project_factory, cli):
    root = one_function(project_factory)
    (root / "src/demo/main/Pulumi.pre prod.yaml").write_text("config: {}\n")
    p = only(problems_of(root), "environment name 'pre prod'")
    assert "rename Pulumi.pre prod.yaml or pick another --env" in p.message
    cli_refuses(cli, root, "environment name 'pre prod'")


# -- S3 bucket names -----------------------------------------------------------------------------

def test_a_project_name_that_makes_an_invalid_bucket_name(project_factory, cli):
    root = one_function(project_factory, name="Dorc_Census")
    p = only(problems_of(root), "holding store bucket name 'Dorc_Census-holding-local'")
    assert p.file.endswith("dorc.toml")
    assert "make [project] name lower-case letters, digits and '-' (e.g. 'dorc-census'), or set [buckets] holding" \
        in p.message
    assert "(environment 'local'; also broken in 'localstack')" in p.message
    only(problems_of(root), "artifact bucket name 'Dorc_Census-artifacts'")
    cli_refuses(cli, root, "is not a valid S3 bucket name")


def test_an_environment_that_makes_an_invalid_bucket_name(project_factory):
    root = one_function(project_factory)
    (root / "infra").mkdir()
    (root / "infra/Pulumi.Prod.yaml").write_text("config: {}\n")
    (root / "src/demo/main/Pulumi.Prod.yaml").write_text("config: {}\n")
    p = only(problems_of(root), "'t-holding-Prod'")
    assert p.message.endswith("(environment 'Prod')")


@pytest.mark.parametrize("bucket, fragment", [
    ("ab", "is 2 characters; S3 takes 3-63"), ("my..bucket", "two adjacent periods"),
    ("192.168.1.1", "IP address"), ("xn--bucket", "starts with 'xn--'"), ("data-s3alias", "ends with '-s3alias'"),
    ("-data", "starting and ending with a letter or digit"), ("b" * 64, "is 64 characters"),
])
def test_bucket_name_rules_of_s3(project_factory, bucket, fragment):
    root = project_factory({"demo/main": {"main": "", "functions": {}}},
                           toml_extra=f'[buckets]\nholding = "{bucket}"\n')
    (root / "src/demo/main/__main__.py").write_text(chain_main("f1"))
    (root / "src/demo/main/src/f1").mkdir(parents=True)
    (root / "src/demo/main/src/f1/lambda.py").write_text(OK_HANDLER)
    p = only(problems_of(root, env="local"), fragment)
    assert p.file.endswith("dorc.toml") and "set [buckets] holding" in p.message


def test_an_s3_trigger_on_an_invalid_bucket_name(project_factory):
    main = trigger_main("S3Trigger(name='landing', bucket_name='My_Bucket')")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    p = only(problems_of(root, env="local"), "S3Trigger 'landing': bucket_name 'My_Bucket'")
    assert "; correct bucket_name" in p.message and p.file.endswith("__main__.py")


# -- IAM roles, rules, state machine, tags, logs ----------------------------------------------------

def test_a_project_name_that_makes_an_invalid_role_name(project_factory):
    root = one_function(project_factory, name="my data")
    p = only(problems_of(root, env="local"), "IAM role name 'my data-lambda-local'")
    assert "rename [project] name" in p.message and p.file.endswith("dorc.toml")


def test_a_project_name_that_makes_a_role_name_too_long(project_factory):
    root = one_function(project_factory, name="p" * 60)
    p = only(problems_of(root, env="local"), "-lambda-local' is longer than 64")
    assert "shorten [project] name" in p.message


def test_a_trigger_whose_rule_name_is_too_long(project_factory):
    main = trigger_main(f"CronTrigger(name='{'r' * 60}', cron='0 6 * * ? *')")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    p = only(problems_of(root, env="local"), "trigger rule name")
    assert "longer than 64" in p.message and "shorten the trigger" in p.message


def test_tags_aws_refuses(project_factory, cli):
    root = one_function(project_factory, toml_extra=(
        f'[tags]\n"aws:team" = "x"\nowner = "{"v" * 257}"\n"{"k" * 129}" = "x"\n"cost!" = "a"\n'))
    problems = problems_of(root, env="local")
    assert "reserved by AWS; rename it" in only(problems, "[tags] 'aws:team'").message
    assert "at most 256" in only(problems, "[tags] 'owner'").message
    assert "rename it" in only(problems, "[tags] key 'kkkk").message
    only(problems, "[tags] key 'cost!'")
    assert all(p.file.endswith("dorc.toml") for p in problems)
    cli_refuses(cli, root, "reserved by AWS")


def test_a_log_retention_cloudwatch_does_not_offer(project_factory):
    root = one_function(project_factory, toml_extra="[logs]\nretention_days = 10\n")
    p = only(problems_of(root, env="local"), "[logs] retention_days = 10")
    assert "pick one of them" in p.message and "14, 30" in p.message


def test_a_description_longer_than_lambda_allows(project_factory, cli):
    root = one_function(project_factory, "description='d' * 300")
    p = only(problems_of(root), "description is 300 characters")
    assert p.function == "f1" and "AWS Lambda allows 256: shorten it" in p.message
    cli_refuses(cli, root, "AWS Lambda allows 256")


# -- the state machine ---------------------------------------------------------------------------------

def test_a_definition_over_one_megabyte_is_refused(project_factory, cli):
    root = project_factory({"demo/main": {"main": main_py("Function(name='f1')", description="x" * 1_100_000),
                                          "functions": {"f1": OK_HANDLER}}})
    p = only(problems_of(root, env="local"), "state machine definition is")
    assert f"Step Functions allows {DEFINITION_MAX_BYTES:,} (1 MB)" in p.message
    assert "Split the layer" in p.message
    cli_refuses(cli, root, "Split the layer")


def test_many_functions_are_measured_as_deployed(project_factory):
    """600 plain functions: the definition as sent (compact JSON) is over 1 MB."""
    names = [f"function{i:04d}" for i in range(600)]
    root = project_factory({"demo/main": {"main": chain_main(*names), "functions": {n: OK_HANDLER for n in names}}})
    with pytest.raises(DefinitionError) as caught:
        plan_layer(find_project(root), "demo", "main")
    (p,) = caught.value.problems
    size = int(p.message.split("definition is ", 1)[1].split(" bytes")[0].replace(",", ""))
    assert size > DEFINITION_MAX_BYTES and "(600 functions)" in p.message


def test_generated_state_names_fit_step_functions(project_factory, cli):
    """A 49-character function name still gives a valid Lambda name (64 with 'd-m-' and '-localstack'),
    but '<name> returned a non-numeric statusCode' would be 84: the names are shortened, the causes not."""
    fn = "f" + "n" * 48
    root = project_factory({"d/m": {"main": chain_main(fn, handover="o"),
                                    "functions": {fn: handler_returning("{'statusCode': '200', 'body': 1}")}},
                            "d/o": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}}})
    assert problems_of(root, "d/m") == []
    plan = plan_layer(find_project(root), "d", "m", "localstack")
    states = plan.asl["States"]
    assert all(len(name) <= STATE_NAME_MAX for name in states), [n for n in states if len(n) > STATE_NAME_MAX]
    assert len(states) == 7  # task, check, four Fail states, the hand-over: none merged by the shortening
    causes = [s.get("Cause") for s in states.values() if s["Type"] == "Fail" and "Cause" in s]
    assert f"{fn} returned a 'statusCode' that is not a number (\"200\", a string, is not 200): " \
           "a handler must return a JSON object with a numeric 'statusCode' and a 'body'" in causes
    again = plan_layer(find_project(root), "d", "m", "localstack")
    assert list(again.asl["States"]) == list(states)  # the same names on every build
    res = cli("run", "d", "m", "--local", "--config-repo", root)
    assert res.exit_code == 1, res.output
    assert f"{fn} returned a 'statusCode' that is not a number" in res.output


# -- cron and environment variables ---------------------------------------------------------------

@pytest.mark.parametrize("cron, fragment", [
    ("0 6 * * * *", "exactly one of them must be '?'"),
    ("0 6 ? * ? *", "exactly one of them must be '?'"),
    ("60 6 * * ? *", "minutes '60': '60' is outside 0-59"),
    ("0 24 * * ? *", "hours '24': '24' is outside 0-23"),
    ("0 6 32 * ? *", "day-of-month '32'"),
    ("0 6 1 13 ? *", "month '13'"),
    ("0 6 ? * 8 *", "day-of-week '8'"),
    ("0 6 ? * MON-FRY *", "'FRY' is not a number"),
    ("0 6 * * ? 1969", "year '1969'"),
    ("0/0 6 * * ? *", "increment '0/0' must be 1 or more"),
])
def test_cron_fields_eventbridge_refuses(project_factory, cli, cron, fragment):
    main = trigger_main(f"CronTrigger(name='daily', cron={cron!r})")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    p = only(problems_of(root), fragment)
    assert "EventBridge refuses it; e.g. '0 6 * * ? *'" in p.message and p.file.endswith("__main__.py")
    cli_refuses(cli, root, fragment)


@pytest.mark.parametrize("cron", ["0 6 * * ? *", "cron(0/10 * * * ? *)", "0 18 ? * MON-FRI *", "15 10 ? * 6L 2030",
                                  "0 8 L * ? *", "0 9 ? * 2#1 *", "5,35 14 15W jan,jul ? 2030-2035"])
def test_cron_expressions_eventbridge_accepts(project_factory, cron):
    main = trigger_main(f"CronTrigger(name='daily', cron={cron!r})")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    assert problems_of(root) == []


def test_a_one_letter_environment_variable_is_refused(project_factory, cli):
    root = one_function(project_factory, "environment={'X': '1', 'OK': '2'}")
    p = only(problems_of(root), "environment variable name 'X'")
    assert p.function == "f1" and "two or more letters, digits and '_'" in p.message and "rename it" in p.message
    cli_refuses(cli, root, "environment variable name 'X'")


# -- hand-over cycles -------------------------------------------------------------------------------

def _cycle(project_factory):
    return project_factory({"demo/a": {"main": chain_main("f1", handover="b"), "functions": {"f1": OK_HANDLER}},
                            "demo/b": {"main": chain_main("g1", handover="a"), "functions": {"g1": OK_HANDLER}}})


def test_a_hand_over_cycle_is_refused_by_validate(project_factory, cli):
    root = _cycle(project_factory)
    p = only(problems_of(root, "demo/a"), "hand-overs form a cycle demo/a -> demo/b -> demo/a")
    assert p.function == "f1" and p.file.endswith("src/demo/a/__main__.py")
    assert "end one of these layers without a hand-over" in p.message
    only(problems_of(root, "demo/b"), "hand-overs form a cycle demo/b -> demo/a -> demo/b")
    # checking one layer alone still follows its hand-overs
    assert len(validate(find_project(root), "demo", "a")["demo/a"]) == 1
    cli_refuses(cli, root, "hand-overs form a cycle")


def test_a_run_into_a_hand_over_cycle_stops_before_it_starts(project_factory, cli):
    root = _cycle(project_factory)
    cli_refuses(cli, root, "hand-overs form a cycle demo/a -> demo/b -> demo/a", args=("run", "demo", "a", "--local"))
    out = cli_refuses(cli, root, "hand-overs form a cycle", args=("run", "demo", "--local"))
    assert "IndexError" not in out and "RecursionError" not in out


# -- definitions that end dorc, and the seed's import paths ---------------------------------------

def test_os_exit_in_a_definition_is_a_problem_not_the_end_of_dorc(project_factory, cli):
    root = project_factory({"demo/l": {"main": "import os\nos._exit(3)\n", "functions": {}},
                            "demo/ok": {"main": chain_main("f1"), "functions": {"f1": OK_HANDLER}}}, dirname="cfg")
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert "cfg/src/demo/l/__main__.py: called os._exit(3) while dorc loaded it (line 2: os._exit(3)); remove it" \
        in res.stdout
    assert "demo/ok is valid" in res.stdout
    import os
    assert os._exit.__module__ == "posix"  # put back after the load


def test_os_exit_caught_by_the_definition_is_still_reported(project_factory):
    main = "import os\ntry:\n    os._exit(0)\nexcept BaseException:\n    pass\n" + chain_main("f1")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    only(problems_of(root), "called os._exit(0) while dorc loaded it (line 3: os._exit(0))")


SEED_MAIN = """
from utils.config import load_config
from infrastructure.core.creator import CreatePipeline
from infrastructure.core.models.definition import PipelineDefinition, Function, NextFunction, NextFunctionTypes

config = load_config(__file__)
CreatePipeline(config, PipelineDefinition(
    file_path=__file__,
    description="seed spelling",
    functions=[Function(name="f1", next_function=NextFunction(name="f2", type=NextFunctionTypes.FUNCTION)),
               Function(name="f2", next_function=NextFunction(name="other", type=NextFunctionTypes.PIPELINE))],
)).apply()
"""


def test_the_seed_spellings_load(project_factory, cli):
    root = project_factory({"demo/main": {"main": SEED_MAIN, "functions": {"f1": OK_HANDLER, "f2": OK_HANDLER}},
                            "demo/other": {"main": chain_main("g1"), "functions": {"g1": OK_HANDLER}}})
    assert problems_of(root) == []
    res = cli("run", "demo", "main", "--local", "--config-repo", root)
    assert res.exit_code == 0, res.output


def test_a_project_utils_package_wins_over_the_seed_alias(project_factory):
    """``utils`` is a common name: a layer's own ``utils`` is imported, not dorc's alias."""
    main = "from utils import LABEL\n" + main_py("Function(name='f1')").replace("'test pipeline'", "LABEL")
    root = project_factory({"demo/main": {"main": main, "functions": {"f1": OK_HANDLER}}})
    (root / "src/demo/main/utils.py").write_text("LABEL = 'mine'\n")
    assert problems_of(root) == []
    assert plan_layer(find_project(root), "demo", "main").description == "mine"


def test_an_s3_trigger_whose_event_pattern_is_too_long(project_factory):
    root = project_factory({"demo/main": {"main": trigger_main("S3Trigger(name='landing', bucket_name='data-in', "
                                                               "key_prefix='k' * 5000)"),
                                          "functions": {"f1": OK_HANDLER}}})
    p = only(problems_of(root, env="local"), "S3Trigger 'landing': its event pattern is")
    assert "EventBridge allows 4096. Shorten key_prefix" in p.message


def test_the_seed_alias_is_not_a_module_for_handlers(project_factory, cli):
    """In AWS a handler's ``import utils`` fails unless it ships one; a local run must not find dorc's alias."""
    main = SEED_MAIN.replace(', next_function=NextFunction(name="other", type=NextFunctionTypes.PIPELINE)', "")
    root = project_factory({"demo/main": {"main": main, "functions": {
        "f1": OK_HANDLER, "f2": handler_returning("{'statusCode': 200, 'body': 'x'}", imports="import utils.config")}}})
    res = cli("run", "demo", "main", "--local", "--config-repo", root)
    assert res.exit_code == 1, res.output
    assert "No module named 'utils'" in res.output


def test_two_layers_each_import_their_own_helper_module(project_factory):
    """A module a definition imports from its folder is not left for the next layer's same-named one."""
    main = "from utils import LABEL\n" + main_py("Function(name='f1')").replace("'test pipeline'", "LABEL")
    root = project_factory({f"demo/{lay}": {"main": main, "functions": {"f1": OK_HANDLER}} for lay in ("a", "b")})
    for lay in ("a", "b"):
        (root / f"src/demo/{lay}/utils.py").write_text(f"LABEL = 'layer {lay}'\n")
    project = find_project(root)
    assert [plan_layer(project, "demo", lay).description for lay in ("a", "b")] == ["layer a", "layer b"]


# What the seed's pipeline template (templates/pipeline/engine.py) generates, plus the
# CreatePipeline call its documentation adds.
SEED_TEMPLATE_MAIN = """
from utils.config import Config, UniversalConfig, LayerConfig, rAPIdConfig
from infrastructure.core.creator import CreatePipeline
from infrastructure.core.models.definition import (
    PipelineDefinition,
    Function,
    NextFunction
)

config = Config(
    universal=UniversalConfig(
        region="CHANGE_ME",
        project="CHANGE_ME",
        rapid_layer_config=[LayerConfig(folder="CHANGE_ME", source="CHANGE_ME", target="CHANGE_ME")]
    ),
    vpc_id="CHANGE_ME",
    private_subnet_ids=["CHANGE_ME"],
)

pipeline_definition = PipelineDefinition(
    file_path=__file__,
    description="from the seed's template",
    functions=[Function(name="function1")],
)
CreatePipeline(config, pipeline_definition).apply()
"""


def test_the_seed_template_loads(project_factory):
    """Its Config only names AWS settings dorc takes from dorc.toml and Pulumi.<env>.yaml."""
    root = project_factory({"demo/main": {"main": SEED_TEMPLATE_MAIN, "functions": {"function1": OK_HANDLER}}})
    assert problems_of(root) == []
    plan = plan_layer(find_project(root), "demo", "main", "localstack")
    assert plan.description == "from the seed's template" and plan.region == "eu-west-2"
    assert plan.functions[0].name == "demo-main-function1-localstack"


def test_definitions_loaded_in_threads_at_once_put_the_real_os_exit_back(tmp_path):
    """Two runs in threads load their definitions at the same time: whatever the order in which
    the loads end, ``os._exit`` is the real one afterwards (a leak would turn every later
    ``os._exit`` in dorc's process into a definition error)."""
    import os
    import threading

    from dorc.api import validate
    from dorc.project import find_project
    from helpers import OK_HANDLER, chain_main, make_project

    slow = "import time\ntime.sleep(0.2)\n"
    root = make_project(tmp_path, {"demo/main": {"main": slow + chain_main("f1"), "functions": {"f1": OK_HANDLER}}})
    project = find_project(root)
    real = os._exit
    threads = [threading.Thread(target=validate, args=(project, "demo", "main", "local")) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert os._exit is real


def test_a_function_name_with_a_newline_is_shown_quoted_and_keeps_the_problem_on_one_line(project_factory, cli):
    root = project_factory({"demo/main": {"main": main_py('Function(name="f1\\n")'), "functions": {}}})
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2
    line = next(line for line in res.output.splitlines() if "is not a plain name" in line)
    assert "[function 'f1\\n']" in line
