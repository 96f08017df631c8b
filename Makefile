# `make demo` and `make test` set up .venv on first use (idempotent), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned: left to a resolver it pulls a multi-GB CUDA build
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: venv deepsparse chromium demo test test-all lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q $(TORCH)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev,nlp,yolo,serve,channels,openvino,cluster,budget]"
	touch $(STAMP)

venv: $(STAMP)

# DeepSparse 1.8.0 (the last real release; 1.9.0 is an empty placeholder) pins numpy<2, onnx<1.15,
# protobuf<=3.20.3 and onnxruntime 1.26, which clash with .venv (ORT's quantizer needs onnx>=1.16),
# so it gets its own venv; sparsify talks to it through a worker process (docs/benchmark.md).
# Its wheels go up to CPython 3.11: set DS_PYTHON=python3.11 if python3 is newer. ~20 s, ~460 MB.
DS_PYTHON ?= $(PYTHON)
DS_VENV := .venv-deepsparse
DEEPSPARSE := deepsparse==1.8.0 "numpy<2" "onnx<1.15" "protobuf<=3.20.3" onnxruntime==1.26.0
DS_STAMP := $(DS_VENV)/.installed-deepsparse-1.8.0

$(DS_STAMP):
	test -x $(DS_VENV)/bin/python || $(DS_PYTHON) -m venv $(DS_VENV)
	$(DS_VENV)/bin/pip install --disable-pip-version-check -q $(DEEPSPARSE)
	NM_DISABLE_ANALYTICS=1 $(DS_VENV)/bin/python -c "import deepsparse; print('deepsparse', deepsparse.__version__)"
	touch $(DS_STAMP)

deepsparse: $(DS_STAMP)  ## the DeepSparse engine's own virtualenv (idempotent)

demo: venv  ## one-shot sparsification of a ResNet-18 on the bundled digits data, offline
	$(BIN)/sparsify data=digits optim_level=0.5

# Headless Chromium from Debian's packages: tests/report/test_html_browser.py opens report.html
# in it. Skipped when it already runs; needs root to install (else the test says why it skips).
chromium:
	@chromium --version >/dev/null 2>&1 || { [ "$$(id -u)" != 0 ] \
	  && echo "chromium missing and not root: run 'sudo make chromium'" >&2 \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; }

test: venv deepsparse chromium  ## the test suite CI runs (DeepSparse tests fail, not skip, here)
	SPARSIFY_REQUIRE_DEEPSPARSE=1 $(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check sparsify tests benchmarks
	$(BIN)/ruff format --check sparsify tests benchmarks

format: venv
	$(BIN)/ruff format sparsify tests benchmarks
	$(BIN)/ruff check --fix sparsify tests benchmarks

clean:
	rm -rf sparsify_runs outputs multirun .pytest_cache
