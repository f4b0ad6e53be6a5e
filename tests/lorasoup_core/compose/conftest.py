import copy

import pytest
import torch

from lorasoup_core.data import load_task

T5_SKILLS = ["uppercase", "reverse_list", "add"]


def skill_task(name):
    return load_task({"source": "skills", "name": name, "n_train": 200, "n_validation": 8, "n_test": 8})


@pytest.fixture(scope="session")
def t5_pool(tiny_t5, tmp_path_factory):
    """Candidates trained on tiny-t5 for three upstream skills (the seq2seq composition tests)."""
    from lorasoup_core.adapters import AdapterCard, TrainingConfig, train_lora
    from lorasoup_core.compose import Candidate

    root = tmp_path_factory.mktemp("t5_pool")
    cfg = TrainingConfig(steps=80, lr=1e-2, batch_size=16, max_validation=8)
    for skill in T5_SKILLS:
        train_lora(tiny_t5, skill_task(skill), cfg, root / skill, progress=False, embed_examples=8)
    return [Candidate(s, root / s, AdapterCard.read(root / s)) for s in T5_SKILLS]


@pytest.fixture(scope="module")
def target():
    """count_items with 5 shots: the few-shot target of the composition tests."""
    task = load_task({"source": "skills", "name": "count_items", "n_train": 20, "n_validation": 0, "n_test": 8})
    return task, task.train[:5]


def random_adapters(base, out, n, ranks=None, seed=0):
    """n PEFT adapters with random (non-zero) factors on q/v, written under out; {name: dir}."""
    from peft import LoraConfig, get_peft_model

    targets = ["q", "v"] if base.kind == "seq2seq" else ["q_proj", "v_proj"]
    paths = {}
    for i in range(n):
        torch.manual_seed(seed + i)
        r = (ranks or [4] * n)[i]
        model = get_peft_model(copy.deepcopy(base.model), LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets,
                                                                     init_lora_weights=False))
        paths[f"r{i}"] = out / f"r{i}"
        model.save_pretrained(str(paths[f"r{i}"]))
    return paths


@pytest.fixture(scope="module")
def llama_random(tiny_llama, tmp_path_factory):
    return random_adapters(tiny_llama, tmp_path_factory.mktemp("llama_random"), 4, ranks=[4, 4, 4, 4])


@pytest.fixture(scope="module")
def llama_mixed_ranks(tiny_llama, tmp_path_factory):
    return random_adapters(tiny_llama, tmp_path_factory.mktemp("llama_mixed"), 3, ranks=[2, 4, 8], seed=10)


@pytest.fixture(scope="module")
def t5_random(tiny_t5, tmp_path_factory):
    return random_adapters(tiny_t5, tmp_path_factory.mktemp("t5_random"), 3, ranks=[4, 4, 4], seed=20)
