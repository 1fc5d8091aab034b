# The two commands a user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test bench lint install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

## Start the all-in-one service in the foreground (OTLP :4317/:4318, API and SQL :8080). Ctrl-C stops it.
run: install
	$(BIN)/inferline run

## Install and run the whole test suite.
test: install
	$(BIN)/pytest -q -ra

## Micro-benchmarks and the end-to-end throughput run; figures are printed, never asserted.
bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
