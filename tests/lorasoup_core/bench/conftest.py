"""Random-init PEFT adapters for the tiny models (adapter mode must run and leave the base clean)."""

import copy

import pytest
import torch


def save_random_adapter(loaded, path, seed=0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    causal = loaded.kind == "causal"
    config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"] if causal else ["q", "v"],
                        task_type="CAUSAL_LM" if causal else "SEQ_2_SEQ_LM", init_lora_weights=False)
    # on a copy: the session's shared base must never see the adapter's layers
    get_peft_model(copy.deepcopy(loaded.model), config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def random_adapters(tiny_llama, tiny_t5, tmp_path_factory):
    root = tmp_path_factory.mktemp("random_adapters")
    return {"causal": save_random_adapter(tiny_llama, root / "llama-lora"),
            "seq2seq": save_random_adapter(tiny_t5, root / "t5-lora", seed=1)}
