# The course's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
TF ?= auto
DATA_DIR ?= data/generated/sample
SCENE_SIZE ?= 2048
SEED ?= 42
OUTPUTS ?= outputs
REGION ?=
OLDEST_VENV ?= .venv-oldest
export VENV TF
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help env data course region test test-oldest lint lab bench clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml tools/setup_env.sh
	@tools/setup_env.sh

env: $(VENV)/.installed  ## create .venv if missing and install the course into it

data: env  ## generate the offline sample region into data/generated/sample
	@$(PY) -m helpers.sample_data --out $(DATA_DIR) --size $(SCENE_SIZE) --seed $(SEED)

course: data  ## execute every notebook headless with its defaults (REGION=regions/x.yaml: your region)
	@$(if $(REGION),$(PY) -m helpers.regions $(REGION) &&) $(PY) tools/run_notebooks.py --out $(OUTPUTS) $(if $(REGION),-p REGION=$(abspath $(REGION)))

region: env  ## check a region config: make region REGION=regions/my_region.yaml
	@$(PY) -m helpers.regions $(or $(REGION),regions/sample.yaml)

lint: env  ## ruff on helpers, tests, tools, benchmarks and notebooks
	@$(PY) -m ruff check .

test: lint  ## the whole test suite: unit, notebooks with small parameters, structure
	@$(PY) -m pytest

$(OLDEST_VENV)/.installed: pyproject.toml tools/setup_env.sh tools/oldest_constraints.py
	@VENV=$(OLDEST_VENV) OLDEST=1 tools/setup_env.sh

# The real-browser test is left out: JupyterLab 4 renders only ipywidgets 8, and the oldest
# ipywidgets (7, Colab's) is for Colab's own front end.
test-oldest: $(OLDEST_VENV)/.installed  ## the suite on the oldest Python and package versions declared
	@$(OLDEST_VENV)/bin/python -m pytest --ignore=tests/test_browser_roi.py

lab: data  ## JupyterLab on the course
	@$(VENV)/bin/jupyter lab notebooks/

bench: data  ## benchmarks -> JSON under benchmarks/results/
	@$(PY) benchmarks/run_all.py --out benchmarks/results

clean:  ## remove outputs/ and the generated data (keeps the virtual environments)
	rm -rf $(OUTPUTS) data/generated
