# snap-progressive-classifier: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= train,snap,cloud,xarray,dev
DEMO   ?= demo-output
SIZE   ?= 1024

# onnxruntime-gpu replaces onnxruntime (both provide the `onnxruntime` module): only where a GPU is.
HAVE_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: setup demo test bench clean help

help:
	@echo "make demo   - set up .venv and run the main job on a synthetic scene (outputs in $(DEMO)/)"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make bench  - run the benchmarks (slow; figures go to benchmarks/README.md by hand)"
	@echo "make clean  - remove .venv and demo outputs"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
ifeq ($(HAVE_GPU),1)
	$(BIN)/python -m pip uninstall --quiet -y onnxruntime
	$(BIN)/python -m pip install --quiet "onnxruntime-gpu>=1.17,<2"
endif
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m snap_operators.apps.demo --out $(DEMO) --size $(SIZE)

test: setup
	$(BIN)/python -m ruff check --select F,E9 --quiet snap_operators tests benchmarks models
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) $(DEMO)
