# The seed's make targets, kept; each delegates to the dorc CLI.
#   make infra/apply instance=census layer=raw env=prod
instance ?= census
layer ?=
env ?= preprod
# The README's venv when it exists, else whatever is on PATH.
VENV ?= .venv
PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)
DORC ?= $(if $(wildcard $(VENV)/bin/dorc),$(VENV)/bin/dorc,dorc)

.PHONY: install run test validate bench infra/plan infra/apply infra/destroy infra/promote localstack/start localstack/stop

install:
	$(PYTHON) -m pip install -e ".[test]"

run:
	$(DORC) run $(instance) $(layer) --local

validate:
	$(DORC) validate $(instance) $(layer)

test:
	$(PYTHON) -m pytest

bench:
	$(PYTHON) bench/bench_local.py

infra/plan:
	$(DORC) plan $(instance) $(layer) --env $(env)

infra/apply:
	$(DORC) deploy $(instance) $(layer) --env $(env)

infra/destroy:
	$(DORC) destroy $(instance) $(layer) --env $(env)

infra/promote:
	$(DORC) promote $(instance) $(layer) --to $(env)

localstack/start:
	$(DORC) localstack start

localstack/stop:
	$(DORC) localstack stop
