"""train_lora on the tiny models: real learning, plain-PEFT reload, base restored, determinism, NaN."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from lorasoup_core.adapters import CARD_FILE, AdapterCard, TrainingConfig, TrainingError, train_lora
from lorasoup_core.adapters.train import batch_plan, encode_examples, validation_loss

CONFIG = TrainingConfig(rank=8, alpha=16, lr=1e-2, steps=150, batch_size=8, max_length=64, seed=3)


def logits_of(base, task) -> torch.Tensor:
    enc = encode_examples(base, task, task.validation[:6], 64)
    batch = dict(enc.tensors)
    labels = batch.pop("labels")
    with torch.inference_mode():
        if base.kind == "seq2seq":
            return base.model(**batch, labels=labels).logits.clone()
        return base.model(**batch).logits.clone()


@pytest.fixture(scope="module", params=["tiny_llama", "tiny_t5"])
def trained(request, tmp_path_factory, first_letter_task):
    base = request.getfixturevalue(request.param)
    state_before = {k: v.clone() for k, v in base.model.state_dict().items()}
    logits_before = logits_of(base, first_letter_task)
    rng_before = torch.random.get_rng_state()
    out = tmp_path_factory.mktemp(f"adapter-{request.param}")
    card = train_lora(base, first_letter_task, CONFIG, out, progress=False)
    rng_kept = torch.equal(torch.random.get_rng_state(), rng_before)
    return SimpleNamespace(base=base, task=first_letter_task, card=card, out=out, state_before=state_before,
                           logits_before=logits_before, rng_kept=rng_kept)


def test_adapter_learns_the_task(trained):
    m = trained.card.metrics
    assert m["val_loss"] < 0.3 * m["val_loss_base"], m
    assert m["steps"] == CONFIG.steps and m["train_tokens"] > 0 and m["tokens_per_s"] > 0
    assert len(trained.card.loss_curve) == CONFIG.steps
    assert trained.card.loss_curve[-1] < trained.card.loss_curve[0]


def test_output_is_a_plain_peft_dir_with_card(trained):
    names = {p.name for p in trained.out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", CARD_FILE} <= names
    config = json.loads((trained.out / "adapter_config.json").read_text())
    expected = ["q_proj", "v_proj"] if trained.base.kind == "causal" else ["q", "v"]
    assert sorted(config["target_modules"]) == expected and config["r"] == CONFIG.rank
    card = AdapterCard.read(trained.out)
    assert card == trained.card
    assert card.base_fingerprint == trained.base.fingerprint
    assert card.data_fingerprint == trained.task.fingerprint
    assert card.config_fingerprint == CONFIG.fingerprint
    assert card.target_modules == expected and card.origin == "trained"
    assert abs(sum(x * x for x in card.embedding) - 1) < 1e-5


def test_plain_peft_reload_matches_the_trained_model(trained):
    """A fresh copy of the base + PeftModel.from_pretrained reproduces the validation loss measured on the
    in-training model at the end of training."""
    fresh = copy.deepcopy(trained.base.model)
    model = PeftModel.from_pretrained(fresh, str(trained.out))
    model.eval()
    enc = encode_examples(trained.base, trained.task, trained.task.validation, CONFIG.max_length)
    reloaded = validation_loss(model, enc, CONFIG.eval_batch_size)
    assert reloaded == pytest.approx(trained.card.metrics["val_loss"], abs=1e-5)


def test_base_model_is_restored(trained):
    model = trained.base.model
    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert not hasattr(model, "peft_config")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    state = model.state_dict()
    assert state.keys() == trained.state_before.keys()
    assert all(torch.equal(state[k], v) for k, v in trained.state_before.items())
    torch.testing.assert_close(logits_of(trained.base, trained.task), trained.logits_before, rtol=0, atol=0)
    assert trained.rng_kept  # training ran on a forked RNG: the caller's global RNG was not consumed


def test_same_seed_same_bytes(tiny_llama, first_letter_task, tmp_path):
    config = CONFIG.model_copy(update={"steps": 15, "dropout": 0.1})
    dirs = [tmp_path / name for name in ("a", "b", "c")]
    for d, seed in zip(dirs, (5, 5, 6), strict=True):
        train_lora(tiny_llama, first_letter_task, config.model_copy(update={"seed": seed}), d, progress=False,
                   embed_examples=0)
    data = [(d / "adapter_model.safetensors").read_bytes() for d in dirs]
    assert data[0] == data[1]
    assert data[0] != data[2]


def test_nan_loss_stops_with_a_clear_error(tiny_llama, first_letter_task, tmp_path):
    """A NaN is injected into the 13th training forward (a hook on the input embeddings, so the loss of
    step 13 is NaN on any CPU): the trainer's own finiteness check must stop at exactly that step."""
    state_before = {k: v.clone() for k, v in tiny_llama.model.state_dict().items()}
    forwards = []

    def poison(module, args, output):
        if not torch.is_grad_enabled():  # validation runs under inference_mode: leave it alone
            return None
        forwards.append(1)
        return output * float("nan") if len(forwards) == 13 else None

    hook = tiny_llama.model.get_input_embeddings().register_forward_hook(poison)
    try:
        with pytest.raises(TrainingError, match=r"'first_letter'.*nan at step 13/30"):
            train_lora(tiny_llama, first_letter_task, CONFIG.model_copy(update={"steps": 30}), tmp_path / "nan",
                       progress=False, embed_examples=0)
    finally:
        hook.remove()
    assert len(forwards) < 30  # stopped at its first check after step 13, not at the end
    assert not (tmp_path / "nan" / CARD_FILE).exists()
    assert not any(isinstance(m, LoraLayer) for m in tiny_llama.model.modules())
    state = tiny_llama.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in state_before.items())


