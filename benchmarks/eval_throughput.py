"""Evaluation throughput on the same prompts, with the predictions of every path compared.

    .venv/bin/python benchmarks/eval_throughput.py --json                       # all scenarios, SmolLM2-135M
    .venv/bin/python benchmarks/eval_throughput.py --json --scenario gsm-hard-pal --examples 16
    .venv/bin/python benchmarks/eval_throughput.py --json --scenario bbh-lora --adapter-rank 80

Scenarios (prompts built by the harness; a task's prompts go through one generate call, as in `eval`):
- bbh-zero-shot: LoraHub's zero-shot format on `--tasks`, `--examples` each;
- bbh-icl: the same with 3 shared demonstrations in front (`icl_demos: shared`);
- gsm-hard-pal: PAL's 3-shot code prompt (the sample's train rows) on `--examples` questions;
- bbh-lora: bbh-zero-shot through a seeded random LoRA of `--adapter-rank` on q/v, unmerged (PEFT's
  per-layer matmuls) vs merged into the base for the evaluation.
Paths, each timed end to end (tokenising, padding, decoding):
- naive: one prompt at a time through HF `generate` (batch 1, no prefix cache);
- batched: length-bucketed batches (`--batch-size`, `--max-batch-tokens`), left padding, HF `generate`;
- prefix: batched + the prompts' shared prefix encoded once (bench/prefix.py), HF `generate`;
- harness: what `eval` and the experiments run: prefix + finished rows leaving the batch (bench/decode.py);
- limit: a plain forward over the same prompt tokens in the same buckets, no generation: the prefill cost
  a generating path cannot go below (except by sharing a prefix).
One JSON line per scenario: examples/s of each path, speedups over naive, `harness_over_limit` (harness
seconds / limit seconds), prompt and generated tokens per example, and `identical_*`: the fraction of
examples whose text equals naive's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _report import emit  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

SCENARIOS = ("bbh-zero-shot", "bbh-icl", "gsm-hard-pal", "bbh-lora")
BBH_TASKS = "boolean_expressions,date_understanding,navigate,sports_understanding"


def groups(scenario: str, tasks: list[str], examples: int, seed: int) -> tuple[object, list[list[str]]]:
    """The benchmark config and, per task, the prompts the harness would generate from."""
    from lorasoup_core.bench import BENCHMARKS
    from lorasoup_core.bench.harness import _prompts, with_settings
    from lorasoup_core.data import load_task

    name = "gsm-hard" if scenario == "gsm-hard-pal" else "bbh"
    config = with_settings(BENCHMARKS.get(name), {"icl_demos": "shared"})
    mode = "zero-shot" if scenario in ("bbh-zero-shot", "bbh-lora") else "icl"
    names = ["gsm-hard"] if name == "gsm-hard" else tasks
    out = []
    for task_name in names:
        task = load_task({"source": config.source, "name": task_name, "seed": seed})
        out.append(_prompts(config, task, task.test[:examples], mode, 3, seed, None))
    return config, out


def timed_generate(base, prompt_groups, config, model=None, **kw) -> tuple[list[str], float, int, int]:
    from lorasoup_core.bench import generate

    texts, seconds, prompt_tokens, gen_tokens = [], 0.0, 0, 0
    for prompts in prompt_groups:
        res = generate(base, prompts, config.max_new_tokens, list(config.stop), model=model, progress=False, **kw)
        texts += res.texts
        seconds += res.seconds
        prompt_tokens += res.prompt_tokens
        gen_tokens += res.gen_tokens
    return texts, seconds, prompt_tokens, gen_tokens


def limit_seconds(base, prompt_groups, batch_size: int, max_batch_tokens: int | None, extra: int,
                  model=None) -> tuple[float, int]:
    """A plain forward (no cache, no generation) over the prompt tokens, in generate's buckets."""
    import torch

    from lorasoup_core.bench.generation import plan_batches

    model = model or base.model
    tok, seconds, tokens = base.tokenizer, 0.0, 0
    side, tok.padding_side = tok.padding_side, "left"
    try:
        for prompts in prompt_groups:
            t0 = time.perf_counter()
            ids = tok(prompts)["input_ids"]
            with torch.inference_mode():
                for idx in plan_batches([len(r) for r in ids], batch_size, max_batch_tokens, extra):
                    enc = tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(base.device)
                    model(**enc, use_cache=False, logits_to_keep=1)
                    tokens += int(enc["attention_mask"].sum())
            seconds += time.perf_counter() - t0
    finally:
        tok.padding_side = side
    return seconds, tokens


