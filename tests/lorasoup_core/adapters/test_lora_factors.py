"""read_lora_factors against PEFT's own delta weights and scalings (rank/alpha patterns, rsLoRA), and the
refusal of adapters that are more than LoRA factors (DoRA, embedding LoRA, modules_to_save, ...)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer

from lorasoup_core.adapters import read_lora_factors
from lorasoup_core.adapters.factors import UnsupportedAdapter


def peft_adapter(tiny_llama, out, config):
    """A real PEFT adapter on a copy of tiny-llama, saved to `out`; returns the PEFT model."""
    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(tiny_llama.model), config)
    model.save_pretrained(str(out))
    return model


def assert_matches_peft(model, factors, scaling):
    layers = {name.removeprefix("base_model.model."): m for name, m in model.named_modules()
              if isinstance(m, LoraLayer)}
    assert factors.keys() == layers.keys() == scaling.keys()
    for name, (a, b) in factors.items():
        assert scaling[name] == pytest.approx(layers[name].scaling["default"])
        torch.testing.assert_close(scaling[name] * b @ a, layers[name].get_delta_weight("default"))


@pytest.mark.parametrize("rslora", [False, True])
def test_factors_reproduce_peft_deltas(tiny_llama, tmp_path, rslora):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_rslora=rslora,
                        rank_pattern={"layers.1.self_attn.v_proj": 2}, alpha_pattern={"q_proj": 3},
                        init_lora_weights=False)  # random B, so the deltas are not zero
    model = peft_adapter(tiny_llama, tmp_path, config)
    factors, scaling = read_lora_factors(tmp_path)
    assert_matches_peft(model, factors, scaling)
    assert len(factors) == 4 and "model.layers.0.self_attn.q_proj" in factors
    assert factors["model.layers.1.self_attn.v_proj"][0].shape == (2, 96)
    assert factors["model.layers.0.self_attn.v_proj"][0].shape == (4, 96)
    r = 4 ** 0.5 if rslora else 4
    assert scaling["model.layers.0.self_attn.q_proj"] == pytest.approx(3 / r)
    assert scaling["model.layers.0.self_attn.v_proj"] == pytest.approx(8 / r)
    assert scaling["model.layers.1.self_attn.v_proj"] == pytest.approx(8 / (2 ** 0.5 if rslora else 2))


@pytest.mark.parametrize("rslora", [False, True])
def test_regex_patterns_follow_peft(tiny_llama, tmp_path, rslora):
    """Regex keys, and two alpha keys matching one module. PEFT saves the patterns with sorted keys and takes the
    first matching key, so the saved adapter's meaning is that of PEFT loading it, which the reader must match."""
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], use_rslora=rslora,
                        rank_pattern={r"layers\.1\..*_proj": 2},
                        alpha_pattern={r"self_attn\.(q|v)_proj": 5, "layers.0.self_attn.q_proj": 64},
                        init_lora_weights=False)
    peft_adapter(tiny_llama, tmp_path, config)
    loaded = PeftModel.from_pretrained(copy.deepcopy(tiny_llama.model), str(tmp_path))
    factors, scaling = read_lora_factors(tmp_path)
    assert_matches_peft(loaded, factors, scaling)
    assert {m: a.shape[0] for m, (a, _) in factors.items()} == {
        "model.layers.0.self_attn.q_proj": 8, "model.layers.0.self_attn.v_proj": 8, "model.layers.0.mlp.down_proj": 8,
        "model.layers.1.self_attn.q_proj": 2, "model.layers.1.self_attn.v_proj": 2, "model.layers.1.mlp.down_proj": 2}
    sq = 8 ** 0.5 if rslora else 8
    assert scaling["model.layers.0.self_attn.q_proj"] == pytest.approx(64 / sq)  # the sorted-first key
    assert scaling["model.layers.0.self_attn.v_proj"] == pytest.approx(5 / sq)
    assert scaling["model.layers.0.mlp.down_proj"] == pytest.approx(16 / sq)
    assert scaling["model.layers.1.mlp.down_proj"] == pytest.approx(16 / (2 ** 0.5 if rslora else 2))