def test_epochs_override_steps(tiny_t5, length_task, tmp_path):
    config = TrainingConfig(steps=999, epochs=0.5, batch_size=8, max_length=32, max_validation=0)
    card = train_lora(tiny_t5, length_task, config, tmp_path, progress=False, embed_examples=0)
    assert card.metrics["steps"] == 4  # ceil(0.5 * 64 / 8)
    assert "val_loss" not in card.metrics and "val_loss_base" not in card.metrics


def test_batch_plan_covers_each_epoch():
    plan = torch.stack(batch_plan(10, 4, 5, seed=0)).flatten()  # 20 indices = 2 epochs
    assert sorted(plan[:10].tolist()) == list(range(10)) and sorted(plan[10:].tolist()) == list(range(10))
    assert torch.equal(plan, torch.stack(batch_plan(10, 4, 5, seed=0)).flatten())


def test_unknown_target_module_lists_the_linear_modules(tiny_llama, first_letter_task, tmp_path):
    with pytest.raises(ValueError, match=r"nope.*q_proj"):
        train_lora(tiny_llama, first_letter_task, TrainingConfig(target_modules=["nope"]), tmp_path)


def test_default_targets_need_a_known_family():
    class Odd(torch.nn.Module):
        config = SimpleNamespace(model_type="oddball")

        def __init__(self):
            super().__init__()
            self.dense_in, self.dense_out = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"oddball.*dense_in, dense_out"):
        TrainingConfig().targets_for(Odd())


def test_datamix_trains_with_the_same_trainer(tiny_llama, first_letter_task, length_task, tmp_path: Path):
    from lorasoup_core.adapters import mix_tasks

    mixed = mix_tasks([first_letter_task, length_task], [0.5, 0.5], seed=1)
    config = CONFIG.model_copy(update={"steps": 60})
    card = train_lora(tiny_llama, mixed, config, tmp_path, progress=False, embed_examples=8)
    assert card.task == "datamix" and card.metrics["val_loss"] < 0.7 * card.metrics["val_loss_base"]


def test_learns_a_skill_task(tiny_llama, tmp_path):
    from lorasoup_core.data import load_task

    task = load_task({"source": "skills", "name": "count_items", "n_train": 200, "n_validation": 32, "n_test": 8})
    config = TrainingConfig(steps=120, lr=1e-2, batch_size=16, max_validation=32)
    card = train_lora(tiny_llama, task, config, tmp_path, progress=False, embed_examples=16)
    assert card.metrics["val_loss"] < 0.6 * card.metrics["val_loss_base"], card.metrics
    assert card.store_key == (f"adapters/tiny-llama/count_items/{task.fingerprint[:12]}-{config.fingerprint[:12]}")


def test_bf16_base_trains_fp32_lora(first_letter_task, tmp_path):
    from safetensors.torch import load_file

    from lorasoup_core.models import load_model

    base = load_model("tiny-llama", device="cpu", dtype="bfloat16")
    card = train_lora(base, first_letter_task, CONFIG.model_copy(update={"steps": 60}), tmp_path, progress=False,
                      embed_examples=0)
    assert card.metrics["val_loss"] < 0.7 * card.metrics["val_loss_base"], card.metrics
    assert {t.dtype for t in load_file(tmp_path / "adapter_model.safetensors").values()} == {torch.float32}
    assert {p.dtype for p in base.model.parameters()} == {torch.bfloat16}
