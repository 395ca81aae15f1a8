# The two front-door commands (see README):
#   make demo   set up .venv and run the main job on the built-in faces
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-repair demo-federated test setup clean bench

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

# Federated training on real Flower processes with SecAgg+ (issue 11): 4 clients on the built-in faces, its own job.
FED_DATA := data/builtin-lfw32
FED_RUN := runs/demo-federated
demo-federated: $(STAMP)
	test -f $(FED_DATA)/manifest.json || $(BIN)/facegan data prepare builtin:lfw-subset $(FED_DATA) --size 32 --no-progress
	test -f $(FED_DATA)-clients/partitions.json || $(BIN)/facegan data partition $(FED_DATA) --clients 4 --by iid --out $(FED_DATA)-clients
	if [ -f $(FED_RUN)/federated.json ]; then $(BIN)/facegan federated train --out $(FED_RUN) --resume $(FED_ARGS); \
	else $(BIN)/facegan federated train --partitions $(FED_DATA)-clients --rounds 5 --local-kimg 1 --out $(FED_RUN) \
	  --secure-aggregation --fd-every 5 --fd-num 500 $(FED_ARGS); fi
	$(BIN)/facegan report $(FED_RUN)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs/demo runs/demo-federated
