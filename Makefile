# `make demo` and `make test` set up .venv on first use (idempotent), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned: left to a resolver it pulls a multi-GB CUDA build
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test test-all lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q $(TORCH)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev,nlp,yolo]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv  ## one-shot sparsification of a ResNet-18 on the bundled digits data, offline
	$(BIN)/sparsify data=digits optim_level=0.5

test: venv  ## the test suite CI runs
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check sparsify tests benchmarks
	$(BIN)/ruff format --check sparsify tests benchmarks

format: venv
	$(BIN)/ruff format sparsify tests benchmarks
	$(BIN)/ruff check --fix sparsify tests benchmarks

clean:
	rm -rf sparsify_runs outputs multirun .pytest_cache
