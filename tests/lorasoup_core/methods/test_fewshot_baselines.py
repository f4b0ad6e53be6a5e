"""The few-shot tuning baselines (lora-fewshot, ia3-fewshot, full-fewshot): they train on the target's shots
and nothing else, choose lr and steps on held-out shots, improve on their untrained start, leave the shared
base exactly as it was, and refuse a bad setting before anything trains."""

from __future__ import annotations

import pytest
import torch

from lorasoup_core.adapters import AdapterCard, TrainingConfig
from lorasoup_core.adapters import train as train_module
from lorasoup_core.adapters.train import encode_examples, validation_loss
from lorasoup_core.bench.harness import adapter_model
from lorasoup_core.config import StorageConfig
from lorasoup_core.data import load_task
from lorasoup_core.methods import METHODS, MethodCall, MethodEnv, MethodError, settings_for
from lorasoup_core.methods.fewshot import choose, folds_of
from lorasoup_core.tracking import RunContext

BASELINES = {"lora-fewshot": "lora", "ia3-fewshot": "ia3", "full-fewshot": "full"}
# a grid that trains enough to move a tiny random model (the defaults are for SmolLM2-135M)
GRID = {"lora-fewshot": {"lrs": [1e-3, 1e-2], "steps": [3, 6]}, "ia3-fewshot": {"lrs": [3e-2, 1e-1], "steps": [3, 6]},
        "full-fewshot": {"lrs": [1e-4, 1e-3], "steps": [3, 6]}}


@pytest.fixture(scope="module")
def target():
    task = load_task({"source": "skills", "name": "count_then_add", "n_train": 40, "n_validation": 8, "n_test": 8})
    return task, task.draw_shots(5, 0)


def _call(name: str, task, shots, **settings) -> MethodCall:
    return MethodCall(name, name, settings_for(name, {**GRID[name], **settings}), seed=0, target=task, shots=shots,
                      pool_training=TrainingConfig(rank=4, alpha=8))


def _env(tmp_path) -> MethodEnv:
    return MethodEnv(RunContext("fewshot-tests", f"sqlite:///{tmp_path / 'mlflow.db'}"), StorageConfig())


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", list(BASELINES))
def test_a_baseline_trains_on_the_shots_only_and_beats_its_untrained_start(name, target, tiny_llama, tmp_path,
                                                                          monkeypatch):
    task, shots = target
    seen: list[str] = []
    encode = train_module.encode

    def spy(kind, tokenizer, prompts, targets, max_length):  # every text that reaches the trainer
        seen.extend(prompts)
        return encode(kind, tokenizer, prompts, targets, max_length)

    monkeypatch.setattr(train_module, "encode", spy)
    before = _snapshot(tiny_llama.model)
    out = METHODS.get(name).run(tiny_llama, _call(name, task, shots), _env(tmp_path))
    monkeypatch.undo()

    allowed = {task.prompt(s) for s in shots}
    leaked = [p for p in set(seen) if p not in allowed]
    assert seen and not leaked, f"{len(leaked)} prompt(s) that are no shot reached the trainer: {leaked[:2]}"
    assert allowed <= set(seen)  # the final fit saw every shot
    # the shared base is exactly as it was (full fine-tuning copies its weights back bit for bit)
    after = dict(tiny_llama.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert not any(hasattr(m, "base_layer") for m in tiny_llama.model.modules())

    card = AdapterCard.read(out.adapter_dir)
    assert (card.kind, card.origin, card.name) == (BASELINES[name], "tuned", f"{task.name}-{name}")
    choice = out.diagnostics["choice"]
    assert card.metrics["steps"] == choice["steps"] and card.training["lr"] == choice["lr"]
    assert out.trainable_params == card.metrics["trainable_params"] > 0
    # the tuned model's loss on the shots is below the untrained base's. Both are computed the same way in
    # float32; the fit moves the loss by far more than rounding (~1e-6 relative), so 1e-3 cannot be luck.
    enc = encode_examples(tiny_llama, task, shots, 256)
    untrained = validation_loss(tiny_llama.model, enc, 8)
    with adapter_model(tiny_llama, out.adapter_dir) as model:
        tuned = validation_loss(model, enc, 8)
    assert tuned < untrained - 1e-3, (tuned, untrained)
    assert all(torch.equal(before[n], p) for n, p in tiny_llama.model.named_parameters())


def test_the_choice_is_the_grid_point_with_the_lowest_held_out_loss(target, tiny_llama):
    task, shots = target
    call = _call("lora-fewshot", task, shots, folds=0)
    choice = choose(tiny_llama, call, "lora")
    assert set(choice.losses) == {(lr, s) for lr in (1e-3, 1e-2) for s in (3, 6)}
    assert choice.losses[(choice.lr, choice.steps)] == min(choice.losses.values())
    # leave-one-out: five folds, each holding out one shot, every shot held out once
    splits = folds_of(shots, 0)
    assert [len(h) for _, h in splits] == [1] * 5 and sorted(h[0].input for _, h in splits) == sorted(s.input for s in shots)
    assert [len(h) for _, h in folds_of(shots, 2)] == [3, 2]


@pytest.mark.parametrize(("values", "message"), [
    ({"lrs": [0.0]}, "lrs.0: Input should be greater than 0"),
    ({"lrs": []}, "lrs: List should have at least 1 item"),
    ({"steps": [0]}, "steps.0: Input should be greater than 0"),
    ({"steps": []}, "steps: List should have at least 1 item"),
    ({"folds": 1}, "folds 1 holds nothing out"),
])
def test_a_bad_setting_is_one_error_naming_it(values, message):
    for name in BASELINES:
        with pytest.raises(MethodError, match=message.replace(".", r"\.")) as err:
            settings_for(name, values)
        assert name in str(err.value)


def test_a_bad_setting_or_unknown_baseline_in_a_config_fails_at_load(tmp_path):
    import yaml

    from lorasoup_core.config import ConfigError
    from lorasoup_core.experiment import load_experiment

    cfg = {"name": "bad", "model": {"spec": "tiny-llama"}, "pool": {"tasks": ["skills:add"]},
           "targets": [{"task": "skills:count_then_add", "shots": 5}], "methods": ["lora-fewshot", "zero-shot"],
           "compose": {"lora-fewshot": {"lrs": [0]}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"lora-fewshot.*lrs\.0: Input should be greater than 0"):
        load_experiment(path)
    path.write_text(yaml.safe_dump({**cfg, "methods": ["lora-fewshots"], "compose": {}}))
    with pytest.raises(ConfigError, match=r"unknown method 'lora-fewshots'"):
        load_experiment(path)


def test_two_shots_are_the_least_that_can_choose(target, tiny_llama):
    task, shots = target
    with pytest.raises(MethodError, match="1 shot\\(s\\) cannot be split"):
        choose(tiny_llama, _call("lora-fewshot", task, shots[:1]), "lora")
