# Set-up from nothing but python3 (3.11+): every target creates .venv and installs the
# project first, so `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

# Runs launched by `make demo` / `make dev` are recorded here, so the UI shows them.
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: setup demo test dev lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup        ## run the main job end to end on the embedded defaults
	$(VENV)/bin/vpp demo

test: setup        ## run the whole test suite
	$(PY) -m pytest -q

dev: setup         ## sandbox, receiver, site controller + dagster dev (UI :3000); Ctrl-C stops all
	$(VENV)/bin/vpp dev

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf data .tmp_dagster_home_* dagster_home/storage dagster_home/history dagster_home/schedules dagster_home/logs
