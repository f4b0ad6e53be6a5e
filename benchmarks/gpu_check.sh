#!/usr/bin/env bash
# GPU numbers from one prepared command (benchmarks/gpu_check.py): JSON lines on stdout, logs on stderr.
#
#   benchmarks/gpu_wheels.sh                       # here, once: .whl/ = missing wheels + SmolLM2's tokenizer
#   benchmarks/gpu_check.sh --out $OUT --deadline-s 420 2>$OUT/stderr.log   # there: carry [".whl"], timeout_s 540
#   benchmarks/gpu_check.sh --quick --device cpu   # anywhere: the same code at toy sizes
#
# The GPU image has torch, transformers and peft but neither nevergrad nor pydantic, and no registry: when
# they do not import, the wheels carried in .whl/ (or $GPU_CHECK_WHEELS) are installed to /tmp/site
# (nothing else is touched). PYTHON picks the interpreter (default: .venv/bin/python, else python3).
set -eo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }

WHL=${GPU_CHECK_WHEELS:-.whl}
if ! "$PY" -c "import nevergrad, pydantic" 2>/dev/null; then
  ls "$WHL"/*.whl >/dev/null 2>&1 || { echo "nevergrad/pydantic missing and no $WHL/: run benchmarks/gpu_wheels.sh here" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # lorasoup_core from this checkout (not installed there)
# No network there: never wait on a hub; unbuffered so a run cut short still shows what it printed.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false \
  PYTHONUNBUFFERED=1 TQDM_DISABLE=1
exec "$PY" benchmarks/gpu_check.py "$@"
