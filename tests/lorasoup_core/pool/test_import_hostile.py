"""Hostile or broken adapters at `pool import`: each is refused with one line naming it and the reason,
the others still register, and nothing an imported card claims is trusted."""

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lorasoup_core.adapters import CARD_FILE, AdapterCard, TrainingConfig, train_lora
from lorasoup_core.data import Example, Task
from lorasoup_core.pool import import_adapters, register_adapter
from lorasoup_core.pool.candidates import pool_versions
from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.storage import open_store
from tests.lorasoup_core.pool.hubkit import hostile_bin

WEIGHTS = "adapter_model.safetensors"
KEY = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"
TENSOR = "model.layers.1.self_attn.v_proj.lora_B.weight"
WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "ocean"]


def _peft_adapter(base, out, seed=0, **extra):
    """A real PEFT LoRA on a copy of tiny-llama (random B, so it is not a no-op), saved to `out`."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    safe = extra.pop("safe_serialization", True)
    config = LoraConfig(r=4, target_modules=extra.pop("target_modules", ["q_proj", "v_proj"]), init_lora_weights=False,
                        **extra)
    get_peft_model(copy.deepcopy(base.model), config).save_pretrained(str(out), safe_serialization=safe)
    return out


def _poison(adapter_dir, key, value):
    tensors = load_file(str(adapter_dir / WEIGHTS))
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] = value
    save_file(tensors, str(adapter_dir / WEIGHTS), metadata={"format": "pt"})


@pytest.mark.parametrize(("value", "problem"), [
    (math.nan, f"tensor {TENSOR} has 1 non-finite values (NaN)"),
    (math.inf, f"tensor {TENSOR} has 1 non-finite values (inf)"),
    (1e30, f"tensor {TENSOR} has |w| = 1e+30, over the limit of 10000 for LoRA factors"),
    (-2e4, f"tensor {TENSOR} has |w| = 2e+04, over the limit of 10000"),
])
def test_non_finite_or_absurd_weights_are_refused(tmp_path, tiny_llama, registry, value, problem):
    bad = _peft_adapter(tiny_llama, tmp_path / "bad-lora")
    _poison(bad, KEY, value)
    good = _peft_adapter(tiny_llama, tmp_path / "good-lora", seed=1)
    report = import_adapters([str(bad), str(good)], tiny_llama, registry)
    assert list(report.ok) == [str(good)] and list(report.rejected) == [str(bad)]
    assert report.rejected[str(bad)].startswith(f"{bad}: broken or hostile weights: {problem}"), report.rejected
    assert [v.ref for v in registry.list()] == [report.ok[str(good)].ref]


def test_absurd_scaling_is_refused(tmp_path, tiny_llama, registry):
    bad = _peft_adapter(tiny_llama, tmp_path / "loud-lora")
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, "lora_alpha": 1e30}))
    report = import_adapters([str(bad)], tiny_llama, registry)
    assert "scaling alpha / r = 2.5e+29 is not finite or over 10000" in report.rejected[str(bad)]


def test_truncated_and_code_carrying_pickle_weights_are_refused_and_the_rest_register(tmp_path, tiny_llama, registry,
                                                                                      monkeypatch):
    truncated = _peft_adapter(tiny_llama, tmp_path / "truncated-lora")
    raw = (truncated / WEIGHTS).read_bytes()
    (truncated / WEIGHTS).write_bytes(raw[: len(raw) // 2])
    pickled = _peft_adapter(tiny_llama, tmp_path / "pickle-lora", safe_serialization=False)
    assert (pickled / "adapter_model.bin").is_file() and not (pickled / WEIGHTS).exists()
    hostile = _peft_adapter(tiny_llama, tmp_path / "hostile-lora", seed=2, safe_serialization=False)
    marker = tmp_path / "unpickled"
    hostile_bin(hostile / "adapter_model.bin", torch.load(hostile / "adapter_model.bin", weights_only=True), marker)
    good = _peft_adapter(tiny_llama, tmp_path / "good-lora", seed=1)
    real_load = torch.load

    def weights_only_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load must only ever read imported weights with weights_only"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", weights_only_load)
    report = import_adapters([str(truncated), str(pickled), str(hostile), str(good)], tiny_llama, registry)
    # a tensor-only pickle now registers (stored as safetensors); the one that carries code does not
    assert list(report.ok) == [str(pickled), str(good)]
    r = report.rejected
    assert r[str(truncated)].startswith(f"{truncated}: {WEIGHTS} is not a readable safetensors file, truncated or "
                                        "corrupt ("), r
    assert r[str(hostile)] == (f"{hostile}: adapter_model.bin is a pickle that calls builtins.exec, not only tensors; "
                               "refusing to load it (unpickling it would run that code)")
    assert not marker.exists()
    assert all("weights_only" not in why and "\n" not in why for why in r.values())


def _trained(tiny_llama, out):
    task = Task("add_words", [Example(w, w[0]) for w in WORDS] * 2, [Example(w, w[0]) for w in WORDS[:4]], [])
    train_lora(tiny_llama, task, TrainingConfig(steps=2, max_validation=4), out, progress=False, embed_examples=4)
    return out


def test_a_copied_adapter_never_replaces_the_trained_one(tmp_path, tiny_llama, registry):
    trained = register_adapter(registry, _trained(tiny_llama, tmp_path / "trained"), None)
    assert "champion" in trained.aliases and "latest" in trained.aliases
    # a copy of the trained directory, card included, with forged metrics
    forged = tmp_path / "copies" / "add_words"
    shutil.copytree(tmp_path / "trained", forged)
    card = json.loads((forged / CARD_FILE).read_text())
    card["metrics"]["val_loss"] = 1e-6
    (forged / CARD_FILE).write_text(json.dumps(card))
    # a plain PEFT directory named after the trained task (different weights, no card)
    plain = tmp_path / "elsewhere" / "add_words"
    shutil.copytree(tmp_path / "trained", plain)
    (plain / CARD_FILE).unlink()
    _poison(plain, KEY, 0.5)

    report = import_adapters([str(forged), str(plain)], tiny_llama, registry)
    assert not report.rejected, report.rejected
    v, p = report.ok[str(forged)], report.ok[str(plain)]
    assert (v.origin, v.task, v.name) == ("imported", "add_words-imported", "lorasoup.tiny-llama.add_words-imported")
    assert (p.origin, p.name, p.version) == ("imported", v.name, "2")  # imports of one name: versions of one model
    assert "val_loss" not in v.metrics and v.metrics["claimed_val_loss"] == 1e-6
    assert "claimed_val_loss_base" in v.metrics and not p.metrics
    assert any("imported as 'add_words-imported' so that it never replaces them" in w
               for w in report.warnings[str(forged)]), report.warnings
    # the trained version is still the task's newest version, its champion, and what the pipeline composes
    assert registry.get(f"{trained.name}@latest").ref == trained.ref
    assert registry.get(f"{trained.name}@champion").ref == trained.ref
    assert [x.ref for x in pool_versions(registry, "tiny-llama", tiny_llama.fingerprint, ["add_words"])] \
        == [trained.ref]
    assert registry.set_champion_if_better(v) is False  # no val_loss: never a champion
    stored = AdapterCard.read(registry.download(v, tmp_path / "dl"))
    assert stored.training["claimed"]["task"] == "add_words" and stored.origin == "imported"
    # same base, no examples: the card's embedding (renormalised), flagged unverified
    assert len(stored.embedding) == 96 and torch.allclose(torch.tensor(stored.embedding), torch.tensor(card["embedding"]))
    assert any("the task embedding is its card's, unverified" in w for w in report.warnings[str(forged)])

    # nothing trained under that name: the card's task name is kept, its metrics still only claimed
    fresh = AdapterRegistry(tracking_uri=f"sqlite:///{tmp_path / 'fresh.db'}",
                            store=open_store((tmp_path / "fresh-store").as_uri()))
    kept = import_adapters([str(forged)], tiny_llama, fresh).ok[str(forged)]
    assert (kept.task, kept.name) == ("add_words", "lorasoup.tiny-llama.add_words")
    assert "val_loss" not in kept.metrics and fresh.set_champion_if_better(kept) is False


def test_examples_linked_outside_the_adapter_are_refused(tmp_path, tiny_llama, registry):
    secret = tmp_path / "private" / "notes.jsonl"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"input": "the launch code is 0000"}) + "\n")
    leaky = _peft_adapter(tiny_llama, tmp_path / "leaky-lora")
    (leaky / "examples.jsonl").symlink_to(secret)
    inside = _peft_adapter(tiny_llama, tmp_path / "inside-lora", seed=1)
    (inside / "data").mkdir()
    (inside / "data" / "ex.jsonl").write_text("".join(json.dumps({"input": w}) + "\n" for w in WORDS))
    (inside / "examples.jsonl").symlink_to(Path("data") / "ex.jsonl")
    bare = _peft_adapter(tiny_llama, tmp_path / "bare-lora", seed=2)

    report = import_adapters([str(leaky), str(inside), str(bare)], tiny_llama, registry)
    assert report.rejected == {str(leaky): f"{leaky}: examples.jsonl is a symbolic link to {secret.resolve()}, outside "
                                           "the adapter directory; refusing to import it (copy the file into the "
                                           "directory instead)"}
    ok = report.ok[str(inside)]
    card = AdapterCard.read(registry.download(ok, tmp_path / "dl"))
    assert card.training["embedding_from"] == f"{len(WORDS)} examples" and len(card.embedding) == 96
    assert not (tmp_path / "dl" / "examples.jsonl").is_symlink()
    # an adapter without examples registers, with a warning that the embedding filter will skip it
    assert any("no task embedding, so the embedding filter skips it" in w for w in report.warnings[str(bare)])
    assert sorted(v.task for v in registry.list()) == ["bare-lora", "inside-lora"]


def test_broken_examples_file_is_one_line_naming_it(tmp_path, tiny_llama, registry):
    bad = _peft_adapter(tiny_llama, tmp_path / "odd-examples")
    (bad / "examples.jsonl").write_text('{"input": "a"}\n{"input": \n')
    report = import_adapters([str(bad)], tiny_llama, registry)
    assert report.rejected[str(bad)] == f"{bad}: examples.jsonl: line 2: invalid JSON (Expecting value)"


def test_pool_import_cli_rejects_each_bad_adapter_in_one_line_and_registers_the_rest(tmp_path, tiny_llama):
    """The whole CLI in a subprocess: no traceback, one `rejected:` line per bad adapter, exit 1."""
    bad = {
        "truncated": _peft_adapter(tiny_llama, tmp_path / "truncated"),
        "pickle": _peft_adapter(tiny_llama, tmp_path / "pickle", safe_serialization=False),  # made hostile below
        "nan": _peft_adapter(tiny_llama, tmp_path / "nan"),
        "dora": _peft_adapter(tiny_llama, tmp_path / "dora", use_dora=True),
        "modules_to_save": _peft_adapter(tiny_llama, tmp_path / "mts", modules_to_save=["lm_head"]),
        "embedding": _peft_adapter(tiny_llama, tmp_path / "emb", target_modules=["q_proj", "embed_tokens"]),
        "link": _peft_adapter(tiny_llama, tmp_path / "link"),
    }
    raw = (bad["truncated"] / WEIGHTS).read_bytes()
    (bad["truncated"] / WEIGHTS).write_bytes(raw[:100])
    _poison(bad["nan"], KEY, math.nan)
    pickled = bad["pickle"] / "adapter_model.bin"
    hostile_bin(pickled, torch.load(pickled, weights_only=True), tmp_path / "unpickled")
    (tmp_path / "outside.jsonl").write_text('{"input": "x"}\n')
    (bad["link"] / "examples.jsonl").symlink_to(tmp_path / "outside.jsonl")
    good = _peft_adapter(tiny_llama, tmp_path / "good", seed=1)

    cmd = [str(Path(sys.executable).parent / "lorasoup"), "pool", "import", *map(str, bad.values()), str(good),
           "--model", "tiny-llama", "--store", (tmp_path / "store").as_uri(),
           "--tracking-uri", f"sqlite:///{tmp_path / 'cli.db'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 1, shown
    assert "Traceback" not in proc.stderr and "weights_only" not in proc.stderr, shown
    assert f"registered {good} -> lorasoup.tiny-llama.good/1" in proc.stdout, shown
    assert f"imported 1, rejected {len(bad)}" in proc.stdout, shown
    rejected = [line for line in proc.stderr.splitlines() if line.startswith("rejected: ")]
    assert len(rejected) == len(bad), shown
    reasons = {"truncated": "is not a readable safetensors file", "pickle": "is a pickle that calls builtins.exec",
               "nan": f"tensor {TENSOR} has 1 non-finite values (NaN)", "dora": "DoRA (use_dora",
               "modules_to_save": "modules_to_save (modules_to_save ['lm_head']",
               "embedding": "embedding LoRA (LoRA on embedding layer model.embed_tokens",
               "link": "examples.jsonl is a symbolic link to"}
    for name, path in bad.items():
        assert any(line.startswith(f"rejected: {path}: ") and reasons[name] in line for line in rejected), (name, shown)
    assert not (tmp_path / "unpickled").exists()
