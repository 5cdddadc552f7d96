# The two commands of the README:
#   make repro   set up (venv, pinned packages, the Debian .deb of the embedded data) and run `dvc repro`
#   make test    the same set-up, then the test suite
# Both are idempotent: a finished set-up is skipped in well under a second.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEB_DIR := .cache/debs
STAMPS_DEB := $(DEB_DIR)/.downloaded
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test test-fast lint bench ablation lock clean-data

setup: $(INSTALLED) $(STAMPS_DEB)

$(INSTALLED): requirements.txt requirements-nodeps.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The embedded dataset is built from Debian's tuxpaint-stamps-default (GPL-2). We only download
# the .deb (no install); `avs fetch` unpacks it with dpkg -x.
$(STAMPS_DEB):
	mkdir -p $(DEB_DIR)
	cd $(DEB_DIR) && (apt-get download tuxpaint-stamps-default 2>/dev/null \
	  || (apt-get update -qq && apt-get download tuxpaint-stamps-default))
	touch $@

repro: setup
	$(BIN)/dvc repro

test: lint
	$(BIN)/python -m pytest

test-fast: lint
	$(BIN)/python -m pytest -m "not slow"

# ruff (pyproject.toml [tool.ruff]): lint, then check the formatting; `ruff format .` fixes the latter.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/preprocess_throughput.py
	$(BIN)/python benchmarks/dpc_knn_cost.py
	$(BIN)/python benchmarks/model_cost.py --rounds 5
	$(BIN)/python benchmarks/memory_format.py
	$(BIN)/python benchmarks/cpu_kernels.py
	$(BIN)/python benchmarks/data_throughput.py
	$(BIN)/python benchmarks/cpu_share.py

# The seeded five-row ablation (experiments/ablation.py): 15 trainings, about 13 minutes each on 2
# cores; resumable, finished runs are kept in benchmarks/results/ablation/.
ablation: repro
	$(BIN)/python experiments/ablation.py

# Re-pin every package after changing requirements.txt.
lock: $(INSTALLED)
	(echo "# Exact versions of every package, from 'pip freeze' of a working .venv (Python 3.11, x86_64)."; \
	 echo "# Regenerate with: make lock"; $(BIN)/python -m pip freeze --exclude-editable) > constraints.txt
