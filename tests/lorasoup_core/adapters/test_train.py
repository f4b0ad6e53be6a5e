import copy

import numpy as np
import pytest
import torch

from lorasoup_core.adapters import AdapterCard, TrainingConfig, TrainingError, mix_tasks, task_embedding, train_lora
from lorasoup_core.adapters.factors import read_lora_factors
from lorasoup_core.data import load_task
from lorasoup_core.data.prompts import encode

FAST = TrainingConfig(steps=120, lr=1e-2, batch_size=16, max_validation=32)


def _task(name="count_items"):
    return load_task({"source": "skills", "name": name, "n_train": 200, "n_validation": 32, "n_test": 8})


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_adapter_beats_base_and_reloads_through_plain_peft(request, fixture, tmp_path):
    from peft import PeftModel

    base = request.getfixturevalue(fixture)
    task = _task()
    probe = encode(base.kind, base.tokenizer, [task.prompt(e) for e in task.test], [e.target for e in task.test])
    with torch.no_grad():
        before = base.model(**probe).logits
    card = train_lora(base, task, FAST, tmp_path / "a", progress=False)
    assert card.metrics["val_loss"] < 0.6 * card.metrics["val_loss_base"], card.metrics
    assert (tmp_path / "a" / "adapter_config.json").is_file() and (tmp_path / "a" / "adapter_model.safetensors").is_file()

    # the shared base is untouched
    with torch.no_grad():
        assert torch.equal(base.model(**probe).logits, before)
    assert not any("lora" in n for n, _ in base.model.named_modules())

    # plain PEFT loads it on a fresh copy of the base; its validation loss is the card's
    from lorasoup_core.adapters import validation_loss
    from lorasoup_core.adapters.train import encode_examples

    peft = PeftModel.from_pretrained(copy.deepcopy(base.model), str(tmp_path / "a")).eval()
    val = validation_loss(peft, base.kind, encode_examples(base, task, "validation", FAST.max_length, 32), 16,
                          base.device)
    assert val == pytest.approx(card.metrics["val_loss"], abs=1e-5)
    assert AdapterCard.read(tmp_path / "a") == card
    assert card.store_key.startswith(f"adapters/{base.spec}/count_items/")


def test_same_seed_same_adapter_and_factors(tiny_llama, tmp_path):
    task = _task("first_item")
    cfg = FAST.model_copy(update={"steps": 20})
    train_lora(tiny_llama, task, cfg, tmp_path / "a", progress=False)
    train_lora(tiny_llama, task, cfg, tmp_path / "b", progress=False)
    fa, sa = read_lora_factors(tmp_path / "a")
    fb, _ = read_lora_factors(tmp_path / "b")
    assert fa.keys() == fb.keys() and len(fa) == 4  # 2 layers x (q_proj, v_proj)
    for k in fa:
        assert torch.equal(fa[k][0], fb[k][0]) and torch.equal(fa[k][1], fb[k][1])
        assert fa[k][0].shape == (8, 96) and fa[k][1].shape[1] == 8
    assert set(sa.values()) == {16 / 8}


def test_nan_loss_stops_with_clear_error(tiny_llama, tmp_path):
    with pytest.raises(TrainingError, match=r"task 'add': loss is (nan|inf) at step \d+"):
        train_lora(tiny_llama, _task("add"), FAST.model_copy(update={"lr": 1e12, "steps": 50}), tmp_path / "x",
                   progress=False)
    assert not any("lora" in n for n, _ in tiny_llama.model.named_modules())


def test_mix_and_embeddings(tiny_llama):
    a, b = _task("add"), _task("sort_words")
    mixed = mix_tasks([a, b], [3, 1], seed=0)
    from_a = sum(e.input.startswith("add ") for e in mixed.train)
    assert len(mixed.train) == 200 and 140 <= from_a <= 160 and mixed.template == "{input}"
    ea, eb = np.array(task_embedding(tiny_llama, a, n=32)), np.array(task_embedding(tiny_llama, b, n=32))
    assert ea.shape == (96,) and abs(np.linalg.norm(ea) - 1) < 1e-5
    assert np.dot(ea, eb) < 0.999 and np.allclose(ea, task_embedding(tiny_llama, a, n=32))
    with pytest.raises(ValueError, match="proportions"):
        mix_tasks([a, b], [1])
