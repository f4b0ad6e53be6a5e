"""Exported adapters load in Hugging Face tools without lorasoup: adapter_config.json names a base they
resolve (the converted HF directory, or the hub id), while the card keeps lorasoup's spec."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig
from safetensors.torch import save_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.bench.harness import adapter_model
from lorasoup_core.compose import Candidate, applied, compose, export_peft
from lorasoup_core.models import load_model

IDS = torch.randint(0, 250, (2, 16), generator=torch.Generator().manual_seed(0))


def _auto_logits(out):
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(out)).eval()  # the base from base_model_name_or_path
    with torch.no_grad():
        return model(IDS).logits


def _lorasoup_logits(base, out):
    """lorasoup's own path: the harness's PeftModel on the loaded base (unmerged)."""
    with torch.no_grad(), adapter_model(base, out, merge=False) as model:
        return model(IDS).logits


def _base_logits(base):
    with torch.no_grad():
        return base.model(IDS).logits


def _config(out):
    return json.loads((out / "adapter_config.json").read_text())


@pytest.fixture(scope="module")
def saved_tiny(tiny_llama, tmp_path_factory):
    """tiny-llama saved as a Hugging Face directory and loaded back by its path."""
    path = tmp_path_factory.mktemp("tiny_dir") / "tiny-llama-hf"
    tiny_llama.model.save_pretrained(path)
    tiny_llama.tokenizer.save_pretrained(path)
    return load_model(str(path), device="cpu")


def test_automodel_loads_an_export_on_a_local_hf_directory(saved_tiny, llama_random, target, tmp_path):
    task, shots = target
    comp = compose("uniform", saved_tiny, [Candidate(n, p) for n, p in llama_random.items()], task, shots)
    out = export_peft(comp, tmp_path / "adapter")
    assert _config(out)["base_model_name_or_path"] == saved_tiny.hf_path
    card = AdapterCard.read(out)
    assert card.base_model == saved_tiny.spec and card.base_model_path == saved_tiny.hf_path
    assert card.lineage["export"]["base_ref"] == "path" and card.base_model_hub_id is None
    auto = _auto_logits(out)
    assert not torch.allclose(auto, _base_logits(saved_tiny), atol=1e-2)  # the adapter is applied, not dropped
    torch.testing.assert_close(auto, _lorasoup_logits(saved_tiny, out), rtol=1e-5, atol=1e-5)
    with torch.no_grad(), applied(saved_tiny, comp.factors):
        torch.testing.assert_close(auto, saved_tiny.model(IDS).logits, rtol=1e-4, atol=1e-4)
    # lorasoup itself still resolves the base from the card's spec
    assert load_model(card.base_model, device="cpu").fingerprint == card.base_fingerprint


def test_base_ref_choices(tiny_llama, saved_tiny, llama_random, target, tmp_path):
    task, shots = target
    comp = compose("uniform", tiny_llama, [Candidate(n, p) for n, p in llama_random.items()], task, shots)
    out = export_peft(comp, tmp_path / "preset")  # a random-init preset has no directory and no hub id
    assert _config(out)["base_model_name_or_path"] == "tiny-llama"
    assert AdapterCard.read(out).lineage["export"]["base_ref"] == "spec"
    with pytest.raises(ValueError, match="no known hub id"):
        export_peft(comp, tmp_path / "x", base_ref="hub_id")
    both = dataclasses.replace(comp, base=dataclasses.replace(saved_tiny, hub_id="someone/tiny-llama"))
    out = export_peft(both, tmp_path / "hub", base_ref="hub_id")
    card = AdapterCard.read(out)
    assert _config(out)["base_model_name_or_path"] == "someone/tiny-llama" == card.base_model_hub_id
    assert card.base_model_path == saved_tiny.hf_path and card.lineage["export"]["base_ref"] == "hub_id"
    assert _config(export_peft(both, tmp_path / "default"))["base_model_name_or_path"] == saved_tiny.hf_path
    with pytest.raises(ValueError, match="base_ref must be"):
        export_peft(both, tmp_path / "bad", base_ref="spec")


def _random_lora(base, out, rank, seed):
    """A PEFT LoRA directory with random factors on every q_proj / v_proj (no model copy needed)."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, mod in base.model.named_modules():
        if name.endswith(("q_proj", "v_proj")):
            tensors[f"base_model.model.{name}.lora_A.weight"] = torch.randn(rank, mod.in_features, generator=g) * 0.05
            tensors[f"base_model.model.{name}.lora_B.weight"] = torch.randn(mod.out_features, rank, generator=g) * 0.05
    LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"]).save_pretrained(str(out))
    save_file(tensors, str(out / "adapter_model.safetensors"))
    return Candidate(out.name, out)


@pytest.mark.slow
def test_automodel_loads_an_export_on_the_real_smollm2(smollm2, target, tmp_path):
    task, shots = target
    assert smollm2.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    cands = [_random_lora(smollm2, tmp_path / f"c{i}", 8, i) for i in range(3)]
    comp = compose("linear", smollm2, cands, task, shots, {"weights": [0.6, -0.3, 0.9]})
    out = export_peft(comp, tmp_path / "adapter")
    assert _config(out)["base_model_name_or_path"] == smollm2.hf_path
    card = AdapterCard.read(out)
    assert card.base_model == "smollm2-135m" and card.base_model_hub_id == smollm2.hub_id
    assert (Path(card.base_model_path) / "config.json").is_file()
    auto = _auto_logits(out)
    assert not torch.allclose(auto, _base_logits(smollm2), atol=1e-2)  # the adapter is applied, not dropped
    torch.testing.assert_close(auto, _lorasoup_logits(smollm2, out), rtol=1e-4, atol=1e-4)
    capped = export_peft(comp, tmp_path / "capped", svd_rank=16)  # rank 24 -> vLLM's default max LoRA rank
    assert _config(capped)["r"] == 16 and 0 < AdapterCard.read(capped).lineage["export"]["truncation_error"] < 1


def _interop_script():
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "lm_eval_interop.py"
    spec = importlib.util.spec_from_file_location("lm_eval_interop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lm_eval_interop_skips_without_lm_eval_and_writes_a_custom_task(monkeypatch, capsys, tmp_path):
    import importlib.util

    import yaml

    script = _interop_script()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    assert script.main(["--adapter", str(tmp_path)]) == {"skipped": "lm_eval not installed: pip install lm-eval"}
    assert json.loads(capsys.readouterr().out) == {"skipped": "lm_eval not installed: pip install lm-eval"}
    preds = [{"prompt": "not True is\nAnswer:", "target": "False"}, {"prompt": "True is\nAnswer:", "target": "True"}]
    path = script.write_task("lorasoup_bbh_x", preds, tmp_path / "tasks")
    config = yaml.safe_load(path.read_text())
    assert config["task"] == "lorasoup_bbh_x" and config["output_type"] == "generate_until"
    assert config["generation_kwargs"] == {"until": [], "max_gen_toks": 24, "do_sample": False}  # lorasoup's BBH budget
    assert config["filter_list"][0]["filter"][0]["regex_pattern"] == script.cut_pattern(["\n"])  # lorasoup's stop cut
    rows = Path(config["dataset_kwargs"]["data_files"]["test"]).read_text().splitlines()
    assert [json.loads(r) for r in rows] == preds
