"""The merges against PEFT's own `add_weighted_adapter` combinations (the independent reference)."""

import copy
import json
import shutil

import pytest
import torch

from lorasoup_core.compose import Candidate, CompositionError, compose

SEED = 3
ONES = [1.0, 1.0, 1.0]
MIXED = [0.7, -0.4, 1.2]


@pytest.fixture(scope="module")
def trio(tiny_pool, tmp_path_factory):
    """Three trained rank-8 adapters with scalings alpha/r of 2, 1 and 3: PEFT splits w_i s_i over A and B
    and elects TIES signs on the raw factors, which equal scalings could not tell apart."""
    out = tmp_path_factory.mktemp("trio")
    paths = {}
    for name, alpha in zip(list(tiny_pool)[:3], (None, 8, 24), strict=True):
        paths[name] = out / name
        shutil.copytree(tiny_pool[name], paths[name])
        if alpha:
            cfg_path = paths[name] / "adapter_config.json"
            cfg = json.loads(cfg_path.read_text())
            assert cfg["r"] == 8
            cfg_path.write_text(json.dumps({**cfg, "lora_alpha": alpha}))
    return paths


def _peft_deltas(base, paths, combination_type, weights, **kwargs):
    """{module: delta} of PEFT's combined adapter. PEFT draws the new adapter's random init before it merges,
    so the RNG is seeded where its merging starts, as our composers seed it before theirs (DARE's masks)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraModel

    names = list(paths)
    model = PeftModel.from_pretrained(copy.deepcopy(base.model), str(paths[names[0]]), adapter_name=names[0])
    for n in names[1:]:
        model.load_adapter(str(paths[n]), adapter_name=n)
    seeded = []
    with pytest.MonkeyPatch.context() as mp:
        for attr in ("_generalized_task_arithmetic_weighted_adapter",
                     "_svd_generalized_task_arithmetic_weighted_adapter"):
            def first_seeds(self, *args, _orig=getattr(LoraModel, attr), **kw):
                if not seeded:
                    torch.manual_seed(SEED)
                    seeded.append(True)
                return _orig(self, *args, **kw)

            mp.setattr(LoraModel, attr, first_seeds)
        model.add_weighted_adapter(names, weights, "combo", combination_type=combination_type, **kwargs)
    assert seeded
    return {name.removeprefix("base_model.model."): layer.get_delta_weight("combo")
            for name, layer in model.named_modules() if hasattr(layer, "lora_A") and "combo" in layer.lora_A}


def _ours(method, base, paths, target, settings):
    task, shots = target
    return compose(method, base, [Candidate(n, p) for n, p in paths.items()], task, shots, settings, seed=SEED)


def _assert_same_deltas(factors, peft, rtol=1e-5, atol=1e-6):
    assert set(factors) == set(peft) and factors
    for m, (a, b) in factors.items():
        torch.testing.assert_close(b @ a, peft[m], rtol=rtol, atol=atol, msg=lambda s, m=m: f"{m}: {s}")


@pytest.mark.filterwarnings("ignore:The density 1.0")
@pytest.mark.parametrize(("method", "settings", "peft_kwargs"), [
    ("ties", {}, {"weights": ONES, "density": 0.75}),
    ("ties", {"weights": MIXED, "density": 0.5, "majority_sign_method": "frequency"},
     {"weights": MIXED, "density": 0.5, "majority_sign_method": "frequency"}),
    ("dare_linear", {}, {"weights": ONES, "density": 0.75}),
    ("dare_linear", {"weights": MIXED, "density": 1.0}, {"weights": MIXED, "density": 1.0}),  # no pruning
    ("dare_ties", {}, {"weights": ONES, "density": 0.75}),
    ("dare_ties", {"weights": MIXED, "density": 0.3}, {"weights": MIXED, "density": 0.3}),
])
def test_factor_merges_match_peft(tiny_llama, trio, target, method, settings, peft_kwargs):
    """ties / dare_linear / dare_ties (defaults: weights 1.0, density 0.75) give PEFT's combined adapter's delta."""
    ours = _ours(method, tiny_llama, trio, target, settings)
    assert ours.weights == peft_kwargs["weights"] and all(a.shape[0] == 8 for a, _ in ours.factors.values())
    kwargs = dict(peft_kwargs)
    _assert_same_deltas(ours.factors, _peft_deltas(tiny_llama, trio, method, kwargs.pop("weights"), **kwargs))


def test_ties_has_the_magnitude_of_peft_ties_not_one_over_n(tiny_llama, trio, target):
    """The old default (weights 1/n, then TIES's mean over agreeing adapters) gave 1/n of PEFT's TIES delta."""
    ours = _ours("ties", tiny_llama, trio, target, {}).factors
    at_one = _peft_deltas(tiny_llama, trio, "ties", ONES, density=0.75)
    at_third = _peft_deltas(tiny_llama, trio, "ties", [1 / 3] * 3, density=0.75)
    for m, (a, b) in ours.items():
        ratio = float((b @ a).norm() / at_one[m].norm())
        assert ratio == pytest.approx(1.0, rel=1e-5), m
        assert float(at_third[m].norm() / at_one[m].norm()) == pytest.approx(1 / 3, rel=1e-4), m
        assert abs(ratio - 1 / 3) > 0.5, m


@pytest.mark.parametrize(("method", "settings", "peft_kwargs"), [
    ("svd", {"weights": MIXED}, {}),
    ("ties_svd", {}, {"density": 0.75}),
    ("dare_linear_svd", {"svd_rank": 12}, {"density": 0.75, "svd_rank": 12}),
    ("dare_ties_svd", {"weights": MIXED, "density": 0.5}, {"density": 0.5}),
])
def test_dense_merges_match_peft_svd_combinations(tiny_llama, trio, target, method, settings, peft_kwargs):
    """The *_svd merges (TIES / DARE on the dense deltas, truncated by SVD) are PEFT's *_svd combinations."""
    ours = _ours(method, tiny_llama, trio, target, settings)
    weights = settings.get("weights", ONES)
    assert ours.weights == weights
    assert ours.diagnostics["svd_rank"] == peft_kwargs.get("svd_rank", 8)
    _assert_same_deltas(ours.factors, _peft_deltas(tiny_llama, trio, method, weights, **peft_kwargs),
                        rtol=1e-4, atol=1e-5)  # two SVDs of deltas equal up to rounding


@pytest.mark.filterwarnings("ignore:The density 1.0")
@pytest.mark.parametrize("method", ["svd", "ties_svd", "dare_linear_svd", "dare_ties_svd"])
def test_svd_merges_report_truncation_error(tiny_llama, trio, target, method):
    """||delta - truncated|| / ||delta|| per module and its max, in [0, 1], shrinking with the rank; ~0 once
    the rank can hold the merged delta (sum of ranks for a weighted sum, full rank after pruning)."""
    errors = {}
    for rank in (2, 8, 24, 96):  # 24 = sum of the three ranks; 96 = the modules' full rank
        comp = _ours(method, tiny_llama, trio, target, {"svd_rank": rank})
        d = comp.diagnostics
        assert set(d["svd_truncation_error"]) == set(comp.factors) and d["svd_rank"] == rank
        assert d["svd_truncation_error_max"] == max(d["svd_truncation_error"].values())
        assert all(0.0 <= e <= 1.0 for e in d["svd_truncation_error"].values())
        errors[rank] = d["svd_truncation_error_max"]
    assert errors[2] > errors[8] >= errors[24] >= errors[96]
    assert errors[96] < 1e-5
    if method == "svd":  # a weighted sum of three rank-8 deltas has rank <= 24
        assert errors[24] < 1e-5
    else:  # pruning the dense deltas makes them full rank: rank 24 loses part of the merge
        assert errors[24] > 1e-2
    if method == "dare_linear_svd":  # density 1.0 prunes nothing: a weighted sum again
        d = _ours(method, tiny_llama, trio, target, {"svd_rank": 24, "density": 1.0}).diagnostics
        assert d["svd_truncation_error_max"] < 1e-5


def test_factor_merges_need_equal_ranks(tiny_llama, llama_mixed_ranks, target, trio):
    for method in ("ties", "dare_linear", "dare_ties"):
        with pytest.raises(CompositionError, match=rf"{method} merges the LoRA factors and needs equal ranks; "
                           r"module model\.layers\.\d\.self_attn\.\w_proj has ranks \{'r0': 2, 'r1': 4, 'r2': 8\}"):
            _ours(method, tiny_llama, llama_mixed_ranks, target, {})
    assert all(a.shape[0] == 8 for a, _ in _ours("ties_svd", tiny_llama, llama_mixed_ranks, target, {}).factors.values())
    with pytest.raises(CompositionError, match="2 weights for 3 candidates"):
        _ours("ties", tiny_llama, trio, target, {"weights": [1.0, 1.0]})