def test_rank_pattern_contradicting_the_weights_is_an_error(tiny_llama, tmp_path):
    """Overlapping rank keys whose precedence PEFT's sorted save changes: PEFT cannot load it either."""
    config = LoraConfig(r=8, target_modules=["down_proj"], rank_pattern={r"layers\.1\..*_proj": 2, "down_proj": 6})
    peft_adapter(tiny_llama, tmp_path, config)
    with pytest.raises(ValueError, match="module model.layers.1.mlp.down_proj has rank 2 but the config says 6"):
        read_lora_factors(tmp_path)


def test_not_an_adapter(tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json"):
        read_lora_factors(tmp_path)


UNSUPPORTED = {
    "dora": (LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True), ["DoRA (use_dora"]),
    "modules_to_save": (LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]),
                        ["modules_to_save (modules_to_save ['lm_head']"]),
    "embedding": (LoraConfig(r=4, target_modules=["q_proj", "embed_tokens"]),
                  ["embedding LoRA (LoRA on embedding layer model.embed_tokens"]),
    "lora_bias": (LoraConfig(r=4, target_modules=["q_proj"], lora_bias=True), ["lora_bias ("]),
    "bias": (LoraConfig(r=4, target_modules=["q_proj"], bias="all"), ["bias='all' ("]),
    "trainable_tokens": (LoraConfig(r=4, target_modules=["q_proj"], trainable_token_indices=[1, 2]),
                         ["trainable_token_indices ("]),
    "alora": (LoraConfig(r=4, target_modules=["q_proj"], alora_invocation_tokens=[5, 6]),
              ["LoRA variant alora_invocation_tokens ("]),
    "dora+modules_to_save": (LoraConfig(r=4, target_modules=["q_proj"], use_dora=True, modules_to_save=["lm_head"]),
                             ["DoRA (", "modules_to_save ("]),
    "ia3": (IA3Config(target_modules=["q_proj", "down_proj"], feedforward_modules=["down_proj"]),
            ["PEFT type IA3 (not LoRA"]),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_unsupported_adapters_are_refused_naming_adapter_and_feature(tiny_llama, tmp_path, case):
    config, features = UNSUPPORTED[case]
    peft_adapter(tiny_llama, tmp_path / case, config)
    with pytest.raises(UnsupportedAdapter) as info:
        read_lora_factors(tmp_path / case)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert msg.startswith(f"adapter '{tmp_path / case}': {features[0]}")
    assert all(f in msg for f in features) and msg.count("is not supported") == len(features)
    assert msg.endswith("lorasoup composes plain LoRA only (the update scaling * B @ A on Linear layers)")
    assert len(info.value.features) == len(features)


def test_refusal_reads_the_weights_too(tiny_llama, tmp_path):
    """A DoRA or embedding adapter whose config was edited to look plain is still refused (by its weights),
    under the name the caller gives."""
    peft_adapter(tiny_llama, tmp_path / "dora", LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    cfg = json.loads((tmp_path / "dora" / "adapter_config.json").read_text())
    (tmp_path / "dora" / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": False}))
    with pytest.raises(UnsupportedAdapter, match=r"^adapter 'my-dora': DoRA \(use_dora: a learned magnitude"):
        read_lora_factors(tmp_path / "dora", name="my-dora")
    peft_adapter(tiny_llama, tmp_path / "resized", LoraConfig(r=4, target_modules=["q_proj"]))
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "resized" / "adapter_model.safetensors")
    save_file({**weights, "base_model.model.model.embed_tokens.weight": torch.zeros(400, 96)},
              tmp_path / "resized" / "adapter_model.safetensors")
    with pytest.raises(UnsupportedAdapter, match=r"weights besides the LoRA factors \(base_model\.model\.model\."
                                                 r"embed_tokens\.weight, which a LoRA composition would drop\)"):
        read_lora_factors(tmp_path / "resized")
