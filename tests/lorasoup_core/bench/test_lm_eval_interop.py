"""lm-evaluation-harness scores a lorasoup adapter as `lorasoup eval` does. A composed adapter on the real
SmolLM2 goes through `lorasoup eval --multiple-choice` and through `lm_eval --model hf --model_args
pretrained=<base dir>,peft=<adapter dir>` on custom tasks over the same BBH examples
(benchmarks/lm_eval_interop.py): the same greedy generations, exact-match scores and option picks.

Why the thresholds hold on any CPU: both sides run the same float32 weights on the same text (prompts and
option texts are checked equal; both tokenize with the tokenizer's defaults), greedy, no chat template,
lorasoup's stop cut; only the code
paths differ (lorasoup: length buckets, a shared-prefix cache, rows leaving the batch; lm-eval: HF generate
on its own padded batches, and one forward over prompt + option where lorasoup reuses the prompt's KV
cache). Their logits differ by float rounding (~2e-5 measured on option log-likelihoods), so a greedy token
can only flip where its top-2 logit gap is that small. The test measures each example's smallest gap
along its greedy path and requires identical generations wherever it exceeds MARGIN (50x the rounding);
the smallest gap among these 40 examples is 1.3e-3, so all must agree, and the >= 95% threshold leaves
room for one near-tie in 20 on another adapter. Option log-likelihoods must agree within LOGLIK_TOL, and
the picks exactly (the failure names the top-2 gap if a near-tie ever explains one).
"""

import importlib.util
from pathlib import Path

import pytest
import torch
from peft import LoraConfig
from safetensors.torch import save_file

from lorasoup_core.bench import BENCHMARKS
from lorasoup_core.bench.choice import continuation_text, option_logliks
from lorasoup_core.bench.generation import StopOnStrings
from lorasoup_core.bench.harness import adapter_model
from lorasoup_core.bench.metrics import exact_match
from lorasoup_core.compose import Candidate, compose, export_peft
from lorasoup_core.data import load_task

TASKS = ["boolean_expressions", "hyperbaton"]  # short prompts; one-token and three-token options
LIMIT = 20
MARGIN = 1e-3  # logit gap above which float rounding (~2e-5) cannot flip a greedy token
LOGLIK_TOL = 1e-3


