"""export_peft(svd_rank=...): the composed delta per module truncated by SVD to a rank cap (vLLM's default
max LoRA rank is 16; k rank-r candidates compose to rank k*r), with the truncation error reported."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate, applied, compose, export_peft
from lorasoup_core.compose.export import cap_rank

IDS = torch.randint(0, 250, (2, 16), generator=torch.Generator().manual_seed(0))


def _cands(paths):
    return [Candidate(n, p) for n, p in paths.items()]


def _written(out):
    """module -> (A, B) as the exported safetensors hold them."""
    tensors = load_file(out / "adapter_model.safetensors")
    mods = {k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for k in tensors}
    return {m: (tensors[f"base_model.model.{m}.lora_A.weight"], tensors[f"base_model.model.{m}.lora_B.weight"])
            for m in mods}


def _peft_logits(base, out):
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(base.model), str(out)).eval()
    with torch.no_grad():
        return model(IDS).logits


def _our_logits(base, factors):
    with torch.no_grad(), applied(base, {m: (a.float(), b.float()) for m, (a, b) in factors.items()}):
        return base.model(IDS).logits


@pytest.fixture(scope="module")
def uniform(tiny_llama, llama_random, target):
    task, shots = target
    return compose("uniform", tiny_llama, _cands(llama_random), task, shots)  # 4 candidates of rank 4: rank 16


def test_small_cap_writes_that_rank_and_reports_the_svd_error(tiny_llama, uniform, tmp_path):
    cap = 5
    out = export_peft(uniform, tmp_path / "cap", svd_rank=cap)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == cap and cfg["lora_alpha"] == cap and not cfg["rank_pattern"] and not cfg["alpha_pattern"]
    written = _written(out)
    assert set(written) == set(uniform.factors)
    card = AdapterCard.read(out)
    export = card.lineage["export"]
    assert card.rank == cap and export["rank"] == cap and export["svd_rank"] == cap
    dropped = total = 0.0
    for m, (a, b) in uniform.factors.items():
        assert written[m][0].shape[0] == cap and written[m][1].shape[1] == cap
        # independently: the dense delta, its full SVD, the best rank-`cap` approximation
        delta = (b @ a).double()
        u, s, vh = torch.linalg.svd(delta)
        best = (u[:, :cap] * s[:cap]) @ vh[:cap]
        err = torch.linalg.norm(delta - best) / torch.linalg.norm(delta)
        assert export["truncation_error_per_module"][m] == pytest.approx(float(err), rel=1e-6)
        wa, wb = written[m]
        torch.testing.assert_close((wb @ wa).double(), best, rtol=0, atol=1e-5)
        dropped += float(torch.linalg.norm(delta - best) ** 2)
        total += float(torch.linalg.norm(delta) ** 2)
    overall = (dropped / total) ** 0.5
    assert 0.05 < overall < 1  # a real loss at rank 5 of 16
    assert export["truncation_error"] == pytest.approx(overall, rel=1e-6)
    assert card.metrics["export_truncation_error"] == pytest.approx(overall, rel=1e-6)
    assert export["truncation_error_max"] == max(export["truncation_error_per_module"].values())
    # PEFT's alpha / r scaling reproduces the truncated deltas exactly
    torch.testing.assert_close(_peft_logits(tiny_llama, out), _our_logits(tiny_llama, written), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cap", [16, 40])
def test_cap_at_or_above_the_rank_is_exact(tiny_llama, uniform, tmp_path, cap):
    out = export_peft(uniform, tmp_path / "cap", svd_rank=cap)
    card = AdapterCard.read(out)
    assert card.rank == 16 and json.loads((out / "adapter_config.json").read_text())["r"] == 16  # never padded past
    assert card.lineage["export"]["truncation_error"] == 0.0
    assert set(card.lineage["export"]["truncation_error_per_module"].values()) == {0.0}
    torch.testing.assert_close(_peft_logits(tiny_llama, out), _our_logits(tiny_llama, uniform.factors),
                               rtol=1e-4, atol=1e-4)


def test_cap_at_the_true_rank_below_the_stacked_rank_is_lossless(tiny_llama, llama_random, target, tmp_path):
    task, shots = target
    # two zero weights: stacked rank 16, true rank 8, so the SVD runs and drops only zero directions
    comp = compose("linear", tiny_llama, _cands(llama_random), task, shots, {"weights": [1.0, 0.0, -0.5, 0.0]})
    assert {a.shape[0] for a, _ in comp.factors.values()} == {16}
    out = export_peft(comp, tmp_path / "cap", svd_rank=8)
    card = AdapterCard.read(out)
    assert card.rank == 8 and card.lineage["export"]["truncation_error"] < 1e-6
    torch.testing.assert_close(_peft_logits(tiny_llama, out), _our_logits(tiny_llama, comp.factors),
                               rtol=1e-4, atol=1e-4)


def test_cap_rank_pads_modules_to_one_rank():
    g = torch.Generator().manual_seed(1)
    factors = {"small": (torch.randn(3, 20, generator=g), torch.randn(30, 3, generator=g)),
               "big": (torch.randn(10, 20, generator=g), torch.randn(30, 10, generator=g))}
    capped, errors, overall = cap_rank(factors, 6)
    assert {a.shape[0] for a, _ in capped.values()} == {6} and {b.shape[1] for _, b in capped.values()} == {6}
    a, b = factors["small"]
    torch.testing.assert_close(capped["small"][1] @ capped["small"][0], (b @ a).double())  # zero-padded, exact
    assert errors["small"] == 0.0 and 0 < errors["big"] and 0 < overall < errors["big"]
    with pytest.raises(ValueError, match="svd_rank must be >= 1"):
        cap_rank(factors, 0)
