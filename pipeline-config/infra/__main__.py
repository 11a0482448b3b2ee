"""The `infra-<env>` stack: one IAM role per service and the holding bucket of an environment.

Deploy it per environment, after `universal` and before the layers: `dorc deploy infra --env prod`.
Preview offline: `dorc plan infra --env prod`.
"""

from dorc import CreateInfra

CreateInfra.for_stack(__file__).export()
