# Quiver's entry points. README, CI (.ci/run) and people use these same commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint typecheck unit bench-serving bench-optimize bench-generate bench-plan bench-loadtest bench-slo clean

# The core server: numpy, ONNX Runtime, httptools, orjson. No torch.
$(VENV)/.core: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# Everything the tests need: the llm and optimize extras and the dev tools.
$(VENV)/.all: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,llm,optimize]'
	touch $(VENV)/.core $@

serve: $(VENV)/.core
	$(BIN)/quiver serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.all
	$(BIN)/ruff check src tests bench

typecheck: $(VENV)/.all
	$(BIN)/mypy

unit: $(VENV)/.all
	$(BIN)/python -m pytest

test: lint typecheck unit

bench-serving: $(VENV)/.all
	bash bench/serving/run.sh

bench-optimize: $(VENV)/.all
	$(BIN)/python bench/optimize/bench_optimize.py

bench-generate: $(VENV)/.all
	$(BIN)/python bench/generate/bench_generate.py

bench-plan: $(VENV)/.all
	flock /tmp/quiver-bench.lock $(BIN)/python bench/plan/bench_plan.py

bench-loadtest: $(VENV)/.all
	flock /tmp/quiver-bench.lock $(BIN)/python bench/loadtest/bench_wrk.py

bench-slo: $(VENV)/.all
	flock /tmp/quiver-bench.lock $(BIN)/python bench/loadtest/bench_slo_batching.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
