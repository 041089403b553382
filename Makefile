# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-future lint format reliability bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m jobs.demo
	$(PY) -m jobs.batch examples/prompts.jsonl --output out/demo --offline

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -m "not reliability_full"

# The non-Ray suite a year ahead (libfaketime: apt-get install faketime), so a model's
# retirement date can never fail the tests; not part of `make test` (CI runs on the real date).
FUTURE ?= $(shell date -u -d '+1 year' '+%Y-%m-%d 12:00:00')
test-future: $(STAMP)
	@command -v faketime >/dev/null || { echo "make test-future needs faketime (apt-get install faketime)"; exit 2; }
	faketime '$(FUTURE)' $(PY) -m pytest -q -p no:cacheprovider --tb=line \
		-m "not reliability_full and not ray" --ignore=tests/ray --ignore=tests/reliability

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

reliability: $(STAMP)
	$(PY) -m pytest -q tests/reliability

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]" || true
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) .pytest_cache llm-ledger
