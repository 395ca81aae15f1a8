# The two front-door commands (see README):
#   make demo   set up .venv and run the main job on the built-in faces
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-repair test setup clean bench

setup: $(STAMP)

# Re-install only when the pins or the package metadata change (idempotent and fast the second time).
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m facegan.demo $(DEMO_ARGS)

# Repair, GAN inversion and attribute editing (issue 9): its own job, as it does not fit in demo's 12 minutes.
demo-repair: $(STAMP)
	$(BIN)/python -m facegan.demo_repair $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs/demo
