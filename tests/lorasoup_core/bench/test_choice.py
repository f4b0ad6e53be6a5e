"""Multiple-choice scoring: option log-likelihoods against a plain per-option forward, and agreement with
greedy generation where the greedy answer is one of the options."""

import pytest
import torch

from lorasoup_core.bench import evaluate_task, generate
from lorasoup_core.bench.choice import _continuation_ids, choose, closed_answer_set, option_logliks
from lorasoup_core.data import Example, Task

PROMPTS = ["Q: is the sky blue?\nA:", "Q: 1+1\nA:", "A much longer prompt that goes on and on. Q: yes or no?\nA: "]
OPTIONS = ["yes", "no", "maybe so"]


def reference_causal(loaded, prompt, option):
    """log P(option | prompt): one unpadded forward over prompt + option, summed over the option's tokens."""
    tok = loaded.tokenizer
    context = tok(prompt)["input_ids"]
    cont = _continuation_ids(tok, prompt, context, option)
    with torch.no_grad():
        logp = torch.log_softmax(loaded.model(torch.tensor([context + cont])).logits[0].float(), -1)
    return sum(float(logp[len(context) - 1 + t, c]) for t, c in enumerate(cont))


def test_option_logliks_equal_a_per_option_forward(tiny_llama):
    got = option_logliks(tiny_llama, PROMPTS, OPTIONS, batch_size=2)
    for prompt, row in zip(PROMPTS, got, strict=True):
        assert row == pytest.approx([reference_causal(tiny_llama, prompt, o) for o in OPTIONS], abs=1e-4)


def test_option_logliks_equal_hf_loss_for_seq2seq(tiny_t5):
    tok = tiny_t5.tokenizer
    got = option_logliks(tiny_t5, PROMPTS, OPTIONS, batch_size=2)
    for prompt, row in zip(PROMPTS, got, strict=True):
        ref = []
        for option in OPTIONS:
            labels = tok(option)["input_ids"]
            with torch.no_grad():
                out = tiny_t5.model(input_ids=torch.tensor([tok(prompt)["input_ids"]]), labels=torch.tensor([labels]))
            ref.append(-float(out.loss) * len(labels))  # HF's loss is the mean over label tokens
        assert row == pytest.approx(ref, abs=1e-4)


def test_choice_agrees_with_greedy_when_the_greedy_answer_is_an_option(tiny_llama):
    """Prompts ending in a space take no separator, and byte-level options are single tokens: the best
    option must be the greedy next byte whenever that byte is among the options."""
    prompts = [p.rstrip() + " " for p in PROMPTS] + [f"{w} = " for w in ("x", "y", "sum", "total", "name", "colour",
                                                                        "1+2", "It", "The answer is:", "Q: A:")]
    greedy = generate(tiny_llama, prompts, 1, progress=False, suppress_tokens=[0, 1, 2]).texts
    tok = tiny_llama.tokenizer
    checked = 0
    for prompt, first in zip(prompts, greedy, strict=True):
        if len(tok(first, add_special_tokens=False)["input_ids"]) != 1 or not first.strip():
            continue  # a multi-byte character or whitespace (stripped from the text) is no single-token option
        options = sorted({first, "a", "7", "Z", "?"})
        assert choose(tiny_llama, [prompt], options, batch_size=1) == [first]
        checked += 1
    assert checked >= 3


def test_choice_agrees_with_greedy_on_smollm2_bbh(smollm2, shared_data):
    """On BBH with 3 shared demonstrations, where SmolLM2's greedy answer is one of the task's options, the
    multiple-choice pick is that answer."""
    from lorasoup_core.bench import BENCHMARKS
    from lorasoup_core.bench.harness import _prompts, with_settings
    from lorasoup_core.data import load_task

    config = with_settings(BENCHMARKS.get("bbh"), {"icl_demos": "shared"})
    agree = total = 0
    for name in ("navigate", "sports_understanding", "web_of_lies"):
        task = load_task({"source": "bbh", "name": name, "path": str(shared_data / "bbh")})
        options = closed_answer_set(task)
        prompts = _prompts(config, task, task.test[:8], "icl", 3, 0, None)
        greedy = generate(smollm2, prompts, 8, ["\n"], progress=False).texts
        picks = choose(smollm2, prompts, options)
        for g, p in zip(greedy, picks, strict=True):
            if g.strip() in options:
                total += 1
                agree += g.strip() == p
    assert total >= 12 and agree == total


def test_closed_answer_sets():
    def task(targets):
        return Task("t", [Example(f"q{i}", t) for i, t in enumerate(targets)], [], [Example("z", targets[0])])

    assert closed_answer_set(task(["Yes", "No", "Yes"])) == ["No", "Yes"]
    assert closed_answer_set(task(["only"])) is None
    assert closed_answer_set(task([str(i) for i in range(40)])) is None


def test_harness_reports_mc_beside_exact_match_only_for_closed_sets(tiny_llama):
    from lorasoup_core.bench.suites import GENERIC

    closed = Task("yn", [Example(f"x{i}", "yes" if i % 2 else "no") for i in range(6)], [],
                  [Example(f"q{i}", "yes" if i % 3 else "no") for i in range(5)], template="{input} ->")
    config = GENERIC.model_copy(update={"multiple_choice": True})
    rep = evaluate_task(tiny_llama, closed, benchmark=config, progress=False)
    assert [r.method for r in rep.rows] == ["zero-shot", "zero-shot/mc"]
    preds = rep.predictions["yn"]
    assert all(p["choice"] in ("no", "yes") and p["mc"] == float(p["choice"] == p["target"]) for p in preds)
    assert rep.rows[1].score == pytest.approx(sum(p["mc"] for p in preds) / len(preds))
    open_task = Task("open", closed.train, [], [Example(f"q{i}", f"answer {i}") for i in range(30)])
    assert [r.method for r in evaluate_task(tiny_llama, open_task, benchmark=config, progress=False).rows] == \
        ["zero-shot"]
