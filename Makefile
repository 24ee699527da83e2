# Tasks for working on ml-cost-exporter (`make help` lists them). scripts/test.sh sets up, then runs `make test`.
# Every target expects the test set-up (`make setup`, or any run of scripts/test.sh) except `demo`.

PYTHON ?= .venv/bin/python
RUFF ?= .venv/bin/ruff
# The checkout's sources first, so a test or a generator never reads an older installed copy.
export PYTHONPATH := $(CURDIR)/exporter:$(CURDIR)
PYTEST = $(PYTHON) -m pytest -q
LINTED = exporter tests bench grafana k8s docs mixin demo harness
# Tiers with their own set-up, run after the default ones by `make test`, one `make tier-<name>` each. A tier's
# tests carry its marker (tests/support/tiers.py); its set-up is scripts/<name>-setup.sh if there is one.
SLOW_TIERS ?= upstream vmalert outage
DEFAULT_TIERS = not upstream and not vmalert and not outage
GENERATORS = docs/generate.py k8s/generate.py grafana/build_dashboards.py mixin/generate.py prometheus/generate.py

.PHONY: help setup test unit lint generate docs bench demo

help:  ## list the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z%-]+):.*## /  \1\t/'

setup:  ## install what the tests need (Debian packages, .venv, npm tools); quick when nothing changed
	@bash scripts/setup.sh test

test: lint  ## ruff, then every test: the default tiers, then each slow tier
	$(PYTEST) -m "$(DEFAULT_TIERS)"
	@for tier in $(SLOW_TIERS); do $(MAKE) --no-print-directory tier-$$tier || exit 1; done

unit:  ## the unit tests: Python only, no external binary (a few seconds)
	$(PYTEST) tests/unit

tier-%:  ## one tier by its marker, after its own set-up: make tier-prometheus, make tier-upstream
	@if [ -f scripts/$*-setup.sh ]; then bash scripts/$*-setup.sh; fi
	$(PYTEST) -m $*

lint:  ## ruff over every Python directory
	$(RUFF) check $(LINTED)

generate:  ## run every generator, then show what changed (commit the result after an intended change)
	@for generator in $(GENERATORS); do \
	  if [ -f $$generator ]; then echo "generate: $$generator"; $(PYTHON) $$generator || exit 1; fi; \
	done
	@git status --short -- docs k8s grafana mixin prometheus

docs:  ## regenerate the generated docs pages and run the docs' tests
	$(PYTHON) docs/generate.py
	$(PYTEST) tests/docs

bench:  ## the benchmarks (several minutes); figures in docs/benchmarks.md
	bash bench/run.sh

demo:  ## the demo stack (its own small set-up)
	bash scripts/demo.sh
