"""The search engine (stacked factors, patched layers, population batches, head at target positions)
must compute exactly what the composition means: compared with fixed factors and with HF's own loss."""

import pytest
import torch

from lorasoup_core.compose import Candidate, Engine, FewShot, Stack, applied
from lorasoup_core.data.prompts import per_example_loss


def _reference(base, stack, formula, fewshot, weights):
    out = []
    with torch.inference_mode():
        for w in weights:
            factors = stack.exact(w) if formula == "exact" else stack.lorahub(w)
            with applied(base, factors):
                out.append(float(fewshot.loss()))
    return out


@pytest.mark.parametrize("formula", ["exact", "lorahub"])
@pytest.mark.parametrize("mode", ["dense", "lowrank"])
@pytest.mark.parametrize("model", ["tiny_llama", "tiny_t5"])
def test_population_and_modes_match_fixed_factors(request, model, mode, formula, target):
    base = request.getfixturevalue(model)
    paths = request.getfixturevalue("llama_random" if model == "tiny_llama" else "t5_random")
    stack = Stack(base, [Candidate(n, p) for n, p in paths.items()])
    task, shots = target
    fewshot = FewShot(base, task, shots, batch_size=2)  # 3 chunks: losses must not depend on batching
    weights = torch.randn(3, len(stack), generator=torch.Generator().manual_seed(0))
    want = _reference(base, stack, formula, fewshot, weights)
    assert max(want) - min(want) > 1e-3  # the weights matter, so agreement below is informative
    with torch.inference_mode(), Engine(base, stack, formula, 3, mode) as engine:
        engine.set(weights)
        batched = fewshot.losses(3).tolist()
        one_by_one = []
        for w in weights:
            engine.set(w[None])
            one_by_one.append(float(fewshot.losses(1)[0]))
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(want), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(one_by_one), torch.tensor(want), rtol=1e-5, atol=1e-5)
    names = [n for n, _ in base.model.named_modules()]
    assert all("forward" not in vars(dict(base.model.named_modules())[m]) for m in stack.modules), names[:3]


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_t5"])
def test_fewshot_loss_equals_hf_loss_and_ignores_batching(request, model, target):
    """The head runs only at target positions, yet the loss is HF's per-example loss, for any batch size."""
    base = request.getfixturevalue(model)
    task, shots = target
    full = FewShot(base, task, shots)
    b = full.batch
    with torch.inference_mode():
        out = base.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
        want = per_example_loss(out.logits, b["labels"], base.kind)
        for size in (None, 1, 2):
            got = FewShot(base, task, shots, batch_size=size).per_example(1)[0]
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gradients_reach_per_module_weights(tiny_llama, llama_mixed_ranks, target):
    """CAT's path: mixed ranks, per-module weights, autograd through the dense and low-rank states."""
    stack = Stack(tiny_llama, [Candidate(n, p) for n, p in llama_mixed_ranks.items()])
    task, shots = target
    fewshot = FewShot(tiny_llama, task, shots)
    w = torch.rand(len(stack.modules), len(stack), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), applied(tiny_llama, stack.exact(w)):
        want = float(fewshot.loss())
    grads = []
    for mode in ("dense", "lowrank"):
        p = w.clone().requires_grad_(True)
        with Engine(tiny_llama, stack, "exact", 1, mode) as engine:
            engine.set(p[None])
            loss = fewshot.loss()
            loss.backward()
        assert abs(float(loss) - want) < 1e-5
        grads.append(p.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
