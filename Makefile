# Two commands set everything up on a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck tests unit integration schemas docs screenshots bench clean

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
	$(BIN)/pytest -q

unit: setup  ## the unit tier: no broker, no S3 server, no worker process; under a minute
	$(BIN)/pytest -q tests/unit

integration: setup  ## against a real broker and S3 server, worker processes and the tiny model
	$(BIN)/pytest -q tests/integration

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
	rm -rf $(VENV) demo-output site .mypy_cache .ruff_cache .pytest_cache
