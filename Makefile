# The two commands of the README: `make demo` and `make test`. Both create or refresh
# the virtual environment in .venv from this project's own files first.
PYTHON ?= python3
VENV ?= .venv
# torch as it comes on this project's machines; override on yours, e.g.
#   make test TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
BIN := $(VENV)/bin
DEMO_DIR ?= demo
LINTED := $(wildcard src tests tools benchmarks plugins)

.PHONY: setup demo test lint clean screenshots

$(BIN)/.creaturekit-installed: pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]" $(foreach p,$(PLUGINS),-e $(p))
	touch $@

setup: $(BIN)/.creaturekit-installed

demo: setup
	$(BIN)/creaturekit demo $(DEMO_DIR)

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# The studio's screenshots in docs/images/, taken by its browser test on (a copy of) the
# demo project (needs chromium; runs the demo first if it is not there).
screenshots: demo
	CREATUREKIT_SCREENSHOTS=docs/images CREATUREKIT_STUDIO_PROJECT=$(DEMO_DIR) \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_studio_browser.py

clean:
	rm -rf $(VENV) $(DEMO_DIR)
