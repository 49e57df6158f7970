# Two commands: `make run` (set up + main job + serve) and `make test` (set up + whole suite
# with coverage, then the per-package floors of scripts/check_coverage.py).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test setup lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and exactly pinned: pip takes these wheels from the local disk when present
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev,diffusion,ray]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/dataengine up $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -n auto --dist loadscope --durations=30 --cov --cov-report= $(PYTEST_ARGS)
	$(BIN)/python scripts/check_coverage.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var artifacts .pytest_cache .ruff_cache .coverage .coverage.*
