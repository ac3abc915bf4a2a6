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

.PHONY: all test test-calibration venv lint format lock smoke clean-venv

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
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; \
	exit $$status

# The calibration search against the FIFO test server on 3 seeds (make test runs seed 1; this
# takes about 12 minutes): every capacity within 0.90-1.05 x the M/D/1 truth.
test-calibration: $(STAMP)
	SERVEBENCH_CALIBRATION_SEEDS=3 $(BIN)/python -m pytest -s \
		tests/test_calibration.py -k known_saturation $(PYTEST_ARGS)

# The tiny end-to-end workflow (make test runs the same: tests/test_workflow_reruns.py).
smoke: $(STAMP)
	$(BIN)/snakemake --cores 2 all --configfile .test/config.yaml $(SNAKEMAKE_ARGS)

lint: test

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile workflow/rules

# Re-pin the whole environment from the current venv. Local version labels (torch's +cpu) go:
# a plain package index has only the public version, and pip still prefers a local CPU build.
lock: $(STAMP)
	{ sed -n '1,3p' envs/requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | grep -vi '^servebench' | sed -E 's/^([^=]+==[^+]+)\+[A-Za-z0-9.]+$$/\1/'; } > envs/requirements.lock.new
	mv envs/requirements.lock.new envs/requirements.lock

clean-venv:
	rm -rf $(VENV)

# Container images of the Bentos, built offline (docs/containers.md): starts dockerd when no
# daemon answers (installs Debian's docker.io; root), then the Bentos and each variant's image
# (the workflow's image rule: a Debian base image, the wheelhouse, `docker build --network
# none`), tagged <repository>/<Bento name>:<Bento version> as the K3s overlays expect.
.PHONY: images images-tiny smoke-docker docker-study container-overhead
images: $(STAMP)
	containers/dockerd.sh
	$(BIN)/snakemake --cores $(CORES) images $(SNAKEMAKE_ARGS)

images-tiny: $(STAMP)
	containers/dockerd.sh
	$(BIN)/snakemake --cores 2 images --configfile .test/config.yaml $(SNAKEMAKE_ARGS)

# The tiny study on deploy.target docker (after `make smoke` it reuses that study's model,
# tuning and Bentos; alone it makes them): dockerd, the base image and both variants' images, then every calibration, run and
# resilience run in a container with the K3s pod's settings; fails unless every run is valid
# (results/test/status.json). make test runs the same (tests/test_docker_target.py).
ALL_RUNS_VALID = $(BIN)/python -c 'import json, sys; s = json.load(open(sys.argv[1])); 	print(sys.argv[1], json.dumps(s)); sys.exit(not (s["ok"] and s["valid_runs"] == s["runs"] 	and s["valid_resilience_runs"] == s["resilience_runs"]))'
smoke-docker: $(STAMP)
	containers/dockerd.sh
	$(BIN)/snakemake --cores 2 all --configfile .test/config.yaml .test/docker.yaml $(SNAKEMAKE_ARGS)
	$(ALL_RUNS_VALID) results/test/status.json

# The default study on deploy.target docker (config/docker.yaml: results/*/docker/).
docker-study: $(STAMP)
	containers/dockerd.sh
	$(BIN)/snakemake --cores $(CORES) all --configfile config/docker.yaml $(SNAKEMAKE_ARGS)

# The container's overhead: each variant calibrated locally, then in its container, back to
# back (<results>/benchmarks/container_overhead.csv; the default profile holds the machine
# 15-30 minutes). Tiny: make container-overhead OVERHEAD_CONFIG=.test/config.yaml
OVERHEAD_CONFIG ?= config/config.yaml
container-overhead: $(STAMP)
	containers/dockerd.sh
	$(BIN)/snakemake --cores $(CORES) images --configfile $(OVERHEAD_CONFIG) $(SNAKEMAKE_ARGS)
	$(BIN)/servebench bench container-overhead --configfile $(OVERHEAD_CONFIG)
