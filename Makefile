# Two commands do all the set-up on a fresh machine:
#   make demo   - creates .venv if needed, installs ffmrec, trains FedSASRec on ml-100k (a few minutes), then prints
#                 explained recommendations for one user; `make demo-full` is the full-length SASRec run on beauty
#   make test   - creates .venv if needed, installs ffmrec with its test extras, runs the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export FFMREC_DATA_DIR ?= $(abspath ../shared/datasets)
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1

.PHONY: demo demo-full test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: pip takes the local CPU build; a looser request would pull GBs of CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# The whole path in a few minutes on 2 cores: federated training (FedSASRec, personal user vectors, items represented by
# their ID and their title+genres embedded by the all-MiniLM-L6-v2 foundation model) on MovieLens-100K, evaluation,
# report, then one user's recommendations with their reasons.
DEMO_RUN := runs/demo-fedsasrec-ml-100k
demo: $(BIN)/.installed
	$(BIN)/ffmrec datasets --no-stats
	$(BIN)/ffmrec run fedsasrec --dataset ml-100k --set federated.rounds=300 federated.eval_every=100 model.max_len=50 \
		model.item_repr=hybrid threads=1 --out $(DEMO_RUN)
	$(BIN)/ffmrec recommend $(DEMO_RUN) --user 1 --k 5 --explain

# The full-length job (30-45 minutes on 2 cores): centralized SASRec on Amazon Beauty, to convergence.
demo-full: $(BIN)/.installed
	$(BIN)/ffmrec run sasrec --out runs/demo-sasrec-beauty
	$(BIN)/ffmrec recommend runs/demo-sasrec-beauty --user 1 --k 5 --explain

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=1200

clean:
	rm -rf $(VENV) runs
