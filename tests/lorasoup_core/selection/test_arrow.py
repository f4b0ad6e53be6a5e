"""The `arrow` filter: PEFT's own prototypes, an independent reference for the score, adapters without
stored examples ranked, broken factors refused by name, the per-content cache."""

import copy
import logging

import pytest
import torch
from peft import ArrowConfig, LoraConfig, create_arrow_model
from peft.tuners.lora.arrow import ArrowLoraLinearLayer
from safetensors.torch import save_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate, CompositionError
from lorasoup_core.data import load_task
from lorasoup_core.data.prompts import IGNORE
from lorasoup_core.selection import FilterSpec, select_candidates
from lorasoup_core.selection import arrow as arrow_mod


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LORASOUP_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def target():
    task = load_task({"source": "skills", "name": "count_items", "n_train": 20, "n_validation": 0, "n_test": 4})
    return task, task.train[:5]


def _lora(base, out, seed, scale=0.05, poison=None):
    """A PEFT LoRA directory, random rank-4 factors on every q_proj / v_proj; `poison` = (module, "nan" | "zero")."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, mod in base.model.named_modules():
        if name.endswith(("q_proj", "v_proj")):
            a = torch.randn(4, mod.in_features, generator=g) * scale
            b = torch.randn(mod.out_features, 4, generator=g) * scale
            if poison and name == poison[0]:
                if poison[1] == "nan":
                    a[0, 0] = float("nan")
                else:
                    b = torch.zeros_like(b)
            tensors[f"base_model.model.{name}.lora_A.weight"] = a
            tensors[f"base_model.model.{name}.lora_B.weight"] = b
    LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]).save_pretrained(str(out))
    save_file(tensors, str(out / "adapter_model.safetensors"))
    return Candidate(out.name, out)


def test_prototypes_are_the_ones_peft_routes_by(tiny_llama, tmp_path, target):
    """Same A and B, same seeded power iteration: our prototypes and the buffers PEFT's Arrow router builds
    on its first forward are the same tensors, bit for bit (one code path, no tolerance needed)."""
    cands = [_lora(tiny_llama, tmp_path / f"c{i}", i) for i in range(3)]
    model = create_arrow_model(copy.deepcopy(tiny_llama.model), [str(c.path) for c in cands],
                               ArrowConfig(top_k=2, rng_seed=arrow_mod.SEED))
    with torch.inference_mode():
        model(**tiny_llama.tokenizer(["3 apples and 2 pears"], return_tensors="pt"))
    routers = {name.split(".lora_arrow")[0].removeprefix("base_model.model."): mod
               for name, mod in model.named_modules() if isinstance(mod, ArrowLoraLinearLayer)}
    ours = [arrow_mod.compute_prototypes(c) for c in cands]
    assert routers and sorted(routers) == sorted(ours[0])
    for module, router in routers.items():
        assert router.task_adapter_names == ["task_0", "task_1", "task_2"]
        assert torch.equal(router.prototypes, torch.stack([p[module] for p in ours])), module


def _reference_scores(base, task, shots, protos):
    """Independently of the filter's hooks: tiny-llama's q_proj and v_proj both read input_layernorm of the
    layer's input hidden state, which `output_hidden_states` returns; mean |cos| over the real tokens per
    module, then over modules."""
    from lorasoup_core.data.prompts import encode

    enc = encode("causal", base.tokenizer, [task.prompt(e) for e in shots], [e.target for e in shots], 256)
    with torch.inference_mode():
        hidden = base.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                            output_hidden_states=True).hidden_states
    real = enc["attention_mask"].bool()
    assert (enc["labels"][real] != IGNORE).any()  # the answers' tokens are among the real ones
    per_module = []
    for module in sorted(protos[0]):
        layer = int(module.split(".layers.")[1].split(".")[0])
        x = base.model.model.layers[layer].input_layernorm(hidden[layer])[real].float()
        x = x / x.norm(dim=-1, keepdim=True)
        per_module.append(torch.stack([(x @ p[module]).abs().mean() for p in protos]))
    return torch.stack(per_module).mean(0)


def test_scores_match_an_independent_reference(tiny_llama, tmp_path, target):
    task, shots = target
    cands = [_lora(tiny_llama, tmp_path / f"c{i}", i) for i in range(4)]
    protos = [arrow_mod.compute_prototypes(c) for c in cands]
    ours = arrow_mod.alignment(tiny_llama, task, shots, protos)
    ref = _reference_scores(tiny_llama, task, shots, protos)
    # both are means of |cos| in [0, 1] from the same float32 states, summed in other orders: float32
    # rounding over a 64-wide dot and a few hundred tokens stays below 1e-5, far inside 1e-4
    assert torch.allclose(ours, ref, atol=1e-4, rtol=0), (ours, ref)
    assert ours.min() > 0 and ours.max() < 1


def test_an_imported_pool_without_examples_is_ranked_where_embedding_has_nothing(tiny_llama, tiny_pool, target):
    task, shots = target
    bare = [Candidate(name, path) for name, path in tiny_pool.items()]  # no card: no stored embedding
    with pytest.raises(CompositionError, match="no candidate adapters left"):
        select_candidates(tiny_llama, bare, task, shots, [FilterSpec(name="embedding", k=3)])
    sel = select_candidates(tiny_llama, bare, task, shots, [FilterSpec(name="arrow", k=3)])
    assert len(sel.candidates) == 3 and any(line.startswith("arrow: kept 3 of 11") for line in sel.log), sel.log
    ordered = [sel.scores[c.name] for c in sel.candidates]
    assert ordered == sorted(ordered, reverse=True)
    # chains with the others, and with cards the ranking is the same (it never reads them)
    carded = [Candidate(n, p, AdapterCard.read(p)) for n, p in tiny_pool.items()]
    again = select_candidates(tiny_llama, carded, task, shots, [FilterSpec(name="random", k=8, seed=1), "arrow"], k=3)
    assert len(again.candidates) == 3
    full = select_candidates(tiny_llama, carded, task, shots, [FilterSpec(name="arrow", k=3)])
    assert [c.name for c in full.candidates] == [c.name for c in sel.candidates]


def test_embedding_or_arrow_is_embedding_unless_an_adapter_lacks_examples(tiny_llama, tiny_pool, target):
    """What `recommended` selects with: with every card's embedding, the embedding filter's scores; with one
    adapter imported without examples, the arrow filter's scores for all of them, and a line naming it."""
    task, shots = target
    carded = [Candidate(n, p, AdapterCard.read(p)) for n, p in tiny_pool.items()]

    def scores(pool, name):
        return select_candidates(tiny_llama, pool, task, shots, [FilterSpec(name=name, k=None)])

    assert scores(carded, "embedding-or-arrow").scores == scores(carded, "embedding").scores
    imported = [*carded[:-1], Candidate(carded[-1].name, carded[-1].path,
                                        carded[-1].card.model_copy(update={"embedding": []}))]
    mixed = scores(imported, "embedding-or-arrow")
    assert mixed.scores == scores(imported, "arrow").scores and len(mixed.scores) == len(carded)
    assert any(line.startswith("embedding-or-arrow: 1 of 11 candidates have no usable stored embedding "
                               f"({carded[-1].name!r})") for line in mixed.log), mixed.log


