"""read_lora_factors against PEFT's own delta weights (rank/alpha patterns, rsLoRA)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from lorasoup_core.adapters import read_lora_factors


@pytest.mark.parametrize("rslora", [False, True])
def test_factors_reproduce_peft_deltas(tiny_llama, tmp_path, rslora):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_rslora=rslora,
                        rank_pattern={"layers.1.self_attn.v_proj": 2}, alpha_pattern={"q_proj": 3},
                        init_lora_weights=False)  # random B, so the deltas are not zero
    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(tiny_llama.model), config)
    model.save_pretrained(str(tmp_path))
    factors, scaling = read_lora_factors(tmp_path)
    layers = {name.removeprefix("base_model.model."): m for name, m in model.named_modules()
              if isinstance(m, LoraLayer)}
    assert factors.keys() == layers.keys() == scaling.keys() and len(factors) == 4
    assert "model.layers.0.self_attn.q_proj" in factors
    assert factors["model.layers.1.self_attn.v_proj"][0].shape == (2, 96)
    assert factors["model.layers.0.self_attn.v_proj"][0].shape == (4, 96)
    for name, (a, b) in factors.items():
        delta = model.get_submodule("base_model.model." + name).get_delta_weight("default")
        torch.testing.assert_close(scaling[name] * b @ a, delta)
    r = 4 ** 0.5 if rslora else 4
    assert scaling["model.layers.0.self_attn.q_proj"] == pytest.approx(3 / r)
    assert scaling["model.layers.0.self_attn.v_proj"] == pytest.approx(8 / r)


def test_not_an_adapter(tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json"):
        read_lora_factors(tmp_path)
