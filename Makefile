# The two commands a user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test bench lint check install hot-path compile pure clean ui

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

## The hot path (normalisation, rows, sentiment, PII masking) compiled to C with mypyc, in place: `run`, `test` and
## `bench` build it when its sources changed (about a minute). Without a C compiler the same modules
## run interpreted. `make pure` goes back to them and stays there until `make compile`.
hot-path: install
	@if [ -f $(BIN)/.interpreted ]; then echo "hot path: interpreted (make pure; make compile undoes it)"; \
	else $(BIN)/python -m tools.compile_hot_path; fi

compile: install
	rm -f $(BIN)/.interpreted
	$(BIN)/python -m tools.compile_hot_path

pure: install
	$(BIN)/python -m tools.compile_hot_path --remove
	touch $(BIN)/.interpreted

## Start the all-in-one service in the foreground (OTLP :4317/:4318, API and SQL :8080). Ctrl-C stops it.
run: hot-path
	$(BIN)/inferline run

## Install and run the whole test suite.
test: hot-path
	$(BIN)/pytest -q -ra

## Benchmarks (docs/performance.md): stages, embedded and Kafka load, queries over 10M rows.
## Figures are printed and saved to bench/results/, never asserted. Options: make bench BENCH_ARGS="--quick".
bench: hot-path
	$(BIN)/python -m bench $(BENCH_ARGS)

## Lint, formatting, the architecture's import layers and types (also run by CI before the tests).
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

lint: check

## Re-vendor the dashboard's front-end libraries: npm ci (versions from ui/package-lock.json), then
## copy their dist files (ui/vendor-files.txt) into inferline/ui/static/vendor/. Only needed after
## changing ui/package.json; the copies are committed, so `make run` needs no Node.js.
ui:
	cd ui && npm ci --ignore-scripts --no-audit --no-fund
	grep -v '^#' ui/vendor-files.txt | while read -r src dest; do \
		cp "ui/node_modules/$$src" "inferline/ui/static/vendor/$$dest"; done

clean:
	rm -rf $(VENV) .pytest_cache build
	find inferline -name '*.so' -delete