@pytest.mark.parametrize("poison", ["nan", "zero"])
def test_broken_factors_are_refused_naming_the_adapter(tiny_llama, tmp_path, target, poison, caplog):
    task, shots = target
    module = next(n for n, _ in tiny_llama.model.named_modules() if n.endswith("v_proj"))
    good = [_lora(tiny_llama, tmp_path / f"ok{i}", i) for i in range(2)]
    bad = _lora(tiny_llama, tmp_path / "broken", 9, poison=(module, poison))
    with pytest.raises(arrow_mod.PrototypeError, match=rf"'broken': module {module}"):
        arrow_mod.compute_prototypes(bad)
    with caplog.at_level(logging.WARNING, logger="lorasoup.selection"):
        sel = select_candidates(tiny_llama, [*good, bad], task, shots, [FilterSpec(name="arrow", k=3)])
    assert sorted(c.name for c in sel.candidates) == ["ok0", "ok1"]
    skipped = [line for line in sel.log if line.startswith("arrow: skipped adapter 'broken'")]
    assert len(skipped) == 1 and module in skipped[0] and "broken" in caplog.text


def test_prototypes_are_cached_per_adapter_content(tiny_llama, tmp_path, monkeypatch):
    cand = _lora(tiny_llama, tmp_path / "c0", 0)
    first = arrow_mod.prototypes(cand)
    entries = list((tmp_path / "home" / "cache" / "arrow").glob("*.safetensors"))
    assert len(entries) == 1

    def fail(_c):
        raise AssertionError("recomputed although cached")

    with monkeypatch.context() as m:
        m.setattr(arrow_mod, "compute_prototypes", fail)
        again = arrow_mod.prototypes(cand)
        assert sorted(again) == sorted(first) and all(torch.equal(again[k], first[k]) for k in first)
        other = _lora(tiny_llama, tmp_path / "c1", 1)  # other content: its own entry, computed
        with pytest.raises(AssertionError, match="recomputed"):
            arrow_mod.prototypes(other)
    entries[0].write_bytes(b"not a safetensors file")  # a corrupt entry is recomputed, not trusted
    fixed = arrow_mod.prototypes(cand)
    assert all(torch.equal(fixed[m], first[m]) for m in first)
