# The seed's make targets, kept; each delegates to the dorc CLI.
#   make infra/apply instance=census layer=raw env=prod
instance ?= census
layer ?=
env ?= preprod
PYTHON ?= python3

.PHONY: install run test validate bench infra/plan infra/apply infra/destroy infra/promote localstack/start localstack/stop

install:
	$(PYTHON) -m pip install -e ".[test]"

run:
	dorc run $(instance) $(layer) --local

validate:
	dorc validate $(instance) $(layer)

test:
	$(PYTHON) -m pytest

bench:
	$(PYTHON) bench/bench_local.py

infra/plan:
	dorc plan $(instance) $(layer) --env $(env)

infra/apply:
	dorc deploy $(instance) $(layer) --env $(env)

infra/destroy:
	dorc destroy $(instance) $(layer) --env $(env)

infra/promote:
	dorc promote $(instance) $(layer) --to $(env)

localstack/start:
	dorc localstack start

localstack/stop:
	dorc localstack stop
