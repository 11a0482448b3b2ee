"""LocalStack Lambda runtime executor "dorc": each execution environment is a sandboxed host
process running dorc's LocalStack worker on the function's runtime Python, so handlers run in the
same sandbox and runtime (``dorc_sim.sandbox``, ``dorc_sim.runtime``) as dorc's local target."""

PLUGIN_NAME = "dorc"
