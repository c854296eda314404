# make demo  — install (first use), then run the whole DAG on the Fashion-MNIST demo through DVC,
#              write the browsable report reports/report.html and its screenshot reports/report.png,
#              and refresh the committed snapshot docs/demo/ from reports/
# make study — install (first use), then the mechanism study (config/study.yaml over params.yaml):
#              tables and figure in reports/study/, its report page reports/study/report.html
# make test  — install (first use), then run the test suite (all of it; the 15 slowest are listed)
# make test-fast — the edit loop: no DAG runs, no Snakemake or DVC subprocesses (markers slow, workflow)
# make verify — every rendered table cell's result files still there and unchanged since rendering
# make ui    — MLflow UI on the runs, bound to 127.0.0.1
PY      := python3.11
VENV    := .venv
BIN     := $(VENV)/bin
CORES   ?= $(shell nproc)
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

# Every run here is local. Snakemake's Slurm plugin asks `scontrol show config` at each start; where
# Slurm's tools are installed but no cluster is configured (.ci/run installs them for the Slurm test),
# scontrol retries ~9 s first: twice in a demo (dvc repro's Snakemake, the report's). This
# configuration names no reachable controller, so it answers at once. A SLURM_CONF of your own is kept.
SLURM_CONF ?= $(abspath profiles/slurm/no-cluster.conf)
export SLURM_CONF

.PHONY: demo study test test-fast ui install lint verify clean-results

$(BIN)/activate:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	@echo "installing divdistill into $(VENV): torch (CPU build), diffusers, snakemake, dvc, mlflow, ... (about a minute)"

# torch's wheel as pip chooses it (pinned: pip takes the CPU build where the machine's pip configuration
# offers one; an unpinned resolve would pull a multi-GB CUDA build), then uv installs it with the ~190
# other packages (it satisfies torch==2.13.0): 29-33 s on 2 cores, where pip installing torch and uv
# the rest took 35-52 s (measured 2026-12-04). --compile-bytecode: every job imports them, so compile
# once here, not in every process.
UV := uv==0.13.9
WHEELS := $(VENV)/wheels
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --progress-bar on $(UV)
	rm -rf $(WHEELS) && $(BIN)/pip download --no-deps --progress-bar on -d $(WHEELS) torch==2.13.0
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode $(WHEELS)/torch-*.whl -e '.[dev]'
	rm -rf $(WHEELS)
	touch $@

install: $(VENV)/.installed

# Debian's package holds the demo's data. Where this user may install packages (root, or sudo without a
# password), make demo installs it and says so; elsewhere it stops with the command to run.
$(FASHION):
	@if [ "$$(id -u)" = 0 ]; then as=""; elif sudo -n true 2>/dev/null; then as="sudo -n"; else as=no; fi; \
	if [ "$$as" = no ]; then \
	  echo "Fashion-MNIST is missing. Install it with:"; \
	  echo "  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"; exit 1; fi; \
	echo "Fashion-MNIST is missing: installing Debian's dataset-fashion-mnist ($${as:-as root}: apt-get update, apt-get install)"; \
	$$as apt-get update -qq && $$as env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
	  || { echo "installing dataset-fashion-mnist failed: see apt-get's message above"; exit 1; }; \
	test -f "$@" || { echo "dataset-fashion-mnist is installed but $@ is missing"; exit 1; }

# DVC needs a git repository; `dvc init` once, then `dvc repro` runs the Snakemake DAG. The report
# (re)builds from the finished DAG; the screenshot needs chromium and is skipped with a note without.
demo: install $(FASHION)
	@test -d .git || git init --quiet
	@test -d .dvc || $(BIN)/dvc init --quiet
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --report reports/report.html
	workflow/scripts/screenshot.sh reports/report.html reports/report.png
	workflow/scripts/snapshot.sh reports docs/demo
	@echo "done: reports/ (tables, figures, report.html), snapshot docs/demo/, runs in mlflow.db (make ui)."
	@echo "DVC staged dvc.lock (core.autostage); no DVC remote is configured, so its dvc push hint does not apply."

STUDY := --configfile config/study.yaml  # overlaid on params.yaml

study: install $(FASHION)
	$(BIN)/divdistill check --config params.yaml config/study.yaml  # names a broken line of the overlay: Snakemake's own message does not
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) $(STUDY) -- study
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake $(STUDY) --report reports/study/report.html -- study

# Three workers (pytest-xdist) on 2 cores: the Slurm test's worker mostly waits while its jobs run
# under slurmd (measured: pytest 11 min 20 s with two workers, 9 min 39 s with three). Whole files
# each (--dist loadfile): the tests sharing one DAG run (a module fixture) are one file, and the
# Slurm tests' cluster exists once. Files go out in collection order, the longest first
# (tests/conftest.py LONGEST_FIRST). (xdist's loadgroup would be finer, but with pytest 9.2 its group
# suffix no longer reaches the node ids: it splits the groups.)
TEST_WORKERS ?= 3
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: install
	PATH=$(abspath $(BIN)):$$PATH $(PYTEST) --durations=15

test-fast: install
	$(BIN)/lint-imports  # the layers of pyproject.toml
	PATH=$(abspath $(BIN)):$$PATH $(PYTEST) -m "not slow and not workflow" --durations=10

# The rendered tables against the result files they were made from (hashes recorded at render time):
# names each cell whose evidence is missing or changed, and the command that rebuilds it.
verify: install
	$(BIN)/divdistill verify

lint: install
	$(BIN)/lint-imports  # the layers of pyproject.toml ([tool.importlinter])
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --lint

# 127.0.0.1 only: the UI has no authentication, so it is not offered to the network
UI_PORT ?= 5000
ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(UI_PORT)
