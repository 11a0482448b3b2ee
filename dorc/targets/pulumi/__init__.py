"""The Pulumi target: dorc's stacks (``stacks``), their programs' components (``program``), the
Automation API door (``engine``), the promotion backend (``backend``), and the offline preview
under mocks (``mocks``, ``preview``). Only ``program``, ``mocks`` and ``preview`` import pulumi."""
