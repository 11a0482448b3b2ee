"""``--dry-run`` on LocalStack: the calls a deployment would make, read and planned against the
endpoint, shown and not made (``dorc deploy ... --target localstack --dry-run`` and
``dorc run ... --localstack --dry-run``).

Reading needs the endpoint, so an unreachable one is the usual "not reachable" error. The
functions' variables are worked out as a deployment works them out, except that no fixture is
started (a dry run runs nothing): a fixture deployed to LocalStack listens on its declared port,
and that is the URL compared (a deployment that found the port taken used another, and the dry
run then shows the variable as changed).
"""

from __future__ import annotations

from ...localstack.endpoint import require_ready
from ...observer import NullObserver
from ...plan import LayerPlan
from .deploy import function_environments, show_plan
from .planner import APICall


class PreviewFixtures:
    """``Fixtures.render`` without starting anything: each ``{sim.<name>}`` whose declaration
    (``[fixtures.<name>]``) has a port becomes the URL a fixture on that port has; any other is
    left as written, and shows as a change (its URL is only known once it runs)."""

    HOST = "127.0.0.1"

    def __init__(self, plans: dict[str, LayerPlan]):
        self._ports = {name: spec.port for p in plans.values()
                       for name, spec in (getattr(p, "local_fixtures", None) or {}).items() if spec.port}

    def render(self, value: str) -> str:
        from dorc_sim.fixtures import placeholders

        for name in dict.fromkeys(placeholders(value)):
            if name in self._ports:
                value = value.replace(f"{{sim.{name}}}", f"http://{self.HOST}:{self._ports[name]}")
        return value


def dry_run(plans: dict[str, LayerPlan], *, project, endpoint: str | None = None, observer=None) -> list[APICall]:
    """Read, plan, report through ``observer.progress`` (one line per call, then "N call(s);
    nothing was changed"), and return the calls. Builds the packages (local files, needed to
    know whether code changed); makes no write call to the endpoint."""
    observer = observer or NullObserver()
    ep = require_ready(endpoint)
    envs = function_environments(plans, PreviewFixtures(plans))
    return show_plan(plans, project=project, endpoint=ep, environments=envs, observer=observer)