def _interop_script():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "lm_eval_interop.py"
    spec = importlib.util.spec_from_file_location("lm_eval_interop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _interop_script()


def _random_lora(base, out: Path, seed: int) -> Candidate:
    """A PEFT LoRA (rank 8) with random factors on every q_proj / v_proj."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, mod in base.model.named_modules():
        if name.endswith(("q_proj", "v_proj")):
            tensors[f"base_model.model.{name}.lora_A.weight"] = torch.randn(8, mod.in_features, generator=g) * 0.05
            tensors[f"base_model.model.{name}.lora_B.weight"] = torch.randn(mod.out_features, 8, generator=g) * 0.05
    LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]).save_pretrained(str(out))
    save_file(tensors, str(out / "adapter_model.safetensors"))
    return Candidate(out.name, out)


@pytest.mark.parametrize("stop", [["\n"], ["```", "\nQuestion:"]])
@pytest.mark.parametrize("text", ["True", " True\n", "\nThe answer is: False\n\nThe answer", "\n\n", "", "  (B) \n",
                                  "a\r\nb", "x ```py\nQuestion: y", "\t\nQuestion: 12\nQuestion:", "¿Sí?\u2003\n"])
def test_the_custom_task_cuts_generations_as_lorasoup(text, stop):
    """lm-eval's regex filter with cut_pattern gives lorasoup's cut_at_stop (stripped, as both metrics read it),
    leading newlines included: lm-eval's own `until` would stop there and return ''."""
    from lm_eval.filters.extraction import RegexFilter

    from lorasoup_core.bench.generation import cut_at_stop

    cut = RegexFilter(regex_pattern=script.cut_pattern(stop), group_select=0, fallback="[none]")
    assert cut.apply([[text]], [{}]) == [[cut_at_stop(text, stop).strip()]]


@pytest.fixture(scope="module")
def interop(smollm2, shared_data, tmp_path_factory):
    """An exported linear composition on SmolLM2 (small weights: the model still answers BBH), scored by
    `lorasoup eval` and by one `lm_eval` run on the custom tasks."""
    work = tmp_path_factory.mktemp("lm_eval_interop")
    target = load_task({"source": "skills", "name": "count_items", "n_train": 20, "n_validation": 0, "n_test": 8})
    cands = [_random_lora(smollm2, work / f"c{i}", i) for i in range(3)]
    comp = compose("linear", smollm2, cands, target, target.train[:5], {"weights": [0.2, -0.1, 0.3]})
    adapter = export_peft(comp, work / "adapter")
    spec, base_dir = script.base_dir_for(adapter)
    assert base_dir == smollm2.hf_path
    ours = script.lorasoup_eval(spec, adapter, TASKS, LIMIT, 0, "cpu", work)
    made = script.custom_tasks(ours, 0, work / "tasks")
    names = [n for gen, mc, _ in made.values() for n in (gen, mc) if n]
    # batches of 32: one generate batch per task (decoding on CPU costs per step, not per row)
    theirs = script.run_lm_eval(base_dir, adapter, names, LIMIT, "cpu", work, work / "tasks", batch_size=32)
    return {"adapter": adapter, "ours": ours["tasks"], "made": made, "theirs": theirs}


@torch.inference_mode()
def greedy_margins(model, tok, prompts, max_new_tokens, stop) -> list[float]:
    """Per prompt, the smallest top-1 minus top-2 logit gap over its greedy tokens up to lorasoup's stop (or
    EOS): HF generate on one padded batch (padding moves logits by ~1e-5, far below MARGIN)."""
    side, tok.padding_side = tok.padding_side, "left"
    try:
        ids = tok(list(prompts), return_tensors="pt", padding=True)
    finally:
        tok.padding_side = side
    width = ids["input_ids"].shape[1]
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                         output_logits=True, return_dict_in_generate=True)
    top2 = torch.stack(out.logits, dim=1).float().topk(2).values  # rows x steps x 2
    gaps = top2[..., 0] - top2[..., 1]
    stopper = StopOnStrings(tok, stop, 0)
    margins = []
    for row, gap in zip(out.sequences[:, width:].tolist(), gaps, strict=True):
        steps = next((k + 1 for k in range(len(row)) if row[k] == tok.eos_token_id or stopper.hit(row[:k + 1])),
                     len(row))
        margins.append(float(gap[:steps].min()))
    return margins


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_lm_eval_generates_what_lorasoup_generates(interop, smollm2, task):
    ours, (gen, _, _) = interop["ours"][task], interop["made"][task]
    theirs = interop["theirs"][gen]
    pairs = script.paired(ours["predictions"], theirs["samples"])
    assert len(pairs) == ours["n"] == theirs["n"] == LIMIT
    assert all(s["arguments"]["gen_args_0"]["arg_0"] == p["prompt"] for p, s in pairs)  # same prompt text
    bbh = BENCHMARKS.get("bbh")
    with adapter_model(smollm2, interop["adapter"], merge=False) as model:
        margins = greedy_margins(model, smollm2.tokenizer, [p["prompt"] for p, _ in pairs], bbh.max_new_tokens,
                                 list(bbh.stop))
    rows = [(p["prediction"].strip(), script.generation(s), m) for (p, s), m in zip(pairs, margins, strict=True)]
    differ = [r for r in rows if r[0] != r[1]]
    assert not [r for r in differ if r[2] > MARGIN], f"generations differ with no near-tie to explain it: {differ}"
    result = script.compare_generation(ours, theirs)
    assert result["same_generation"] >= 0.95, result
    assert sum(bool(text) for text, _, _ in rows) >= LIMIT // 2  # mostly non-empty text to compare


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_exact_match_scores_agree(interop, task):
    ours, (gen, _, _) = interop["ours"][task], interop["made"][task]
    theirs = interop["theirs"][gen]
    result = script.compare_generation(ours, theirs)
    # lm-eval's exact_match (ignore case, drop '.') is lorasoup's: equal wherever the generations are
    for p, s in script.paired(ours["predictions"], theirs["samples"]):
        if script.generation(s) == p["prediction"].strip():
            assert s["exact_match"] == exact_match(p["prediction"], p["target"]), (p, s["filtered_resps"])
    assert abs(result["lm_eval_exact_match"] - result["lorasoup_exact_match"]) * LIMIT <= 1 + 1e-9, result
    assert abs(result["lm_eval_generations_lorasoup_metric"] - result["lorasoup_score"]) * LIMIT <= 1 + 1e-9, result


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_lm_eval_picks_the_options_lorasoup_picks(interop, smollm2, task):
    ours, (_, mc, options) = interop["ours"][task], interop["made"][task]
    theirs = interop["theirs"][mc]
    pairs = script.paired(ours["predictions"], theirs["samples"])
    assert len(pairs) == LIMIT and len(options) >= 2
    with adapter_model(smollm2, interop["adapter"], merge=False) as model:  # lorasoup eval's scoring path
        lls = option_logliks(smollm2, [p["prompt"] for p, _ in pairs], options, model=model, batch_size=64,
                             max_batch_tokens=8192)
    for (p, s), row in zip(pairs, lls, strict=True):
        asked = [(a["arg_0"], a["arg_1"]) for a in s["arguments"].values()]
        assert asked == [(p["prompt"], continuation_text(p["prompt"], o)) for o in options]  # same texts
        theirs_row = script.choice_logliks(s)
        assert options[row.index(max(row))] == p["choice"]  # the in-process scores are lorasoup eval's
        assert max(abs(a - b) for a, b in zip(row, theirs_row, strict=True)) <= LOGLIK_TOL, (row, theirs_row)
        gap = sorted(row)[-1] - sorted(row)[-2]
        pick = options[theirs_row.index(max(theirs_row))]
        assert pick == p["choice"], f"lm-eval picks {pick!r}, lorasoup {p['choice']!r} (top-2 gap {gap:.2e})"
    result = script.compare_choices(ours, theirs, options)
    assert result["same_choice"] == 1.0 and result["lm_eval_mc"] == pytest.approx(result["lorasoup_mc"]), result
