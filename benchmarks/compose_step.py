"""Cost of one LoraHub objective evaluation against a plain forward of base + one LoRA.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compose_step.py --model tiny-llama --candidates 20 --json
    .venv/bin/python benchmarks/compose_step.py --model smollm2-135m --candidates 20 --population 4 --optimizer CMA --json
    .venv/bin/python benchmarks/compose_step.py --model tiny-llama --candidates 20 --pool 200 --json
    .venv/bin/python benchmarks/compose_step.py --model smollm2-135m --candidates 20 --pool 200 --filter arrow --json

A pool of `--pool` adapters with random factors (PEFT, init_lora_weights=False) is written to a temp
dir; `--candidates` of them are picked by the random filter and composed by lorahub (budget 40, NGOpt)
on `--shots` examples of `--task`. Prints step_s (median wall seconds per objective evaluation inside
the search, ask/tell included), forward_s (median plain HF forward with labels, no grad, of base + one
LoRA on the same batch), overhead_ratio = step_s / forward_s, evals_per_s, peak_rss_mb (after the
search, before the baseline is built). `--filter` picks the candidates with another filter (`arrow` needs
no stored examples); select_s is its first selection over the pool, select_cached_s the same selection
again (the arrow prototypes then come from their cache, a temp dir here).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _report import emit  # benchmarks/ is on sys.path when a script runs

from lorasoup_core.compose import Candidate, FewShot, compose
from lorasoup_core.compose.lorahub import LorahubSettings
from lorasoup_core.data import load_task
from lorasoup_core.models import load_model
from lorasoup_core.selection import FilterSpec, select_candidates


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_pool(base, n: int, rank: int, out: Path, scale: float = 0.5) -> list[Candidate]:
    """n adapters with random factors (std `scale`/sqrt(fan-in)), through one PEFT model (re-randomised and
    saved n times)."""
    from peft import LoraConfig, get_peft_model

    targets = ["q", "v"] if base.kind == "seq2seq" else ["q_proj", "v_proj"]
    model = get_peft_model(base.model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets,
                                                  init_lora_weights=False))
    gen = torch.Generator().manual_seed(0)
    cands = []
    for i in range(n):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * (p.shape[-1] ** -0.5) * scale)
        path = out / f"adapter{i:03d}"
        model.save_pretrained(str(path))
        cands.append(Candidate(f"adapter{i:03d}", path))
    model.unload()  # base.model back to plain Linear layers
    return cands


def plain_forward_s(base, adapter: Path, batch: dict, repeats: int) -> float:
    from peft import PeftModel

    model = PeftModel.from_pretrained(base.model, str(adapter)).eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    times = []
    with torch.no_grad():
        for _ in range(repeats + 2):
            start = time.perf_counter()
            model(**inputs)
            if base.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    model.unload()
    return statistics.median(times[2:])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-llama", help="tiny-llama, tiny-t5 or smollm2-135m")
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--population", type=int, default=1)
    ap.add_argument("--pool", type=int, default=None, help="pool size (default: = candidates)")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--formula", default="exact", choices=["exact", "lorahub"])
    ap.add_argument("--optimizer", default="NGOpt")
    ap.add_argument("--engine-mode", default="auto", choices=["auto", "dense", "lowrank"])
    ap.add_argument("--task", default="skills:add")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16 (default: bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--repeats", type=int, default=20, help="plain forwards timed")
    ap.add_argument("--filter", default="random", choices=["random", "arrow", "loss"],
                    help="the filter that picks --candidates of the pool (random: LoraHub's draw)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    base = load_model(args.model, device=args.device, dtype=args.dtype)
    task = load_task(args.task)
    shots = task.train[: args.shots]
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_pool(base, args.pool or args.candidates, args.rank, Path(tmp))
        rss_pool = rss_mb()
        os.environ["LORASOUP_ARROW_CACHE"] = str(Path(tmp) / "arrow-cache")  # never the user's cache
        chain = [FilterSpec(name=args.filter, k=args.candidates)]
        start = time.perf_counter()
        sel = select_candidates(base, pool, task, shots, chain)
        select_s = time.perf_counter() - start
        start = time.perf_counter()
        select_candidates(base, pool, task, shots, chain)
        select_cached_s = time.perf_counter() - start
        cfg = LorahubSettings(budget=args.budget, population=args.population, formula=args.formula,
                              optimizer=args.optimizer, engine_mode=args.engine_mode)
        start = time.perf_counter()
        comp = compose("lorahub", base, sel.candidates, task, shots, cfg)
        search_s = time.perf_counter() - start
        peak = rss_mb()
        batch = FewShot(base, task, shots, cfg.max_length).batch
        forward_s = plain_forward_s(base, sel.candidates[0].path, batch, args.repeats)
    step_s = statistics.median(comp.diagnostics["eval_seconds"])
    out = {
        "model": args.model, "candidates": args.candidates, "pool": args.pool or args.candidates,
        "filter": args.filter, "select_s": select_s, "select_cached_s": select_cached_s,
        "population": args.population, "budget": args.budget, "formula": args.formula, "rank": args.rank,
        "batch_shape": list(batch["input_ids"].shape), "device": str(base.device),
        "dtype": str(base.dtype).removeprefix("torch."), "optimizer": args.optimizer,
        "threads": torch.get_num_threads(),
        "step_s": step_s, "objective_only_s": statistics.median(comp.diagnostics["objective_seconds"]),
        "engine_modes": sorted(set(comp.diagnostics["engine"].values())), "forward_s": forward_s, "overhead_ratio": step_s / forward_s,
        "evals_per_s": args.budget / sum(comp.diagnostics["eval_seconds"]), "search_s_with_setup": search_s,
        "rss_after_pool_mb": rss_pool, "peak_rss_mb": peak,
    }
    return emit(out, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
