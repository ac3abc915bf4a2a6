# servebench: two commands from a fresh clone.
#   make all    create/refresh .venv if needed, then run the whole study (snakemake --cores 4 all)
#   make test   the test suite, the workflow lint and the code-style checks, in the same venv
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp is newer than the lock and pyproject.toml when the venv is up to date, so a
# second `make all` installs nothing.
STAMP := $(VENV)/.servebench-installed
CORES ?= 4
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=

# Tools of the venv (servebench, snakemake, locust) come first on PATH for every recipe.
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE ?= 1
export BENTOML_DO_NOT_TRACK := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all test venv lint format lock smoke clean-venv

all: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) all $(SNAKEMAKE_ARGS)

venv: $(STAMP)

$(STAMP): envs/requirements.lock pyproject.toml
	@if ! $(BIN)/python -c 'import sys' >/dev/null 2>&1; then \
		echo "creating $(VENV) with $(PYTHON)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet -r envs/requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1
	$(BIN)/snakemake --lint --cores 1 --configfile .test/config.yaml
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; \
	exit $$status

# The tiny end-to-end workflow (what CI runs after `make test`).
smoke: $(STAMP)
	$(BIN)/snakemake --cores 2 all --configfile .test/config.yaml $(SNAKEMAKE_ARGS)

lint: test

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile workflow/rules

# Re-pin the whole environment from the current venv.
lock: $(STAMP)
	{ sed -n '1,3p' envs/requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | grep -vi '^servebench'; } > envs/requirements.lock.new
	mv envs/requirements.lock.new envs/requirements.lock

clean-venv:
	rm -rf $(VENV)

# Container images of the Bentos, built offline (docs/containers.md): starts dockerd when no
# daemon answers (installs Debian's docker.io; root), then the Debian base image, the wheelhouse
# and each Bento's image, tagged <repository>/<Bento name>:<Bento version> as K3s expects.
.PHONY: images images-tiny
images: $(STAMP)
	containers/dockerd.sh
	$(BIN)/snakemake --cores $(CORES) bentos $(SNAKEMAKE_ARGS)
	$(BIN)/python -m servebench.images all results/bentos/*.json --results-dir results

images-tiny: $(STAMP)
	containers/dockerd.sh
	$(BIN)/snakemake --cores 2 bentos --configfile .test/config.yaml $(SNAKEMAKE_ARGS)
	$(BIN)/python -m servebench.images all results/test/bentos/*.json --results-dir results/test
