# mnistlab's two set-up commands (README): each creates .venv on first use.
#   make demo   train the default model on the bundled MNIST, evaluate it, write the pictures
#   make test   lint (ruff, and import-linter for the layers), build the docs site strictly and run the test suite
#               (what CI runs)
#   make test-fast  the tests not marked slow, for the inner loop while you change the code (about a minute)
#   make docs   build the docs site into site/
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast docs bench pretrained
install: $(VENV)/.installed

# torch is pinned by constraints.txt (the CPU wheel); the package itself asks for torch>=2.2.
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "installing mnistlab and torch into $(VENV) (about a minute, once)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on -c constraints.txt -e '.[test,serve,docs]'
	touch $@

# `mnistlab train` also writes runs/demo/curves.png and runs/demo/report.html (every figure).
demo: install
	$(BIN)/mnistlab train --out runs/demo
	$(BIN)/mnistlab evaluate runs/demo

test: install
	$(BIN)/ruff check src tests benchmarks examples scripts
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The slow tests (pyproject.toml's `slow` marker) train on the real MNIST, drive Chromium, start servers or run the
# docs pages; every module still has fast tests, so this loop catches most mistakes in seconds. CI runs `make test`.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# mkdocs.yml: docs/ → site/; --strict turns a broken link, a missing page or a page left out of the nav into a failure.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/robustness.py

# Re-train the pretrained weights in src/mnistlab/pretrained/ with `mnistlab train` and rewrite their pins
# (docs/pretrained.md; ~11 minutes on 2 quiet cores: the cnn alone 9.6).
pretrained: install
	$(BIN)/python scripts/make_pretrained.py
