"""What Arrow routing costs per test example against a merged adapter, by the number of routed adapters.

    .venv/bin/python benchmarks/routing_cost.py --model smollm2-135m --experts 3,13,50,200 --json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/routing_cost.py --model tiny-llama --experts 3,13 --json

A pool of random rank-`--rank` LoRAs (as `compose_step.py` writes them) is routed by PEFT's Arrow layers
(a routed adapter over the first n, top-k 3) and scored by the evaluation harness on `--limit` examples of
`--task`, generation and all; the baseline is one of the same LoRAs merged into the base (what every
composition is evaluated as). Prints merged_s_per_example and, per n, routed_s_per_example and its ratio
to the merged one (generation time: each the median of `--repeats` harness runs, after one warm-up), and
setup_s: the rest of a harness run's wall time (loading and merging the adapter; building PEFT's Arrow
model, which loads every routed adapter).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _report import emit  # benchmarks/ is on sys.path when a script runs
from compose_step import write_pool

from lorasoup_core.adapters.routed import write_routed
from lorasoup_core.bench import evaluate_task
from lorasoup_core.data import load_task
from lorasoup_core.models import load_model


def seconds_per_example(base, task, adapter: Path, limit: int, repeats: int) -> tuple[float, float]:
    """(generation seconds per example, setup seconds per harness run: its wall time less the generation,
    i.e. loading and merging the adapter, or building PEFT's Arrow model over every routed adapter)."""
    per_example, setup = [], []
    for _ in range(repeats + 1):  # the first is a warm-up (and builds the routed model's prototypes)
        start = time.perf_counter()
        report = evaluate_task(base, task, mode="adapter", adapter=adapter, limit=limit, progress=False)
        generation = report.throughput["seconds"]
        per_example.append(generation / report.throughput["examples"])
        setup.append(time.perf_counter() - start - generation)
    return statistics.median(per_example[1:]), statistics.median(setup[1:])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-llama", help="tiny-llama or smollm2-135m")
    ap.add_argument("--experts", default="3,13", help="comma-separated numbers of routed adapters")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--task", default="skills:add")
    ap.add_argument("--limit", type=int, default=32, help="test examples scored per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    sizes = sorted({int(n) for n in args.experts.split(",")})
    base = load_model(args.model, device=args.device)
    task = load_task(args.task)
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_pool(base, max(sizes), args.rank, Path(tmp))
        merged, merged_setup = seconds_per_example(base, task, pool[0].path, args.limit, args.repeats)
        routed = []
        for n in sizes:
            out = Path(tmp) / f"routed-{n}"
            out.mkdir()
            write_routed(out, [(c.name, c.path) for c in pool[:n]], [], top_k=args.top_k, router_temperature=1.0,
                         rng_seed=0)
            s, setup = seconds_per_example(base, task, out, args.limit, args.repeats)
            routed.append({"experts": n, "routed_s_per_example": s, "ratio_to_merged": s / merged,
                           "setup_s": setup})
    return emit({"model": args.model, "device": args.device, "threads": torch.get_num_threads(), "rank": args.rank,
                 "top_k": args.top_k, "task": args.task, "limit": args.limit, "repeats": args.repeats,
                 "merged_s_per_example": merged, "merged_setup_s": merged_setup, "routed": routed}, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
