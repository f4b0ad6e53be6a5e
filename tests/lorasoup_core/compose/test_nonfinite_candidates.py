"""A candidate with NaN/inf factors is named by every composer, before any work: SVD-based merges raised
torch's LinAlgError and cat_fewshot a NaN objective, neither naming the adapter. Import checks factors, so
the broken candidate directory is written by hand here (as a corrupted local copy would be)."""

from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file, save_file

from lorasoup_core.compose import Candidate, CompositionError, compose

METHODS = [("cat", {}), ("cat_fewshot", {"steps": 2}), ("svd", {}), ("ties_svd", {}), ("dare_linear_svd", {}),
           ("dare_ties_svd", {}), ("ties", {}), ("dare_linear", {})]


@pytest.fixture(scope="module", params=[float("nan"), float("inf")], ids=["nan", "inf"])
def candidates(request, llama_random, tmp_path_factory):
    root = tmp_path_factory.mktemp("nonfinite")
    paths = {name: root / name for name in ("good", "broken", "fine")}
    for path, src in zip(paths.values(), list(llama_random.values())[:3], strict=True):
        shutil.copytree(src, path)
    weights = paths["broken"] / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    key = sorted(k for k in tensors if "lora_B" in k)[-1]  # the last module: found by a scan, not by chance
    tensors[key][1, 2] = request.param
    save_file(tensors, str(weights))
    return [Candidate(n, p) for n, p in paths.items()]


@pytest.mark.parametrize(("method", "settings"), METHODS, ids=[m for m, _ in METHODS])
def test_the_broken_candidate_is_named(tiny_llama, candidates, target, method, settings):
    task, shots = target
    with pytest.raises(CompositionError) as err:  # refused before CAT would read its (absent) mix data
        compose(method, tiny_llama, candidates, task, shots, settings)
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"{method} for target 'count_items': candidate(s) with NaN/inf weights: broken; retrain them "
                       "or leave them out of the pool")


def test_finite_candidates_still_compose(tiny_llama, llama_random, target):
    task, shots = target
    cands = [Candidate(n, p) for n, p in list(llama_random.items())[:3]]
    for method, settings in METHODS[1:]:  # (cat needs its candidates' training data: tests/.../test_cat.py)
        assert compose(method, tiny_llama, cands, task, shots, settings).factors
