# qsite: `make run` to serve with demo data, `make test` to run the whole suite.
# Both work with no PostgreSQL/Redis configured (embedded servers under .data/)
# and use real servers when DATABASE_URL / REDIS_URL are set.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install schemas check-schemas bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,embedded]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m service serve --seed-demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

schemas: $(STAMP)
	$(BIN)/python -m service export-schemas

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python -m bench $(SCENARIOS)

clean:
	rm -rf $(VENV) .data
