"""IAM as a local AWS enforces it: what a request asks for (``asks``), whether a role's policies
allow it (``policy``), and who is asking (``principals``: the roles dorc's local AWS and LocalStack
hold in their moto-backed IAM and STS). The local AWS server (``moto_hook``) and the LocalStack
executor plugin both decide with this one package, so a call fails the same way on both targets.

Only calls signed with a role's assumed credentials (what a Lambda function gets) are checked:
dorc itself, fixtures and tests keep calling the local AWS as an administrator, as before.
"""
