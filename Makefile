# klikit-webhooks: every target installs what it needs first (virtual environment, CDK CLI).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 3000
# Python 3.13 is the Lambda runtime: use it when the machine has it, else the default python3.
PYTHON_313 := $(shell for p in python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -n 1); do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
BASE_PYTHON := $(if $(PYTHON_313),$(PYTHON_313),python3)

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := 1
# one lock for every platform and Python >= 3.11 (the Lambda runs 3.13); the layer installs from requirements.lock
LOCK := $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_ARGS)
CDK := node_modules/.bin/cdk
CDK_FLAGS := --no-notices
# extra CDK CLI arguments, e.g. make deploy CDK_ARGS="-c stage=prod -c alarm_email=oncall@example.com"
CDK_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/$$(PORT)/$(PORT)/g' | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# requirements.txt (what ships) and requirements-dev.txt are edited by hand; `make lock` resolves them into the
# hashed locks, and every install is from the locks with hash checking (the venv's own pip, not upgraded: with every
# pin hashed and no resolution left, pip's version cannot change what is installed).
$(STAMP): requirements.lock requirements-dev.lock
	@if [ -z "$(PYTHON_313)" ]; then echo "python3.13 not found: using $$(python3 --version) (Lambda runs 3.13)"; fi
	@test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@touch $@

$(CDK): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: venv
venv: $(STAMP) ## create .venv and install requirements-dev.lock, every hash checked

.PHONY: lock
lock: $(STAMP) ## re-resolve the hashed locks after editing requirements*.txt (LOCK_ARGS=--upgrade: newest of all)
	$(LOCK) requirements.txt -o requirements.lock
	$(LOCK) requirements-dev.txt -c requirements.lock -o requirements-dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@touch $(STAMP)

.PHONY: local
local: $(STAMP) ## the whole pipeline offline on http://127.0.0.1:$(PORT) (ARGS=-v for full logs)
	$(PY) -m tools.cli local --port $(PORT) $(ARGS)

.PHONY: test
test: lint typecheck pytest ## everything CI runs: ruff, mypy, pytest

.PHONY: lint
lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: format
format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: typecheck
typecheck: $(STAMP) ## mypy
	$(VENV)/bin/mypy

.PHONY: pytest
pytest: $(STAMP) ## the test suites (unit, integration, infra, local stack)
	$(PY) -m pytest -n 2 --dist loadgroup -q

.PHONY: unit
unit: $(STAMP) ## the fast tests alone: no moto server, no synth, a few seconds
	$(PY) -m pytest -q tests/unit

.PHONY: bench
bench: $(STAMP) ## benchmarks against same-run baselines; writes bench-results.json
	$(PY) -m bench

.PHONY: fuzz
fuzz: $(STAMP) ## hostile-input fuzzing of the receiver, 100,000+ cases
	KLIKIT_FUZZ_EXAMPLES=100000 $(PY) -m pytest -q -p no:randomly tests/reliability -k hostile

.PHONY: soak
soak: $(STAMP) ## the property-based pipeline test with far more examples
	KLIKIT_SOAK_EXAMPLES=1000 $(PY) -m pytest -q -p no:cacheprovider tests/reliability -k property

.PHONY: preflight
preflight: $(STAMP) ## before the first deploy: check the AWS account and region (ARGS="--region me-central-1")
	$(PY) -m tools.cli preflight $(ARGS)

.PHONY: bootstrap
bootstrap: $(STAMP) $(CDK) ## CDK bootstrap of the account and region in your environment (once per region)
	$(CDK) bootstrap $(CDK_FLAGS) $(CDK_ARGS)

.PHONY: synth
synth: $(STAMP) $(CDK) ## synthesize the CloudFormation template into cdk.out (offline)
	$(CDK) synth $(CDK_FLAGS) --quiet $(CDK_ARGS)

.PHONY: diff
diff: $(STAMP) $(CDK) ## compare the stack with what is deployed
	$(CDK) diff $(CDK_FLAGS) $(CDK_ARGS)

.PHONY: deploy
deploy: $(STAMP) $(CDK) ## deploy the stack to the AWS account in your environment
	$(CDK) deploy $(CDK_FLAGS) --require-approval broadening $(CDK_ARGS)

.PHONY: destroy
destroy: $(STAMP) $(CDK) ## delete the stack (a prod stage keeps its tables, bucket and secret)
	$(CDK) destroy $(CDK_FLAGS) $(CDK_ARGS)

.PHONY: logs
logs: $(STAMP) ## tail the local stack's logs, or CloudWatch with ARGS="--stack NAME --follow --since 10m"
	$(PY) -m tools.cli logs $(ARGS)

.PHONY: clean
clean: ## remove build output (keeps .venv and node_modules)
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache .hypothesis .local bench-results.json
