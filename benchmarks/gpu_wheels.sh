#!/usr/bin/env bash
# Fill .whl/ (git-ignored through .git/info/exclude) with what benchmarks/gpu_check.sh needs on a GPU machine
# that has no package registry: the wheels its image lacks (nevergrad and its search backends, pydantic),
# pinned to constraints.txt, for CPython 3.12 on x86-64, and SmolLM2's tokenizer files (vocab 49152, 3.5 MB)
# for the ~1B eval model when this checkout has the converted SmolLM2 in .lorasoup/models.
#
#     benchmarks/gpu_wheels.sh            # then: device run with carry [".whl"] (see gpu_check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

# The image has torch, transformers, peft, numpy, scipy, scikit-learn, pandas, pyyaml, tqdm, setuptools
# (KINDS.md, "Python packages already there"); nevergrad imports the next four at import time, pydantic the
# rest. typing_extensions: pydantic 2.14 needs >= 4.16, newer than the image may hold.
PACKAGES=(nevergrad cma bayesian-optimization directsearch pydantic pydantic_core annotated-types
          typing-inspection typing_extensions)

mkdir -p .git/info
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
pins=()
for p in "${PACKAGES[@]}"; do
  pin=$(grep -iE "^${p//[-_]/[-_]}==" constraints.txt) || { echo "no pin for $p in constraints.txt" >&2; exit 1; }
  pins+=("$pin")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"

tok=$(ls -d .lorasoup/models/SmolLM2-135M-Instruct*/ 2>/dev/null | head -1 || true)
if [ -n "$tok" ] && [ -f "$tok/tokenizer.json" ]; then
  mkdir -p .whl/tokenizer
  cp "$tok"/tokenizer.json "$tok"/tokenizer_config.json .whl/tokenizer/
else
  echo "no converted SmolLM2 under .lorasoup/models: the eval model will use the byte tokenizer" >&2
fi
ls -l .whl .whl/tokenizer 2>/dev/null | grep -v '^total'
du -sh .whl
