# Sortloop: `make dev` starts the whole system locally, `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# constraints.txt pins torch to the CPU build on this machine's disk (no CUDA download).
PIP := $(PY) -m pip install --constraint constraints.txt
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install browser screenshots dev test test-unit test-integration test-e2e test-fuzz fuzz lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP) --quiet "torch==2.13.0"
	$(PIP) --quiet -e ".[train,ops,dev]"
	touch $(STAMP)

# The browser tier's Chromium: installed where the machine allows, else one line on what to run.
browser:
	sh scripts/ensure_browser.sh

dev: install
	$(VENV)/bin/python scripts/dev.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install browser lint
	$(VENV)/bin/pytest -q tests/unit
	$(VENV)/bin/pytest -q tests/integration
	$(VENV)/bin/pytest -q tests/fuzz
	$(VENV)/bin/pytest -q tests/e2e

test-unit: install
	$(VENV)/bin/pytest -q tests/unit

test-integration: install
	$(VENV)/bin/pytest -q tests/integration

test-e2e: install browser
	$(VENV)/bin/pytest -q tests/e2e

# Retake the screenshots in docs/screenshots (the e2e review and models tests take them).
screenshots: install browser
	SORTLOOP_SCREENSHOTS_DIR=docs/screenshots $(VENV)/bin/pytest -q tests/e2e/test_review_keyboard.py tests/e2e/test_models_browser.py

# Schemathesis over every operation of /openapi.json: a few examples each in `make test`,
# FUZZ_EXAMPLES each here (SORTLOOP_FUZZ_EXAMPLES).
FUZZ_EXAMPLES ?= 200
test-fuzz: install
	$(VENV)/bin/pytest -q tests/fuzz

fuzz: install
	SORTLOOP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -q tests/fuzz

bench: install
	$(VENV)/bin/python bench/learning_curve.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache instance
