"""The plux plugin. Import-cheap on purpose: plux imports this module while scanning the namespace."""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class DorcRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    # namespace inherited: "localstack.lambda.runtime_executor"
    name = "dorc"

    def load(self, *args, **kwargs):
        from dorc_localstack_executor import sfn_metadata
        from dorc_localstack_executor.executor import DorcRuntimeExecutor, _dorc_sim

        sfn_metadata.install()  # lambda:invoke results name the call's request id, as in AWS
        _dorc_sim()  # dorc's simulator, appended to sys.path (its iam package is stdlib-only)
        from dorc_sim.iam import localstack_gate

        localstack_gate.install()  # a handler's calls are checked against its function's role, as in AWS
        return DorcRuntimeExecutor
