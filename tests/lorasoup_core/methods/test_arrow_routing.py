"""`arrow` and `arrow-gks`: per-token routing through PEFT's own Arrow layers. The routed adapter's logits are
those of a model PEFT's `create_arrow_model` builds on the same adapters (and general adapter); it is
registered and evaluated like any adapter, leaves the base as it was, and refuses what it cannot route."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import ArrowConfig, create_arrow_model
from safetensors.torch import load_file, save_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.adapters.routed import read_router
from lorasoup_core.bench import evaluate_task
from lorasoup_core.bench.harness import adapter_model
from lorasoup_core.compose import Candidate
from lorasoup_core.config import StorageConfig
from lorasoup_core.data import load_task
from lorasoup_core.methods import METHODS, MethodCall, MethodEnv, MethodError, settings_for
from lorasoup_core.pool import PoolConfig
from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.tracking import RunContext

SKILLS = ("add", "count_items", "first_item")


@pytest.fixture(autouse=True)
def _own_home(tmp_path, monkeypatch):
    """A home and a registry of this test's own: the pool `compose` lists is exactly what the test registers."""
    monkeypatch.setenv("LORASOUP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")


@pytest.fixture(scope="module")
def target():
    task = load_task({"source": "skills", "name": "count_then_add", "n_train": 20, "n_validation": 0, "n_test": 6})
    return task, task.train[:5]


def _call(name, target, cands, **settings):
    task, shots = target
    return MethodCall(name, name, settings_for(name, settings), seed=0, target=task, shots=shots, candidates=cands)


def _env(tmp_path):
    return MethodEnv(RunContext("arrow", f"sqlite:///{tmp_path}/m.db"), StorageConfig())


def _cands(tiny_pool):
    return [Candidate(s, tiny_pool[s], AdapterCard.read(tiny_pool[s])) for s in SKILLS]


def _inputs(base):
    return base.tokenizer(["3 apples and 2 pears, then add 4", "first of: cat, dog"], return_tensors="pt",
                          padding=True)


def _peft_logits(base, paths, config, general=None):
    """PEFT's own Arrow model, built on a copy of the base from the original adapter directories."""
    model = create_arrow_model(copy.deepcopy(base.model), [str(p) for p in paths], config,
                               general_adapter_paths=[str(g) for g in general] if general else None).eval()
    with torch.inference_mode():
        return model(**_inputs(base)).logits


def _our_logits(base, adapter_dir):
    with adapter_model(base, adapter_dir, merge=True) as model, torch.inference_mode():  # merge: not applicable
        return model(**_inputs(base)).logits


def test_arrow_logits_are_peft_arrow_models(tiny_llama, tiny_pool, tmp_path, target):
    """Same adapters in the same order, same settings: the same computation as PEFT's create_arrow_model,
    so the logits are equal bit for bit on any CPU; the base is bit-for-bit unchanged after the block."""
    before = {k: v.clone() for k, v in tiny_llama.model.state_dict().items()}
    with torch.inference_mode():
        plain = tiny_llama.model(**_inputs(tiny_llama)).logits
    out = METHODS.get("arrow").run(tiny_llama, _call("arrow", target, _cands(tiny_pool), top_k=2), _env(tmp_path))
    ours = _our_logits(tiny_llama, out.adapter_dir)
    theirs = _peft_logits(tiny_llama, [tiny_pool[s] for s in SKILLS], ArrowConfig(top_k=2, rng_seed=0))
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, plain)  # the routing changes the outputs
    after = tiny_llama.model.state_dict()
    assert sorted(after) == sorted(before) and all(torch.equal(after[k], v) for k, v in before.items())
    card = AdapterCard.read(out.adapter_dir)
    assert card.kind == "arrow" and card.origin == "composed" and card.lineage["candidates"] == list(SKILLS)
    assert out.trainable_params == 0 and read_router(out.adapter_dir).top_k == 2


def test_top_k_is_capped_at_the_candidates(tiny_llama, tiny_pool, tmp_path, target):
    out = METHODS.get("arrow").run(tiny_llama, _call("arrow", target, _cands(tiny_pool)[:2], top_k=5), _env(tmp_path))
    assert read_router(out.adapter_dir).top_k == 2
    theirs = _peft_logits(tiny_llama, [tiny_pool[s] for s in SKILLS[:2]], ArrowConfig(top_k=2, rng_seed=0))
    assert torch.equal(_our_logits(tiny_llama, out.adapter_dir), theirs)


def test_no_export_rank_for_a_routed_adapter(tiny_llama, tiny_pool, tmp_path, target):
    call = _call("arrow", target, _cands(tiny_pool))
    call.export_rank = 16
    with pytest.raises(MethodError, match="cannot be exported as one LoRA"):
        METHODS.get("arrow").run(tiny_llama, call, _env(tmp_path))


