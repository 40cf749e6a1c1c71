# Two commands do all set-up on a fresh machine:
#   make demo   -> installs everything, then runs the main job end to end
#   make test   -> installs everything, then runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	# torch first: the pinned CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python train.py --config=fastgen/configs/experiments/EDM/config_dmd2_test.py --dryrun

test: setup
	ulimit -n 4096; $(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check fastgen tests train.py scripts benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