def random_lora(base, rank: int, out: Path) -> Path:
    """A seeded random LoRA on q/v (PEFT, init_lora_weights=False), small enough to keep text readable."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(base.model, LoraConfig(r=rank, lora_alpha=rank, target_modules=["q_proj", "v_proj"],
                                                       init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.02)
    peft_model.save_pretrained(out)
    peft_model.unload()
    return out


def run_scenario(base, scenario: str, args) -> dict:
    from lorasoup_core.bench.harness import adapter_model

    config, prompt_groups = groups(scenario, args.tasks.split(","), args.examples, args.seed)
    n = sum(len(g) for g in prompt_groups)
    result = {"scenario": scenario, "model": args.model, "device": str(base.device), "threads": args.threads,
              "examples": n, "batch_size": args.batch_size,
              "max_batch_tokens": args.max_batch_tokens, "max_new_tokens": config.max_new_tokens}
    timed_generate(base, [prompt_groups[0][:2]], config, batch_size=2)  # warm-up: first-call allocations
    if scenario == "bbh-lora":
        with tempfile.TemporaryDirectory() as tmp:
            path = random_lora(base, args.adapter_rank, Path(tmp) / "lora")
            runs = {}
            for merged in (False, True):
                with adapter_model(base, path, merge=merged) as model:
                    runs[merged] = timed_generate(base, prompt_groups, config, model=model, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens)
        (plain, s_plain, _, _), (merged, s_merged, _, _) = runs[False], runs[True]
        result.update({"adapter_rank": args.adapter_rank, "unmerged_examples_per_s": round(n / s_plain, 3),
                       "merged_examples_per_s": round(n / s_merged, 3), "merge_speedup": round(s_plain / s_merged, 2),
                       "identical_merged": sum(a == b for a, b in zip(plain, merged, strict=True)) / n})
        return result
    budget = {"batch_size": args.batch_size, "max_batch_tokens": args.max_batch_tokens}
    hf = {"prefix_cache": False, "drop_finished": False}
    naive, s_naive, prompt_tokens, gen_tokens = timed_generate(base, prompt_groups, config, batch_size=1, **hf)
    runs = {"batched": timed_generate(base, prompt_groups, config, **budget, **hf),
            "prefix": timed_generate(base, prompt_groups, config, **budget, prefix_cache=True, drop_finished=False),
            "harness": timed_generate(base, prompt_groups, config, **budget)}
    s_limit, limit_tokens = limit_seconds(base, prompt_groups, args.batch_size, args.max_batch_tokens,
                                          config.max_new_tokens)
    result.update({"naive_examples_per_s": round(n / s_naive, 3)})
    for name, (_, seconds, _, _) in runs.items():
        result[f"{name}_examples_per_s"] = round(n / seconds, 3)
    result["limit_examples_per_s"] = round(n / s_limit, 3)
    result["limit_prompt_tokens_per_s"] = round(limit_tokens / s_limit, 1)
    for name, (_, seconds, _, _) in runs.items():
        result[f"{name}_speedup"] = round(s_naive / seconds, 2)
    result["harness_over_limit"] = round(runs["harness"][1] / s_limit, 2)
    result["prompt_tokens_per_example"] = round(prompt_tokens / n, 1)
    result["gen_tokens_per_example"] = round(gen_tokens / n, 1)
    for name, (texts, _, _, _) in runs.items():
        result[f"identical_{name}"] = sum(a == b for a, b in zip(naive, texts, strict=True)) / n
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--tasks", default=BBH_TASKS, help="BBH tasks of the bbh scenarios")
    parser.add_argument("--examples", type=int, default=16, help="test examples per task")
    parser.add_argument("--batch-size", type=int, default=64, help="most rows per batch (the harness's default)")
    parser.add_argument("--max-batch-tokens", type=int, default=8192,
                        help="padded prompt + new tokens per batch (the harness's default)")
    parser.add_argument("--adapter-rank", type=int, default=16, help="rank of the bbh-lora adapter")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default), bfloat16 ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object per scenario")
    args = parser.parse_args()

    os.environ.setdefault("LORASOUP_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    import torch

    from lorasoup_core.models import load_model

    torch.set_num_threads(args.threads)
    base = load_model(args.model, device=args.device, **({"dtype": args.dtype} if args.dtype else {}))
    for scenario in SCENARIOS if args.scenario == "all" else (args.scenario,):
        emit(run_scenario(base, scenario, args), args.json)


if __name__ == "__main__":
    main()
