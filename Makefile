# Two commands set everything up on a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck tests unit integration coverage schemas docs screenshots bench clean

# make test runs every tier in one pytest session spread over worker processes (pytest-xdist): integration tests
# mostly wait on brokers, workers and renders, so four processes keep two cores busy. Each module runs whole in one
# process (module-scoped workers and APIs are made once); the slowest modules go first (tests/conftest.py). It prints
# the 25 slowest tests and writes a JUnit report under test-results/ (gitignored).
PYTEST_WORKERS ?= 4
RESULTS := test-results
PARALLEL := -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder
REPORTS := --durations=25 --junitxml=$(RESULTS)/junit.xml

$(STAMP): pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c .ci/constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup  ## render one product video end to end with an embedded broker and S3 server
	$(BIN)/vidgen demo

test: lint typecheck docs tests  ## everything CI runs

lint: setup  ## ruff, and the import contracts of pyproject.toml (layers, the pure core, who may import what)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

tests: setup  ## every test tier: unit, integration, and gpu where there is a CUDA device
	$(BIN)/pytest -q $(PARALLEL) $(REPORTS)

unit: setup  ## the unit tier: no broker, no S3 server, no worker process; under a minute
	$(BIN)/pytest -q tests/unit

integration: setup  ## against a real broker and S3 server, worker processes and the tiny model
	$(BIN)/pytest -q $(PARALLEL) tests/integration

coverage: setup  ## every tier under coverage.py (line coverage of consumer, schemas, producer_examples)
	rm -rf $(RESULTS)/coverage && mkdir -p $(RESULTS)/coverage
	$(BIN)/coverage run -m pytest -q $(PARALLEL) $(REPORTS); status=$$?; \
	$(BIN)/coverage combine -q && $(BIN)/coverage report; exit $$status

schemas: setup  ## regenerate schemas/json after changing schemas/events.py
	$(BIN)/python -m schemas

docs: setup  ## build the docs site into site/ (strict: a broken link, anchor or page fails); open site/index.html
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

screenshots: setup  ## the console's docs images (desktop and phone, light and dark) from the real chromium and stack
	VIDGEN_CONSOLE_SCREENSHOTS=docs/assets/screenshots $(BIN)/pytest -q \
		tests/integration/test_console_a11y.py -k test_main_views

bench: setup  ## benchmarks 1-4 (JSON report and PNG chart under bench/results/)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) demo-output site .mypy_cache .ruff_cache .pytest_cache $(RESULTS)
