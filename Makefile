# The one command surface for people and CI. `make demo` and `make test` set up
# everything they need on a fresh machine: a Python 3.10 virtual environment in .venv
# with specc (editable) and OneFlow 0.9.0 plus its CUDA runtime wheels (it runs on CPU).

VENV        := .venv
PY          := $(VENV)/bin/python
SPECC       := $(VENV)/bin/specc
STAMP       := $(VENV)/.specc-installed
PYTHON310   ?= $(shell scripts/find-python310)
DEMO_PORT   ?= 29500
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test quick lint format schema regen check clean bench-step

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -n "$(PYTHON310)" || { echo "make: Python 3.10 is required" >&2; exit 1; }
	test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e '.[oneflow,test]'
	touch $(STAMP)

demo: setup
	$(SPECC) build specs/huge_mlp_2d.yaml -o build
	$(SPECC) plan specs/huge_mlp_2d.yaml
	cd build && ../$(PY) -m oneflow.distributed.launch --nproc_per_node 4 \
		--master_port $(DEMO_PORT) -m huge_mlp_2d

test: setup
	$(PY) -m pytest

# Everything that needs no launcher, with a quarter of the fuzz examples: the edit loop.
quick: setup
	SPECC_FUZZ_SCALE=0.25 $(PY) -m pytest -q -m "not launcher"

lint: setup
	$(VENV)/bin/ruff check specc tests
	$(VENV)/bin/ruff format --check specc tests
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format specc tests
	$(VENV)/bin/ruff check --fix specc tests

schema: setup
	$(SPECC) schema --write

# Rewrite the golden trees and expected diagnostics from the current compiler;
# review the diff before committing it.
regen: setup
	$(PY) -m tests.regen

check: lint test

# Training-step time of generated packages against hand-written OneFlow twins, one
# launch per world size (2 and 4 processes); see benchmarks/RESULTS-step-time.md.
bench-step: setup
	$(PY) benchmarks/step_time.py

clean:
	rm -rf $(VENV) build .pytest_cache
