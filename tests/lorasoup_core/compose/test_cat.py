"""CAT with LoRA Soups' protocol (trained on a data mix of the candidates' training sets, best checkpoint by
validation loss) and `cat_fewshot` (the few-shot fit, exporting its best evaluated coefficients)."""

import math

import pytest
import torch

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import (
    Candidate,
    CompositionError,
    Engine,
    FewShot,
    Stack,
    applied,
    compose,
    settings_for,
)
from lorasoup_core.compose import cat as cat_module
from lorasoup_core.data import load_task
from lorasoup_core.data.procedural import COMPOSED_TASKS
from lorasoup_core.data.prompts import IGNORE

TARGET = "count_then_add"
SKILLS = list(COMPOSED_TASKS[TARGET])  # count_items, add: the skills the target is built from
DISTRACTOR = "uppercase"
# Tiny run of the paper's protocol: 64 mixed examples, 8 steps of 8, 1 epoch; the lr is scaled up from the
# paper's 1e-4 so 8 steps move the coefficients; uniform init so any move off 1/n is the training's.
SETTINGS = {"init": "uniform", "lr": 0.5, "warmup": 2, "batch_size": 8, "mix_size": 64, "eval_every": 2,
            "validation": "splits", "proportions": {s: 1.0 for s in SKILLS}}


def _task(name, n_train=200):
    return load_task({"source": "skills", "name": name, "n_train": n_train, "n_validation": 16, "n_test": 16})


@pytest.fixture(scope="module")
def setup(tiny_llama, tiny_pool):
    cands = [Candidate(s, tiny_pool[s], AdapterCard.read(tiny_pool[s])) for s in [*SKILLS, DISTRACTOR]]
    target = _task(TARGET, 20)
    # the distractor has proportion 0 (left out of `proportions`), so it needs no training data
    return cands, target, target.train[:5], {s: _task(s) for s in SKILLS}


@pytest.fixture(scope="module")
def run(tiny_llama, setup):
    cands, target, shots, train_data = setup
    return compose("cat", tiny_llama, cands, target, shots, SETTINGS, seed=3, train_data=train_data)


def _validation(base, names, train_data, settings, seed=3):
    cfg = settings_for("cat", settings)
    mix, _, val = cat_module.mix_split(names, train_data, cfg, seed)
    return cat_module.encode_mix(base, mix, val, cfg.loss_tokens, cfg.max_length)


def test_defaults_are_the_papers():
    cfg = settings_for("cat")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.warmup, cfg.weight_decay, cfg.max_grad_norm) == (1, 6, 1e-4, 100,
                                                                                                     0, 1.0)
    assert (cfg.dropout, cfg.loss_tokens, cfg.init, cfg.schedule) == (0.05, "all", "random", "linear")
    assert (cfg.validation, cfg.val_size, cfg.eval_every, cfg.max_length) == ("holdout", 120, 80, 256)


def test_cat_on_the_skill_mix_moves_layerwise_coefficients_and_beats_uniform(tiny_llama, setup, run):
    cands, target, shots, train_data = setup
    w = torch.tensor(list(run.weights.values()))  # [modules, candidates]
    n = len(cands)
    # (a) layer-wise coefficients: off uniform, and not the same in every module
    assert (w - 1 / n).abs().max() > 0.05, w
    assert w.std(0).max() > 0.01, w
    torch.testing.assert_close(w.sum(1), torch.ones(len(w)))  # softmax over the adapters of each module
    d = run.diagnostics
    assert d["coef_spread_init"] == 0 and d["coef_spread_best"] > 0.05
    assert len(run.trace) == d["steps"] == 8 and d["n_train"] == 64 and d["n_validation"] == 32
    assert d["mix"] == "mix:count_items=1,add=1"
    # (b) on the same validation examples, CAT's exported coefficients beat the uniform merge
    val = _validation(tiny_llama, [c.name for c in cands], train_data, SETTINGS)
    uniform = compose("uniform", tiny_llama, cands, target, shots)
    with applied(tiny_llama, uniform.factors):
        uniform_loss = cat_module.mix_loss(tiny_llama, val)
    with applied(tiny_llama, run.factors):
        cat_loss = cat_module.mix_loss(tiny_llama, val)
    assert cat_loss < uniform_loss - 0.05, (cat_loss, uniform_loss)
    assert abs(d["val_loss_uniform"] - uniform_loss) < 1e-5
    # (c) the exported coefficients are the best validation checkpoint's
    steps, losses = zip(*d["val_curve"], strict=True)
    assert list(steps) == [2, 4, 6, 8]
    assert d["best_val_loss"] == min(losses) and d["best_step"] == steps[losses.index(min(losses))]
    assert abs(cat_loss - d["best_val_loss"]) < 1e-5


