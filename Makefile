# Setup and the two quick-start commands. Torch is pinned here (not in pyproject) to the
# CPU build this project's machines carry; override TORCH_SPEC elsewhere.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint install install-dev clean

demo: install
	$(BIN)/optcli run recipes/example.yaml

test: install-dev
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install-dev
	$(BIN)/ruff check optcli tests scripts bench
	$(BIN)/ruff format --check optcli tests scripts bench

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev,modelopt,openvino,ray,llm]"
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache
