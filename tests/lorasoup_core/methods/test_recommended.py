"""`recommended`: LoraHub's search over the embedding filter's candidates, whatever the experiment's own
selection; the default of `lorasoup compose`; its choices (selection and search) read the shots only."""

from __future__ import annotations

from typer.testing import CliRunner

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate
from lorasoup_core.compose import centroid as centroid_module
from lorasoup_core.compose import objective as objective_module
from lorasoup_core.compose.lorahub import LorahubSettings
from lorasoup_core.config import StorageConfig
from lorasoup_core.data import load_task
from lorasoup_core.experiment import ExperimentConfig
from lorasoup_core.methods import METHODS, MethodCall, MethodEnv, settings_for
from lorasoup_core.selection import FilterSpec, select_candidates
from lorasoup_core.tracking import RunContext


def test_recommended_selects_by_embedding_in_an_experiment_that_draws_at_random():
    cfg = ExperimentConfig.model_validate({
        "name": "r", "model": {"spec": "tiny-llama"}, "pool": {"tasks": ["skills:add", "skills:count_items"]},
        "targets": [{"task": "skills:count_then_add"}], "selection": {"filters": ["random"], "k": 2},
        "methods": ["lorahub", "recommended", "zero-shot"]})
    assert cfg.selection_of("lorahub").filters == ["random"]
    assert cfg.selection_of("recommended").filters == ["embedding-or-arrow"] and cfg.selection_of("recommended").k == 2
    assert cfg.settings("recommended") == LorahubSettings()  # the paper's search settings


def test_its_choices_read_the_shots_only(tiny_llama, tiny_pool, tmp_path, monkeypatch):
    target = load_task({"source": "skills", "name": "count_then_add", "n_train": 40, "n_validation": 8, "n_test": 8})
    shots = target.draw_shots(5, 0)
    seen: list[str] = []
    embed_texts, encode = centroid_module.embed_texts, objective_module.encode

    def spy_embed(base, texts, *a, **kw):
        seen.extend(texts)
        return embed_texts(base, texts, *a, **kw)

    def spy_encode(kind, tokenizer, prompts, targets, max_length):
        seen.extend(prompts)
        return encode(kind, tokenizer, prompts, targets, max_length)

    monkeypatch.setattr(centroid_module, "embed_texts", spy_embed)  # the embedding filter's similarities
    monkeypatch.setattr(objective_module, "encode", spy_encode)  # the search's few-shot objective
    cands = [Candidate(s, p, AdapterCard.read(p)) for s, p in tiny_pool.items()]
    chosen = select_candidates(tiny_llama, cands, target, shots, [FilterSpec(name="embedding", k=2, seed=0)], 2, set())
    call = MethodCall("recommended", "recommended", settings_for("recommended", {"budget": 4}), seed=0, target=target,
                      shots=shots, candidates=chosen.candidates)
    out = METHODS.get("recommended").run(tiny_llama, call, MethodEnv(RunContext("rec", f"sqlite:///{tmp_path}/m.db"),
                                                                     StorageConfig()))
    assert len(chosen.candidates) == 2 and set(out.weights) == {c.name for c in chosen.candidates}
    held = {e.input for e in target.test + target.validation} - {s.input for s in shots}
    assert seen and not [t for t in seen if any(h in t for h in held)]
    assert AdapterCard.read(out.adapter_dir).lineage["label"] == "recommended"


def test_compose_without_a_method_runs_recommended(tiny_pool):
    from lorasoup_core.cli import app
    from lorasoup_core.registry import AdapterRegistry

    reg = AdapterRegistry()
    for skill in ("add", "count_items", "first_item"):
        reg.register(AdapterCard.read(tiny_pool[skill]), tiny_pool[skill])
    out = CliRunner().invoke(app, ["compose", "--model", "tiny-llama", "--target", "skills:count_then_add", "-k", "2",
                                   "--set", "budget=4"])
    assert out.exit_code == 0, out.output
    assert "registered lorasoup.tiny-llama.count_then_add-recommended/" in out.output
    assert "selection embedding-or-arrow: embedding-or-arrow: kept 2 of 3" in out.output, out.output
