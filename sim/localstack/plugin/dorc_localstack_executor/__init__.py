"""LocalStack Lambda runtime executor "dorc": each execution environment is a host process running
``python -m dorc_sim.localstack.worker`` with dorc's interpreter, so handlers run in the same runtime
(``sim.runtime``) as dorc's in-process target."""

PLUGIN_NAME = "dorc"
