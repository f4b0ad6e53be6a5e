"""train_lora refuses what would register an unusable adapter: LoRA factors beyond the import limit (even
with a finite loss), tasks with nothing to learn, and ranks no layer can hold. Divergence is injected (a
hook on the optimizer step sets a factor entry), never hoped for from a huge learning rate."""

from __future__ import annotations

import json

import pytest
import torch
from peft.tuners.lora import LoraLayer
from torch.optim.optimizer import register_optimizer_step_post_hook

from lorasoup_core.adapters import CARD_FILE, TrainingConfig, TrainingError, train_lora
from lorasoup_core.data import DataError, Example, Task, load_task
from lorasoup_core.pool.importer import MAX_ABS_WEIGHT  # the import limit, which training now applies too

CONFIG = TrainingConfig(rank=4, alpha=8, lr=1e-3, steps=30, batch_size=4, max_length=32, seed=0, max_validation=4)


def _set_factor_after_step(at: int, value: float):
    """After optimizer step `at` (1-based), set one lora_B entry to `value`. Step `at`'s own loss was computed
    before, so every loss the trainer has read back by then is untouched: only the weight check can fire."""
    steps: list[int] = []

    def hook(opt, args, kwargs):
        steps.append(1)
        if len(steps) == at:
            b = next(p for p in opt.param_groups[0]["params"] if p.shape[1] == CONFIG.rank)  # lora_B [out, r]
            with torch.no_grad():
                b[0, 0] = value

    return register_optimizer_step_post_hook(hook), steps


@pytest.mark.parametrize(("at", "value", "shown"), [(10, 3e12, "3e+12"), (20, 2 * MAX_ABS_WEIGHT, "2e+04"),
                                                    (10, float("inf"), "inf"), (30, float("nan"), "nan")])
def test_diverged_factor_stops_at_the_sync_step(tiny_llama, first_letter_task, tmp_path, at, value, shown):
    state_before = {k: v.clone() for k, v in tiny_llama.model.state_dict().items()}
    handle, steps = _set_factor_after_step(at, value)
    try:
        with pytest.raises(TrainingError) as err:
            train_lora(tiny_llama, first_letter_task, CONFIG, tmp_path / "out", progress=False, embed_examples=0)
    finally:
        handle.remove()
    message = str(err.value)
    assert "\n" not in message and message.startswith("task 'first_letter': LoRA weights diverged")
    assert f"max |w| = {shown} in model.layers." in message and ".lora_B, over the limit of 10000" in message
    assert f"by step {at}/30; lower the learning rate (lr=0.001)" in message
    assert len(steps) == at  # stopped at that sync: not one more step
    assert not (tmp_path / "out").exists()  # nothing written
    assert not any(isinstance(m, LoraLayer) for m in tiny_llama.model.modules())
    state = tiny_llama.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in state_before.items())  # the base, bit-identical


def test_a_factor_at_the_limit_is_kept(tiny_llama, first_letter_task, tmp_path):
    handle, _ = _set_factor_after_step(10, MAX_ABS_WEIGHT)  # the limit itself is allowed, as at import
    try:
        card = train_lora(tiny_llama, first_letter_task, CONFIG.model_copy(update={"steps": 10}), tmp_path / "out",
                          progress=False, embed_examples=0)
    finally:
        handle.remove()
    assert card.metrics["steps"] == 10 and (tmp_path / "out" / CARD_FILE).is_file()


def test_all_empty_targets_are_refused_naming_task_and_file(tiny_llama, tmp_path):
    examples = [Example(w, "") for w in ("apple", "river", "stone")] + [Example("cloud", "  ")]
    task = Task("blank", examples, [], [], source=str(tmp_path / "blank.jsonl"),
                files={"train": str(tmp_path / "blank.jsonl")})
    with pytest.raises(DataError) as err:
        train_lora(tiny_llama, task, CONFIG, tmp_path / "out", progress=False, embed_examples=0)
    assert str(err.value).startswith(f"{tmp_path / 'blank.jsonl'}: task 'blank': all 4 train examples have an "
                                     "empty target")
    assert not (tmp_path / "out").exists()


def test_one_real_target_is_enough(tiny_llama, tmp_path):
    task = Task("mostly_blank", [Example("apple", ""), Example("river", "r")] * 2, [], [])
    card = train_lora(tiny_llama, task, CONFIG.model_copy(update={"steps": 2}), tmp_path / "out", progress=False,
                      embed_examples=0)
    assert card.metrics["steps"] == 2


def test_rows_dropped_as_duplicates_are_named_when_no_train_example_is_left(tiny_llama, tmp_path):
    path = tmp_path / "same.jsonl"
    path.write_text("".join(json.dumps({"input": "same question", "target": str(i)}) + "\n" for i in range(20)))
    task = load_task({"source": "jsonl", "name": "same", "path": str(path)})
    with pytest.raises(DataError) as err:
        train_lora(tiny_llama, task, CONFIG, tmp_path / "out", progress=False, embed_examples=0)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: task 'same' has no train examples")
    assert f"19 of 20 rows of {path} were dropped as duplicates of one input" in message


@pytest.mark.parametrize("rank", [49, 4096, 100_000_000])
def test_rank_above_the_smallest_adapted_layer_is_refused_before_allocating(tiny_llama, first_letter_task, tmp_path,
                                                                            rank):
    """tiny-llama's v_proj maps 96 features to 48: a rank above 48 adds nothing (r = 1e8 would ask the
    allocator for terabytes)."""
    with pytest.raises(ValueError) as err:
        train_lora(tiny_llama, first_letter_task, CONFIG.model_copy(update={"rank": rank}), tmp_path / "out",
                   progress=False, embed_examples=0)
    assert str(err.value) == (f"task 'first_letter': rank {rank} is above 48, the most a LoRA on v_proj (96 in, "
                              "48 out features) can use; set rank to at most 48")
    assert not any(isinstance(m, LoraLayer) for m in tiny_llama.model.modules())


def test_rank_at_the_layer_size_trains(tiny_llama, first_letter_task, tmp_path):
    card = train_lora(tiny_llama, first_letter_task, CONFIG.model_copy(update={"rank": 48, "steps": 2}),
                      tmp_path / "out", progress=False, embed_examples=0)
    assert card.rank == 48
