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

.PHONY: setup demo train-demo test quick lint format schema regen bench bench-compile bench-cold bench-step check clean hf-venv hf-fixtures

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

# A tiny GPT-2 learns Python's documentation on data 2 x tensor 2, then resumes from
# its checkpoint under tensor 4; the held-out loss ends far below the text's unigram
# entropy. About two minutes on two CPU cores.
train-demo: setup
	$(PY) scripts/train_demo.py --port $(DEMO_PORT)

test: setup hf-venv
	$(PY) -m pytest

# Everything that needs no launcher and is not slow, with a quarter of the fuzz
# examples: the edit loop.
quick: setup
	SPECC_FUZZ_SCALE=0.25 $(PY) -m pytest -q -m "not launcher and not slow"

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

# Benchmarks (issue 17): `make bench` runs the three and writes their tables into
# benchmarks/RESULTS.md (between its `make bench` markers); the others print one.
bench: setup
	$(PY) benchmarks/bench.py

# specc against libyaml on generated specs of 10 to 10,000 layers: time and memory.
bench-compile: setup
	$(PY) benchmarks/compile_speed.py

# A fresh `specc validate` of a small spec, against the yaml + pydantic floor.
bench-cold: setup
	$(PY) benchmarks/cold_start.py

check: lint test

# The HuggingFace reference fixtures (tests/fixtures/hf/) come from transformers, which
# needs torch; OneFlow needs Python 3.10 and numpy<2. So they get their own Python 3.11
# environment, .venv-hf, which only this target uses: `make test` never needs it, the
# fixtures are committed. torch==2.13.0 in requirements/hf.txt is the CPU wheel on disk.
HF_VENV     := .venv-hf
HF_PY       := $(HF_VENV)/bin/python
HF_STAMP    := $(HF_VENV)/.hf-installed
PYTHON311   ?= $(shell command -v python3.11)

hf-venv: $(HF_STAMP)

$(HF_STAMP): requirements/hf.txt
	@test -n "$(PYTHON311)" || { echo "make: Python 3.11 is required (set PYTHON311=/path)" >&2; exit 1; }
	test -x $(HF_PY) || $(PYTHON311) -m venv $(HF_VENV)
	$(HF_PY) -m pip install --quiet -r requirements/hf.txt
	touch $(HF_STAMP)

# Rewrites tests/fixtures/hf/ from scratch (seeded: same versions, same bytes); offline.
# gpt2_train (torch training the gpt2 fixture by specc's recipe) needs gpt2 first.
hf-fixtures: hf-venv
	HF_HUB_OFFLINE=1 $(HF_PY) scripts/hf_fixtures.py
	HF_HUB_OFFLINE=1 $(HF_PY) scripts/hf_train_fixture.py

# Training-step time of generated packages against hand-written OneFlow twins, one
# launch per world size (2 and 4 processes); see benchmarks/RESULTS.md.
bench-step: setup
	$(PY) benchmarks/step_time.py

clean:
	rm -rf $(VENV) $(HF_VENV) build .pytest_cache
