import copy

import pytest
import torch

from lorasoup_core.adapters import AdapterCard, read_lora_factors
from lorasoup_core.compose import (
    COMPOSERS,
    Candidate,
    ComposeConfig,
    CompositionError,
    Stack,
    compose,
    export_peft,
    few_shot_loss,
)
from lorasoup_core.plugins import UnknownPluginError

TARGET = "count_items"  # its adapter is hidden among the 10 others of the tiny pool


def _cands(tiny_pool):
    return [Candidate(s, p, AdapterCard.read(p), version=f"v-{s}") for s, p in tiny_pool.items()]


@pytest.fixture(scope="module")
def results(tiny_llama, tiny_pool, target):
    task, shots = target
    cfg = ComposeConfig(budget=40, cat_steps=40)
    return {m: compose(m, tiny_llama, _cands(tiny_pool), task, shots, cfg) for m in ("lorahub", "cat", "uniform")}


def test_target_adapter_hidden_among_ten_is_found(tiny_llama, tiny_pool, target, results):
    task, shots = target
    assert len(tiny_pool) == 11
    base = few_shot_loss(tiny_llama, None, task, shots)
    uniform = results["uniform"].extra["few_shot_loss"]
    for m in ("lorahub", "cat"):
        assert results[m].extra["few_shot_loss"] < min(uniform, base), (m, results[m].extra, uniform, base)
    w = results["lorahub"].weights
    assert results["lorahub"].names[max(range(len(w)), key=lambda i: w[i])] == TARGET
    assert len(results["lorahub"].trace) == 40 and len(results["cat"].trace) == 40
    assert set(results["cat"].weights) == set(read_lora_factors(tiny_pool[TARGET])[0])  # one weight set per module


def test_lorahub_formula_matches_direct_computation(tiny_llama, tiny_pool):
    stack = Stack(tiny_llama, _cands(tiny_pool))
    w = torch.linspace(-1, 1, len(stack))
    m = stack.modules[0]
    a, b = stack.lorahub(w)[m]
    fac = [read_lora_factors(p) for p in tiny_pool.values()]
    sum_a = sum(wi * f[0][m][0] for wi, f in zip(w, fac, strict=True))
    sum_b = sum(wi * f[0][m][1] * f[1][m] for wi, f in zip(w, fac, strict=True))
    torch.testing.assert_close(b @ a, sum_b @ sum_a, rtol=1e-5, atol=1e-6)


def test_exact_matches_peft_cat_combination(tiny_llama, tiny_pool):
    from peft import PeftModel

    names = list(tiny_pool)[:3]
    w = [0.7, -0.4, 1.2]
    model = PeftModel.from_pretrained(copy.deepcopy(tiny_llama.model), str(tiny_pool[names[0]]), adapter_name=names[0])
    for n in names[1:]:
        model.load_adapter(str(tiny_pool[n]), adapter_name=n)
    model.add_weighted_adapter(names, w, "combo", combination_type="cat")
    stack = Stack(tiny_llama, [Candidate(n, tiny_pool[n]) for n in names])
    ours = stack.exact(torch.tensor(w))
    named = dict(model.named_modules())
    for m, (a, b) in ours.items():
        layer = named[f"base_model.model.{m}"]
        torch.testing.assert_close(b @ a, layer.get_delta_weight("combo"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["lorahub", "cat", "uniform", "ties", "svd", "centroid"])
def test_export_reloads_through_plain_peft(tiny_llama, tiny_pool, target, results, method, tmp_path):
    from peft import PeftModel

    from lorasoup_core.compose import applied

    task, shots = target
    comp = results.get(method) or compose(method, tiny_llama, _cands(tiny_pool), task, shots, ComposeConfig())
    out = export_peft(comp, tmp_path / method)
    ids = torch.randint(0, 250, (2, 16))
    with torch.no_grad(), applied(tiny_llama, comp.factors):
        ours = tiny_llama.model(ids).logits
    peft = PeftModel.from_pretrained(copy.deepcopy(tiny_llama.model), str(out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(peft(ids).logits, ours, rtol=1e-4, atol=1e-4)
    card = AdapterCard.read(out)
    assert card.origin == "composed" and card.lineage["method"] == method and card.lineage["versions"][0] == "v-add"


def test_bad_inputs(tiny_llama, tiny_t5, tiny_pool, target, tmp_path):
    task, shots = target
    with pytest.raises(CompositionError, match="empty"):
        compose("lorahub", tiny_llama, [], task, shots)
    with pytest.raises(UnknownPluginError, match="unknown composer 'nope'"):
        compose("nope", tiny_llama, _cands(tiny_pool), task, shots)
    foreign = AdapterCard.read(tiny_pool["add"]).model_copy(update={"base_fingerprint": "x", "base_model": "other"})
    with pytest.raises(CompositionError, match="adapter 'alien' was trained on 'other'"):
        compose("uniform", tiny_llama, _cands(tiny_pool) + [Candidate("alien", tiny_pool["add"], foreign)], task, shots)
    # a rank-4 adapter among rank-8 ones: lorahub's formula cannot sum them
    from lorasoup_core.adapters import TrainingConfig, train_lora

    train_lora(tiny_llama, task, TrainingConfig(rank=4, steps=2), tmp_path / "r4", progress=False, embed_examples=0)
    mixed = _cands(tiny_pool)[:2] + [Candidate("r4", tmp_path / "r4", AdapterCard.read(tmp_path / "r4"))]
    with pytest.raises(CompositionError, match="needs equal ranks"):
        compose("lorahub", tiny_llama, mixed, task, shots, ComposeConfig(budget=2, formula="lorahub"))
    assert compose("lorahub", tiny_llama, mixed, task, shots, ComposeConfig(budget=2)).factors  # exact: any ranks
    # a NaN in a candidate's weights makes the objective NaN: a clear error, not a silent result
    import shutil

    from safetensors.torch import load_file, save_file
    shutil.copytree(tiny_pool["add"], tmp_path / "nan")
    tensors = load_file(tmp_path / "nan" / "adapter_model.safetensors")
    key = next(k for k in tensors if "lora_B" in k)
    tensors[key][0, 0] = float("nan")
    save_file(tensors, tmp_path / "nan" / "adapter_model.safetensors")
    with pytest.raises(CompositionError, match="objective is nan"):
        compose("lorahub", tiny_llama, [Candidate("nan", tmp_path / "nan", AdapterCard.read(tmp_path / "nan"))], task,
                shots, ComposeConfig(budget=3))
    assert {"lorahub", "cat", "uniform", "linear", "ties", "dare_linear", "dare_ties", "svd", "centroid"} <= set(
        COMPOSERS.names())