def test_exports_the_best_checkpoint_not_the_last(tiny_llama, setup, monkeypatch):
    """Validation scripted so the first checkpoint is best: the export is that step's coefficients (a run
    stopped there, same seed and a constant lr, ends on them), not the last step's."""
    cands, target, shots, train_data = setup
    settings = {**SETTINGS, "schedule": "constant", "warmup": 0, "mix_size": 32, "eval_every": 2}
    real, calls = cat_module.mix_loss, []

    def scripted(base, enc, batch_size=8):
        calls.append(1)  # calls: uniform, init, then steps 2 and 4
        return real(base, enc, batch_size) - (10.0 if len(calls) == 3 else 0.0)

    monkeypatch.setattr(cat_module, "mix_loss", scripted)
    full = compose("cat", tiny_llama, cands, target, shots, settings, seed=3, train_data=train_data)
    monkeypatch.undo()
    assert full.diagnostics["best_step"] == 2 and full.diagnostics["steps"] == 4
    assert full.diagnostics["coef_spread_best"] != full.diagnostics["coef_spread_final"]
    stopped = compose("cat", tiny_llama, cands, target, shots, {**settings, "epochs": 0.5}, seed=3,
                      train_data=train_data)
    assert stopped.diagnostics["steps"] == 2
    torch.testing.assert_close(torch.tensor(list(full.weights.values())),
                               torch.tensor(list(stopped.weights.values())), rtol=0, atol=1e-6)


def test_missing_training_data_is_one_clear_error(tiny_llama, setup):
    cands, target, shots, train_data = setup
    some = {SKILLS[0]: train_data[SKILLS[0]], DISTRACTOR: train_data[SKILLS[0]]}  # none for "add"
    with pytest.raises(CompositionError, match=r"there is none for 'add';.*'cat_fewshot', which fits on the target's "
                       r"shots instead"):
        compose("cat", tiny_llama, cands, target, shots, {}, train_data=some)
    with pytest.raises(CompositionError, match="proportions name no candidate: nope"):
        compose("cat", tiny_llama, cands, target, shots, {"proportions": {"nope": 1}}, train_data=train_data)


def test_all_token_labels_and_per_adapter_dropout(tiny_llama, llama_mixed_ranks, setup):
    _, _, _, train_data = setup
    names = list(SKILLS)
    all_tok = _validation(tiny_llama, names, train_data, SETTINGS).tensors
    target_tok = _validation(tiny_llama, names, train_data, {**SETTINGS, "loss_tokens": "target"}).tensors
    real = all_tok["attention_mask"] == 1
    assert torch.equal(all_tok["labels"][real], all_tok["input_ids"][real]) and (all_tok["labels"][~real] == IGNORE).all()
    assert ((target_tok["labels"] != IGNORE).sum(1) < real.sum(1)).all()  # the answer only: fewer tokens
    # the engine's dropout acts on the LoRA input in training mode only
    stack = Stack(tiny_llama, [Candidate(n, p) for n, p in llama_mixed_ranks.items()])
    ids = torch.randint(0, 250, (2, 12))
    w = torch.rand(len(stack.modules), len(stack), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with applied(tiny_llama, stack.exact(w)):
            want = tiny_llama.model(ids).logits
        with Engine(tiny_llama, stack, "exact", 1, "dense", dropout=0.5) as engine:
            assert not any(s.dense for s in engine.slots.values())  # dropout needs the separate LoRA input
            engine.set(w[None])
            evaluated = tiny_llama.model(ids).logits
            engine.train(True)
            trained = tiny_llama.model(ids).logits
    torch.testing.assert_close(evaluated, want, rtol=1e-5, atol=1e-5)
    assert (trained - want).abs().max() > 1e-3


def test_cat_fewshot_keeps_the_old_numbers_and_exports_its_best(tiny_llama, setup):
    cands, target, shots, _ = setup
    comp = compose("cat_fewshot", tiny_llama, cands, target, shots, {"steps": 8})
    # the old `cat`, step for step: Adam (lr 0.05) on softmax logits from zeros, loss before each step
    stack = Stack(tiny_llama, cands)
    fewshot = FewShot(tiny_llama, target, shots)
    params = torch.zeros(len(stack.modules), len(stack), requires_grad=True)
    opt = torch.optim.Adam([params], lr=0.05)
    trace, coefs = [], []
    with Engine(tiny_llama, stack, "exact", 1, "auto", fewshot.tokens_per_composition) as engine:
        for _ in range(8):
            w = torch.softmax(params, -1)
            engine.set(w[None])
            loss = fewshot.loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(loss.item())
            coefs.append(w.detach())
    assert comp.trace == trace
    best = min(range(8), key=trace.__getitem__)
    assert comp.diagnostics["best_step"] == best and math.isclose(comp.diagnostics["best_loss"], trace[best])
    torch.testing.assert_close(torch.tensor(list(comp.weights.values())), coefs[best], rtol=0, atol=0)
    assert abs(comp.few_shot_loss - min(comp.trace)) < 1e-5
