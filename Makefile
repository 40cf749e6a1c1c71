# Two commands do all set-up on a fresh machine:
#   make demo   -> installs everything, then runs the main job end to end
#   make test   -> installs everything, then runs the test suite (2 parallel workers; TEST_WORKERS=N to change)
#   make smoke  -> every shipped experiment config through train.py --smoke (pass/fail table)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo fashion-mnist test smoke lint clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	# torch first: the pinned CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

FMNIST := /usr/share/datasets/fashion-mnist

# Fashion-MNIST from Debian's package when we can install it; otherwise the demo downloads it or says how to get it.
fashion-mnist:
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) \
		|| echo "could not install dataset-fashion-mnist; the demo will try the official download"; fi

# Shipped teacher -> DMD2 1-step student -> FID, timings, sample grid and report under $$FASTGEN_OUTPUT_ROOT.
demo: setup fashion-mnist
	$(BIN)/python -m fastgen.demo

# Two pytest-xdist workers, not `-n auto`: CI has 2 cores, and `auto` counts the host's cores (not a container's CPU
# quota), so on a big shared host it would start dozens of workers that each import torch and spawn gloo ranks.
# worksteal: an idle worker takes half of the other's queue, so both finish together despite 1-2 min tests.
TEST_WORKERS ?= 2
test: setup
	ulimit -n 4096; $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal tests

# every shipped experiment config for 2 tiny iterations on CPU (train.py --smoke); prints a pass/fail table
smoke: setup
	$(BIN)/python scripts/smoke_all.py

lint: setup
	$(BIN)/ruff check fastgen tests train.py scripts benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
