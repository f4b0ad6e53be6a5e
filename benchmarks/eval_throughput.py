"""Batched vs one-by-one greedy generation on the same model and BBH examples.

    .venv/bin/python benchmarks/eval_throughput.py --json [--model smollm2-135m] [--examples 32]
        [--batch-size 16] [--threads 2]

Prints examples/s of batched generation (left padding, length-sorted batches, stop strings) and of
one-by-one generation (batch size 1, same settings), their ratio as `speedup`, generated tokens/s,
prompt tokens per example, and how many outputs agree between the two runs. With the plain BBH
prompts SmolLM2 stops after ~2 tokens, so the run is prefill-bound; ``--min-new-tokens 24 --no-stop``
gives a decode-bound run (where batching pays off on a CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _report import emit  # noqa: E402  (benchmarks/ is on sys.path when a script runs)


def bbh_prompts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """n zero-shot BBH prompts taken round-robin over the tasks (a realistic length mix) and their targets."""
    from lorasoup_core.bench import BENCHMARKS
    from lorasoup_core.data import list_tasks, load_task

    config = BENCHMARKS.get("bbh")
    tasks = [load_task({"source": "bbh", "name": name, "seed": seed}) for name in list_tasks("bbh")]
    prompts, targets = [], []
    for i in range(n):
        task = tasks[i % len(tasks)]
        example = task.test[i // len(tasks)]
        prompts.append(config.prompt(task, example))
        targets.append(example.target)
    return prompts, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-new-tokens", type=int, default=0,
                        help="force at least this many new tokens (no early EOS): a decode-bound run")
    parser.add_argument("--no-stop", action="store_true", help="ignore the BBH stop strings")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    os.environ.setdefault("LORASOUP_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    import torch

    from lorasoup_core.bench import BENCHMARKS, generate
    from lorasoup_core.bench.metrics import score_all
    from lorasoup_core.models import load_model

    torch.set_num_threads(args.threads)
    base = load_model(args.model, device=args.device)
    config = BENCHMARKS.get("bbh")
    prompts, targets = bbh_prompts(args.examples, args.seed)
    settings = {"max_new_tokens": config.max_new_tokens, "stop": [] if args.no_stop else list(config.stop),
                "progress": False}
    if args.min_new_tokens:
        settings["min_new_tokens"] = args.min_new_tokens
    generate(base, prompts[:2], batch_size=2, **settings)  # warm-up: first-call allocations, kernels
    batched = generate(base, prompts, batch_size=args.batch_size, **settings)
    single = generate(base, prompts, batch_size=1, **settings)
    result = {
        "model": args.model, "device": str(base.device), "threads": args.threads, "examples": len(prompts),
        "batch_size": args.batch_size, "max_new_tokens": config.max_new_tokens, "stop": settings["stop"],
        "min_new_tokens": args.min_new_tokens,
        "batched_examples_per_s": round(batched.examples_per_s, 3),
        "single_examples_per_s": round(single.examples_per_s, 3),
        "speedup": round(batched.examples_per_s / single.examples_per_s, 2),
        "batched_gen_tokens_per_s": round(batched.gen_tokens_per_s, 1),
        "single_gen_tokens_per_s": round(single.gen_tokens_per_s, 1),
        "prompt_tokens_per_example": round(batched.prompt_tokens_per_example, 1),
        "gen_tokens_per_example": round(batched.gen_tokens / len(prompts), 1),
        "same_output_fraction": sum(a == b for a, b in zip(batched.texts, single.texts, strict=True)) / len(prompts),
        "bbh_accuracy_batched": sum(score_all("bbh", batched.texts, targets)) / len(prompts),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