def test_registered_and_evaluated_like_any_adapter(tiny_llama, tiny_pool, tmp_path, target):
    out = METHODS.get("arrow").run(tiny_llama, _call("arrow", target, _cands(tiny_pool)), _env(tmp_path))
    reg = AdapterRegistry()
    version = reg.register(AdapterCard.read(out.adapter_dir), out.adapter_dir, run_id=out.run_id)
    assert version.origin == "composed"
    fetched = reg.download(version, tmp_path / "fetched")
    assert read_router(fetched) == read_router(out.adapter_dir)
    task, shots = target
    report = evaluate_task(tiny_llama, task, mode="adapter", adapter=version.store_uri, limit=3, progress=False,
                           exclude={task.name: {s.input for s in shots}}, method_label="arrow")
    assert [r.method for r in report.rows][0] == "arrow" and report.rows[0].n == 3
    assert report.throughput["examples"] == 3


def test_arrow_gks_subtracts_the_pools_datamix_adapter(tiny_llama, tiny_pool, tmp_path, target):
    """GenKnowSub with the pool's DATA-MIX LoRA as the general adapter: trained (a few steps), registered,
    and the logits equal PEFT's Arrow model with use_gks and that adapter; plain Arrow's differ."""
    pool = PoolConfig(tasks=[f"skills:{s}" for s in SKILLS], training={"steps": 3, "batch_size": 4,
                                                                        "max_validation": 4}, embed_examples=0)
    call = _call("arrow-gks", target, _cands(tiny_pool), top_k=2)
    call.pool = pool
    out = METHODS.get("arrow-gks").run(tiny_llama, call, _env(tmp_path))
    spec = read_router(out.adapter_dir)
    assert len(spec.general) == 1 and AdapterCard.read(out.adapter_dir).lineage["general"][0].endswith("/1")
    general = out.adapter_dir / spec.general[0]
    config = ArrowConfig(top_k=2, rng_seed=0, use_gks=True)
    theirs = _peft_logits(tiny_llama, [tiny_pool[s] for s in SKILLS], config, general=[general])
    ours = _our_logits(tiny_llama, out.adapter_dir)
    assert torch.equal(ours, theirs)
    plain = _peft_logits(tiny_llama, [tiny_pool[s] for s in SKILLS], ArrowConfig(top_k=2, rng_seed=0))
    assert not torch.equal(ours, plain)
    call.pool = None
    with pytest.raises(MethodError, match="needs the pool's data"):
        METHODS.get("arrow-gks").run(tiny_llama, call, _env(tmp_path))


def _broken_copy(src, dest, how):
    dest.mkdir()
    for f in ("adapter_config.json",):
        (dest / f).write_bytes((src / f).read_bytes())
    tensors = load_file(str(src / "adapter_model.safetensors"))
    key = sorted(k for k in tensors if "lora_B" in k)[0]
    tensors[key] = torch.full_like(tensors[key], float("nan")) if how == "nan" else torch.zeros_like(tensors[key])
    save_file(tensors, str(dest / "adapter_model.safetensors"))
    return Candidate(f"broken-{how}", dest)


@pytest.mark.parametrize("how", ["nan", "zero"])
def test_an_expert_with_nan_or_zero_factors_is_refused_by_name(tiny_llama, tiny_pool, tmp_path, target, how):
    cands = [*_cands(tiny_pool)[:2], _broken_copy(tiny_pool["first_item"], tmp_path / how, how)]
    with pytest.raises(MethodError, match=f"adapter 'broken-{how}' cannot be an Arrow expert"):
        METHODS.get("arrow").run(tiny_llama, _call("arrow", target, cands), _env(tmp_path))


def test_compose_routes_an_imported_pool_without_examples(tiny_pool, tmp_path):
    """A pool whose cards hold no stored examples (imported): `compose --filter arrow --method arrow` ranks
    it from the weights and registers a routed adapter that `lorasoup eval` scores; the embedding filter
    has nothing to rank."""
    from typer.testing import CliRunner

    from lorasoup_core.cli import app

    reg = AdapterRegistry()
    for skill in SKILLS:
        dest = tmp_path / "imported" / skill
        dest.mkdir(parents=True)
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            (dest / f).write_bytes((tiny_pool[skill] / f).read_bytes())
        card = AdapterCard.read(tiny_pool[skill]).model_copy(update={"embedding": [], "origin": "imported"})
        card.write(dest)
        reg.register(card, dest)
    run = CliRunner().invoke
    args = ["compose", "--model", "tiny-llama", "--target", "skills:count_then_add", "-k", "2"]
    out = run(app, [*args, "--filter", "embedding", "--method", "uniform"])
    assert out.exit_code != 0 and "no stored embedding" in out.output, out.output
    out = run(app, [*args, "--filter", "arrow", "--method", "arrow"])
    assert out.exit_code == 0, out.output
    assert "selection arrow: arrow: kept 2 of 3" in out.output, out.output
    assert "registered lorasoup.tiny-llama.count_then_add-arrow/1" in out.output, out.output
    out = run(app, ["eval", "--model", "tiny-llama", "--benchmark", "skills", "--tasks", "count_then_add",
                    "--limit", "2", "--adapter", "lorasoup.tiny-llama.count_then_add-arrow/1"])
    assert out.exit_code == 0 and "count_then_add" in out.output, out.output
