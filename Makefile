# qsite: `make run` to serve with demo data, `make test` to run the whole suite.
# Both work with no PostgreSQL/Redis configured (embedded servers under .data/)
# and use real servers when DATABASE_URL / REDIS_URL are set.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install schemas check-schemas bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m service serve --seed-demo

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ruff and mypy (with the Strawberry plugin) at zero findings on service/; config in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check service
	$(BIN)/mypy

# The contract fuzz tests, longer and with a random seed (printed with any failure;
# rerun one with QSITE_FUZZ_SEED=<seed>). The suite runs them with a fixed seed.
FUZZ_SEED     ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
FUZZ_EXAMPLES ?= 100
FUZZ_MAX_TIME ?= 600

fuzz: $(STAMP)
	QSITE_FUZZ_SEED=$(FUZZ_SEED) QSITE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) QSITE_FUZZ_MAX_TIME=$(FUZZ_MAX_TIME) \
		$(BIN)/python -m pytest -q tests/contract/test_openapi.py tests/contract/test_graphql.py $(PYTEST_ARGS)

schemas: $(STAMP)
	$(BIN)/python -m service export-schemas

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python -m bench $(SCENARIOS)

clean:
	rm -rf $(VENV) .data
