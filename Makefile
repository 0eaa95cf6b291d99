# Two commands do all the set-up on a fresh machine:
#   make demo   - creates .venv if needed, installs ffmrec, runs `ffmrec run sasrec` (the default recipe, on beauty)
#   make test   - creates .venv if needed, installs ffmrec with its test extras, runs the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export FFMREC_DATA_DIR ?= $(abspath ../shared/datasets)
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1

.PHONY: demo test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: pip takes the local CPU build; a looser request would pull GBs of CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/ffmrec datasets --no-stats
	$(BIN)/ffmrec run sasrec --out runs/demo-sasrec-beauty

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=1200

clean:
	rm -rf $(VENV) runs
