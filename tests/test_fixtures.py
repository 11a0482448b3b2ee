"""Offline fixtures declared by the pipeline-config (``[fixtures.<name>]`` in dorc.toml): a project's
own module started for ``{sim.<name>}`` in ``[local.environment]``, and every bad declaration
refused with the file, the key and the fix."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from dorc.api import run_pipeline, validate
from dorc.errors import DefinitionError, ProjectError
from dorc.planning import plan_layer
from dorc.project import FixtureSpec, find_project
from dorc_sim.fixtures import FixtureError, Fixtures, UnknownFixture, module_name
from helpers import chain_main, make_project

# A tiny JSON service on 127.0.0.1: it answers every GET with what it was asked, and leaves a
# file beside itself when it is stopped (the test's proof that the run stopped it).
ECHO_MODULE = '''
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STOPPED = Path(__file__).parent / "stopped.txt"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"greeting": "hello from the echo fixture", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class EchoServer:
    def __init__(self, port=0):
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def start(self):
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        STOPPED.write_text(self.url)
'''

# The function calls what ECHO_URL names: the real service in AWS, the fixture on this machine.
CALLER = '''
import json
import os
import urllib.request


def handler(event, context):
    url = os.environ["ECHO_URL"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy
    with opener.open(url + "/hello?x=1", timeout=10) as resp:
        answer = json.loads(resp.read())
    return {"statusCode": 200, "body": {"url": url, "answer": answer}}
'''

MAIN = chain_main("f1", f1="environment={'ECHO_URL': 'https://echo.example.invalid/v1'}")

FIXTURE_TOML = '''
[local.environment]
ECHO_URL = "{sim.echo}/v1"

[fixtures.echo]
module = "fixtures/echo.py"
factory = "EchoServer"
'''


def echo_project(tmp_path: Path, toml: str = FIXTURE_TOML, module: str | None = ECHO_MODULE, *,
                 dirname: str = "proj") -> Path:
    """A project whose one function reads ECHO_URL, with ``fixtures/echo.py`` written before dorc.toml is read."""
    root = make_project(tmp_path, {"demo/main": {"main": MAIN, "functions": {"f1": CALLER}}},
                        dirname=dirname, toml_extra=textwrap.dedent(toml))
    if module is not None:
        (root / "fixtures").mkdir(exist_ok=True)
        (root / "fixtures" / "echo.py").write_text(textwrap.dedent(module))
    return root


def port_is_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


# -- a project's own fixture, end to end -------------------------------------------------------

def test_a_declared_fixture_answers_the_function_and_is_stopped(tmp_path):
    root = echo_project(tmp_path)
    result = run_pipeline("demo", "main", target="local", project=find_project(root), record=False)
    assert result.succeeded, result.error
    body = result.step("f1").output["body"]
    assert body["answer"] == {"greeting": "hello from the echo fixture", "path": "/v1/hello?x=1"}
    assert body["url"].startswith("http://127.0.0.1:") and body["url"].endswith("/v1")
    stopped = root / "fixtures" / "stopped.txt"
    assert stopped.read_text() == body["url"].removesuffix("/v1")  # stopped by the run, not left serving
    assert not port_is_open(stopped.read_text())


def test_the_module_is_loaded_under_a_name_of_its_own(tmp_path):
    root = echo_project(tmp_path)
    before = set(sys.modules)
    assert run_pipeline("demo", "main", project=find_project(root), record=False).succeeded
    new = set(sys.modules) - before
    assert "echo" not in sys.modules and "fixtures" not in new and "fixtures.echo" not in sys.modules
    spec = find_project(root).settings.fixtures["echo"]
    assert [m for m in new if m.startswith("dorc_fixture_")] in ([], [module_name(spec)])
    # two projects with the same fixtures/echo.py path relative to their roots never share a module
    other = echo_project(tmp_path, dirname="other")
    assert module_name(find_project(other).settings.fixtures["echo"]) != module_name(spec)


def test_the_settings_and_the_plan_carry_the_declaration(tmp_path):
    root = echo_project(tmp_path, FIXTURE_TOML + "port = 4599\n")
    project = find_project(root)
    spec = project.settings.fixtures["echo"]
    assert spec == FixtureSpec(name="echo", module=str((root / "fixtures" / "echo.py").resolve()),
                               factory="EchoServer", port=4599, declared_in=str(root / "dorc.toml"))
    plan = plan_layer(project, "demo", "main")
    assert plan.local_fixtures == {"echo": spec}
    snapshot = plan.snapshot()
    assert "local_fixtures" not in snapshot and "local_environment" not in snapshot
    # machine-local: where the module lives and which port it takes change no digest
    moved = echo_project(tmp_path, FIXTURE_TOML + "port = 4600\n", dirname="moved")
    assert plan_layer(find_project(moved), "demo", "main").digest() == plan.digest()


def test_stable_ports_take_the_declared_port_or_any_free_one(tmp_path):
    root = echo_project(tmp_path)
    with socket.socket() as probe:  # a port that is free now
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    spec = FixtureSpec(name="echo", module=str(root / "fixtures" / "echo.py"), factory="EchoServer",
                       port=free, declared_in=str(root / "dorc.toml"))
    with Fixtures({"echo": spec}, stable_ports=True) as fixtures:
        assert fixtures.render("{sim.echo}/x") == f"http://127.0.0.1:{free}/x"
        assert fixtures.url("echo") == f"http://127.0.0.1:{free}"  # started once
        # the port is taken now: another run falls back to any free port
        with Fixtures({"echo": spec}, stable_ports=True) as second:
            url = second.url("echo")
            assert url.startswith("http://127.0.0.1:") and url != f"http://127.0.0.1:{free}"
    with Fixtures({"echo": spec}) as unstable:  # local runs: any free port
        assert unstable.url("echo") != f"http://127.0.0.1:{free}"
    assert not port_is_open(f"http://127.0.0.1:{free}")


def test_fixtures_for_plans_and_unknown_names(tmp_path):
    plan = plan_layer(find_project(echo_project(tmp_path)), "demo", "main")
    with Fixtures.for_plans({plan.key: plan}) as fixtures:
        assert fixtures.declared == ["echo"]
        with pytest.raises(UnknownFixture, match=r"\{sim\.nope\} names no declared fixture; declared: echo"):
            fixtures.url("nope")
        assert fixtures.render("no placeholder") == "no placeholder"
    assert Fixtures.for_plans([plan]).declared == ["echo"]


# -- bad declarations: ProjectError with the file, the key and the fix ---------------------------

BAD_DECLARATIONS = {
    "module-file-missing": ('module = "fixtures/nope.py"\nfactory = "EchoServer"',
                            ["module = 'fixtures/nope.py'", "does not exist"], "create it, or correct the path"),
    "module-missing": ('factory = "EchoServer"', ["module is missing"], 'module = "fixtures/'),
    "module-a-folder": ('module = "fixtures"\nfactory = "EchoServer"', ["module = 'fixtures'", "is a folder"],
                        ".py file"),
    "factory-missing": ('module = "fixtures/echo.py"', ["factory is missing"], 'factory = "'),
    "factory-not-defined": ('module = "fixtures/echo.py"\nfactory = "Echo"',
                            ["factory = 'Echo'", "fixtures/echo.py defines no 'Echo'"], "defines EchoServer"),
    "factory-not-callable": ('module = "fixtures/echo.py"\nfactory = "STOPPED_TEXT"',
                             ["factory = 'STOPPED_TEXT'", "not a class or function"], "start(), stop() and url"),
    "factory-not-a-name": ('module = "fixtures/echo.py"\nfactory = "echo.EchoServer"',
                           ["factory = 'echo.EchoServer'", "not a Python name"], "class or function"),
    "port-too-large": ('module = "fixtures/echo.py"\nfactory = "EchoServer"\nport = 70000',
                       ["port = 70000", "not a port number"], "1 to 65535"),
    "port-a-string": ('module = "fixtures/echo.py"\nfactory = "EchoServer"\nport = "4580"',
                      ["port = '4580'", "not a port number"], "1 to 65535"),
    "port-a-bool": ('module = "fixtures/echo.py"\nfactory = "EchoServer"\nport = true',
                    ["port = True", "not a port number"], "1 to 65535"),
    "unknown-key": ('module = "fixtures/echo.py"\nfactory = "EchoServer"\nprot = 4580',
                    ["unknown key 'prot'", "module, factory, port"], "remove or correct it"),
}


@pytest.mark.parametrize("case", sorted(BAD_DECLARATIONS))
def test_bad_declarations_name_the_file_and_the_key(tmp_path, case):
    body, fragments, hint = BAD_DECLARATIONS[case]
    module = ECHO_MODULE + "\nSTOPPED_TEXT = 'stopped'\n"
    root = echo_project(tmp_path, f'[local.environment]\nECHO_URL = "{{sim.echo}}/v1"\n\n[fixtures.echo]\n{body}\n',
                        module)
    with pytest.raises(ProjectError) as err:
        find_project(root)
    message = err.value.message
    assert message.startswith(f"{root / 'dorc.toml'}: [fixtures.echo]"), message
    for fragment in fragments:
        assert fragment in message, message
    assert hint in (err.value.hint or ""), err.value.hint


@pytest.mark.parametrize("toml, fragment", [
    ('[fixtures.Echo-API]\nmodule = "fixtures/echo.py"\nfactory = "EchoServer"\n', "cannot be written as {sim.Echo-API}"),
    ('[fixtures]\necho = "fixtures/echo.py"\n', "[fixtures.echo] must be a table with module and factory"),
    ('[[fixtures]]\nmodule = "fixtures/echo.py"\n', "[fixtures] must hold one table per fixture"),
], ids=["name", "not-a-table", "not-tables"])
def test_bad_fixture_tables(tmp_path, toml, fragment):
    root = echo_project(tmp_path, toml)
    with pytest.raises(ProjectError, match="dorc.toml") as err:
        find_project(root)
    assert fragment in err.value.message


def test_a_module_that_is_not_valid_python(tmp_path):
    root = echo_project(tmp_path, module="class EchoServer(:\n")
    with pytest.raises(ProjectError, match=r"\[fixtures\.echo\] module = 'fixtures/echo.py': not valid Python"):
        find_project(root)


# What reading the source cannot tell: found when the run loads the module, still a ProjectError.
RUN_TIME = {
    "not-callable": ("EchoServer = object()\n", "factory = 'EchoServer'", "not something to call"),
    "no-port": ("class EchoServer:\n    def __init__(self):\n        pass\n", "factory = 'EchoServer'",
                "does not take port="),
    "import-fails": ("import no_such_module_here\n\nclass EchoServer:\n    pass\n", "module = ",
                     "loading it failed: ModuleNotFoundError"),
    "no-start": ("class EchoServer:\n    def __init__(self, port=0):\n        self.url = 'http://x'\n",
                 "[fixtures.echo]", "without start() or stop()"),
}


@pytest.mark.parametrize("case", sorted(RUN_TIME))
def test_what_only_loading_the_module_tells_is_a_project_error_too(tmp_path, case):
    module, key, fragment = RUN_TIME[case]
    root = echo_project(tmp_path, module=module)
    with pytest.raises(ProjectError) as err:
        run_pipeline("demo", "main", project=find_project(root), record=False)
    message = err.value.message
    assert str(root / "dorc.toml") in message and key in message and fragment in message, message
    assert "(for [local.environment] ECHO_URL of demo/main/f1)" in message
    assert err.value.hint


def test_fixture_errors_carry_a_hint(tmp_path):
    root = echo_project(tmp_path, module="EchoServer = object()\n")
    spec = find_project(root).settings.fixtures["echo"]
    with Fixtures({"echo": spec}) as fixtures, pytest.raises(FixtureError) as err:
        fixtures.url("echo")
    assert "class or function taking port=0" in err.value.hint


# -- an undeclared {sim.<name>} ----------------------------------------------------------------

UNDECLARED = FIXTURE_TOML.replace("{sim.echo}/v1", "{sim.ehco}/v1")


def test_validate_reports_an_undeclared_fixture(tmp_path):
    root = echo_project(tmp_path, UNDECLARED)
    problems = validate(find_project(root))["demo/main"]
    hits = [p for p in problems if "{sim.ehco}" in p.message]
    assert len(hits) == 1, [str(p) for p in problems]  # listed once, not once per environment
    (p,) = hits
    assert p.file.endswith("dorc.toml")
    assert "[local.environment] ECHO_URL = '{sim.ehco}/v1'" in p.message
    assert "declared: echo" in p.message and "[fixtures.ehco]" in p.message


def test_a_run_refuses_an_undeclared_fixture_before_anything_runs(tmp_path):
    root = echo_project(tmp_path, UNDECLARED)
    with pytest.raises(DefinitionError, match=r"names fixture \{sim\.ehco\}, which is not declared"):
        run_pipeline("demo", "main", project=find_project(root), record=False)


def test_dorc_validate_exits_2_on_an_undeclared_fixture(tmp_path, cli):
    root = echo_project(tmp_path, '[local.environment]\nECHO_URL = "{sim.echo}/v1"\n', module=None)
    res = cli("validate", "--config-repo", root)
    assert res.exit_code == 2, res.output
    assert "{sim.echo}" in res.output and "declared: none" in res.output


def test_a_malformed_placeholder_is_reported_too(tmp_path):
    root = echo_project(tmp_path, FIXTURE_TOML.replace("{sim.echo}/v1", "{sim.Echo}/v1"))
    problems = validate(find_project(root))["demo/main"]
    assert any("{sim.Echo}" in p.message for p in problems), [str(p) for p in problems]


def test_the_census_fixture_is_the_example_s_not_the_library_s():
    repo = Path(__file__).resolve().parents[1]
    assert not (repo / "sim" / "census_api.py").exists() and not (repo / "sim" / "data").exists()
    assert not any("census" in p.read_text().lower() for p in (repo / "sim").rglob("*.py")), \
        "sim/ is dorc's: fixtures belong to the pipeline-config"
    spec = find_project(repo / "pipeline-config").settings.fixtures["census_api"]
    assert Path(spec.module) == repo / "pipeline-config" / "fixtures" / "census_api.py"
    assert (spec.factory, spec.port) == ("CensusAPIServer", 4580)
    with Fixtures({"census_api": spec}) as fixtures:
        url = fixtures.render("{sim.census_api}/data/2020/dec/pl") + "?get=NAME,P1_001N&for=state:*"
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as resp:
            rows = json.loads(resp.read())
    assert rows[0] == ["NAME", "P1_001N", "state"] and len(rows) == 53
