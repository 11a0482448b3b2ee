"""The `universal` stack: the artifact bucket every environment's functions are deployed from.

Deploy it once, before any infra-<env> or layer stack: `dorc deploy universal`.
Preview offline: `dorc plan universal`.
"""

from dorc import CreateUniversal

CreateUniversal.for_stack(__file__).export()
