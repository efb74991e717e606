# Two commands set up a fresh machine: `make demo` (the main job) and `make test`.
# Both create or reuse .venv and are quick when it is already set up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rtpose-installed
export RTPOSE_DATA ?= $(abspath ../shared/data)

.PHONY: demo test setup clean-venv

setup: $(STAMP)

# torch==2.13.0 first: on CPU machines that takes the local CPU build, so the
# `train` extra's torch range is already met and no CUDA packages are pulled.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rtpose run experiments/male_approach_replay.yaml --summary runs/demo_summary.json

test: $(STAMP)
	$(PY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
