# farfield: the README's commands. Every target works on a clean clone.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
WORKSPACE ?= workspace
PYTEST_ARGS ?=
BIN := $(VENV)/bin

.PHONY: quickstart test test-slow bench venv dev-venv clean ui

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	# torch first, pinned: an unpinned torch pulls several GB of CUDA wheels.
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e .

dev-venv: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"

## make quickstart: the main job on the embedded default (local Ray, local MLflow, bundled MOFs), then its report
quickstart: venv
	$(BIN)/farfield quickstart --workspace $(WORKSPACE)
	$(BIN)/farfield report --experiment quickstart-sweep --sweep latest --workspace $(WORKSPACE) --out $(WORKSPACE)/report --md-probe best --md-steps 100

## make test: the default suite (slow tests excluded)
test: dev-venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## make test-slow: only the tests marked slow
test-slow: dev-venv
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

## make bench: benchmarks → benchmarks/results/*.json
bench: venv
	$(BIN)/python benchmarks/train_step.py --out benchmarks/results/train_step.json
	$(BIN)/python benchmarks/splits.py --out benchmarks/results/splits.json
	$(BIN)/python benchmarks/heads.py --threads 1 --out benchmarks/results/heads.json
	$(BIN)/python benchmarks/orchestration.py --out benchmarks/results/orchestration.json
	$(BIN)/python benchmarks/backbones.py --out benchmarks/results/backbones.json
	$(BIN)/python benchmarks/mace_race.py --out benchmarks/results/mace_race.json
	$(BIN)/python benchmarks/nequip_baseline.py --out benchmarks/results/nequip_baseline.json
	$(BIN)/python benchmarks/data_build.py --out benchmarks/results/data_build.json

ui: venv
	$(BIN)/farfield ui --workspace $(WORKSPACE)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
