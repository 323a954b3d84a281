# edge_vision, no-distro path: everything runs from .venv (ROS 2 from PyPI wheels).
# `make demo` and `make test` set everything up first (scripts/setup_venv.sh is idempotent).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIPELINE ?= config/demo.yaml
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k video_source -x"`.
PYTEST_ARGS ?=

.PHONY: setup demo test lint format bench clean

setup:
	@scripts/setup_venv.sh

demo: setup
	$(VENV)/bin/edge-vision models pull nanodet-m
	$(VENV)/bin/edge-vision launch $(PIPELINE)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# pytest exits 5 when it collected no test: that fails here like any other error.
test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/image_transport.py

clean:
	rm -rf build install log $(VENV)
