# The README's commands. Each one runs the idempotent setup first.
WHEELHOUSE ?= $(wildcard ../shared/wheels)
export MMPATCH_WHEELHOUSE ?= $(WHEELHOUSE)

.PHONY: setup demo test
setup:
	bash tools/setup.sh
demo: setup
	.venv/bin/python tools/sweep.py
test: setup
	.venv/bin/python -m pytest -q tests
