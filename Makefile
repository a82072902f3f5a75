# farfield: the README's commands. Every target works on a clean clone.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
WORKSPACE ?= workspace
PYTEST_ARGS ?=
BIN := $(VENV)/bin

# System packages the tests need: headless Chromium for the browser tests (the HTML report and
# the MLflow UI must render in a real browser). Installed by `make test` when missing.
SYSTEM_PACKAGES ?= chromium chromium-driver

.PHONY: quickstart test test-slow bench venv dev-venv system-packages clean ui

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

## make test: the default suite (slow tests excluded), after installing the system packages it needs
test: dev-venv system-packages
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## make test-slow: only the tests marked slow
test-slow: dev-venv system-packages
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

## make system-packages: headless Chromium via apt-get (as root, or with sudo) unless already there;
## otherwise stop with the one command to run
system-packages:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	install="apt-get update && apt-get install -y $(SYSTEM_PACKAGES)"; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make test: headless Chromium is missing and this is not a Debian/Ubuntu system: install Chromium so that 'chromium' is on PATH, then run make test again" >&2; exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then as_root=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root="sudo -n"; \
	else echo "make test: headless Chromium is missing; run: sudo sh -c '$$install'  (then make test again)" >&2; exit 1; fi; \
	echo "make test: installing $(SYSTEM_PACKAGES) (headless Chromium for the browser tests)"; \
	$$as_root apt-get update -qq && $$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null \
	  || { echo "make test: installing $(SYSTEM_PACKAGES) failed; run: sudo sh -c '$$install'" >&2; exit 1; }

## make bench: benchmarks → benchmarks/results/*.json
bench: venv
	$(BIN)/python benchmarks/train_step.py --out benchmarks/results/train_step.json
	$(BIN)/python benchmarks/trial_step.py configs/study-paper.yaml --workspace $(WORKSPACE) --compare-malloc --repeats 3 --out benchmarks/results/trial_step_malloc.json
	$(BIN)/python benchmarks/trial_step.py configs/study-paper.yaml --workspace $(WORKSPACE) --steps 30 --warmup 3 --repeats 2 \
	  $(foreach v,short-range les celli-q celli efa short-range-4L,--variant $(v)) --out benchmarks/results/trial_step_variants.json
	$(BIN)/python benchmarks/trial_step.py configs/study-paper.yaml --workspace $(WORKSPACE) --steps 20 --warmup 3 --repeats 2 --variant celli-q \
	  --ablation no-feedback:model.heads.celli.feedback=false --ablation hidden-32:model.heads.celli.hidden=32 --out benchmarks/results/trial_step_celli.json
	$(BIN)/python benchmarks/splits.py --out benchmarks/results/splits.json
	$(BIN)/python benchmarks/heads.py --threads 1 --out benchmarks/results/heads.json
	$(BIN)/python benchmarks/orchestration.py --out benchmarks/results/orchestration.json
	$(BIN)/python benchmarks/backbones.py --out benchmarks/results/backbones.json
	$(BIN)/python benchmarks/mace_race.py --out benchmarks/results/mace_race.json
	$(BIN)/python benchmarks/nequip_baseline.py --out benchmarks/results/nequip_baseline.json
	$(BIN)/python benchmarks/data_build.py --out benchmarks/results/data_build.json
	$(BIN)/python benchmarks/import_aselmdb.py --out benchmarks/results/import_aselmdb.json

ui: venv
	$(BIN)/farfield ui --workspace $(WORKSPACE)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
