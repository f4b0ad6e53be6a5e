"""The `lorahub` preset against LoraHub's procedure as the original code runs it, end to end.

    .venv/bin/python benchmarks/lorahub_parity.py --json
    .venv/bin/python benchmarks/lorahub_parity.py --d-model 64 --layers 2 --candidates 4 --json   (a quick check)

A T5 built from a config (default d_model 512, 6 encoder + 6 decoder layers, byte tokenizer) is saved to a
temp dir with `--candidates` rank-`--rank` LoRAs on q and v (random factors through PEFT). Both sides then
start from disk and run a budget-40 search on the same 5 examples with 2 CPU threads:

- reference: tests/lorasoup_core/compose/lorahub_reference.py, as sail-sg/lorahub's algorithm.py runs it:
  base and adapters loaded with transformers/PEFT, every evaluation rebuilds the weighted state dict, loads
  it with `set_peft_model_state_dict` and runs the full forward with labels; NGOpt via `minimize`;
- preset: lorasoup's `lorahub` composer with its defaults (the same objective and search): `load_model`,
  `Stack`, `compose` (stacked factors, one contraction per module, head only at target positions).

Prints each side's wall time (load + search, and each part), the final objectives at their
recommendations, the largest difference between the two objectives at the same weights (the reference's 40
evaluated points), the first evaluation at which the two COBYLA paths part, and the speedup (reference /
preset).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _report import emit  # benchmarks/ is on sys.path when a script runs
from compose_step import write_pool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference lives beside the tests

from lorasoup_core.compose import Candidate, compose  # noqa: E402
from lorasoup_core.data import load_task  # noqa: E402
from lorasoup_core.data.prompts import encode  # noqa: E402
from lorasoup_core.models import load_model  # noqa: E402
from tests.lorasoup_core.compose.lorahub_reference import ReferenceLoraHub  # noqa: E402


def write_model_and_adapters(root: Path, d_model: int, layers: int, n: int, rank: int) -> list[Path]:
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    tok = ByT5Tokenizer()
    config = T5Config(vocab_size=len(tok), d_model=d_model, d_ff=4 * d_model, d_kv=64, num_heads=max(1, d_model // 64),
                      num_layers=layers, num_decoder_layers=layers, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    base = load_model(str(root / "base"), device="cpu", dtype="float32")
    return [c.path for c in write_pool(base, n, rank, root, scale=0.3)]


def reference_run(base_dir: Path, adapters: list[Path], prompts, targets, budget: int, seed: int):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    start = time.perf_counter()
    model = AutoModelForSeq2SeqLM.from_pretrained(str(base_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    batch = encode("seq2seq", tokenizer, prompts, targets, 2048)
    ref = ReferenceLoraHub(model, adapters, batch, len(prompts))
    loaded = time.perf_counter()
    weights, evaluated, values = ref.search(budget=budget, seed=seed)
    final = ref.objective(weights)
    return {"s": time.perf_counter() - start, "load_s": loaded - start, "objective": final, "weights": weights,
            "evaluated": np.asarray(evaluated), "values": np.asarray(values)}


def preset_run(base_dir: Path, adapters: list[Path], task, shots, budget: int, seed: int, mode: str = "auto"):
    from lorasoup_core.compose import Stack
    from lorasoup_core.compose.lorahub import LorahubSettings, Objective

    start = time.perf_counter()
    base = load_model(str(base_dir), device="cpu", dtype="float32")
    loaded = time.perf_counter()
    cands = [Candidate(p.name, p) for p in adapters]
    comp = compose("lorahub", base, cands, task, shots, {"budget": budget, "engine_mode": mode}, seed=seed)
    seconds = time.perf_counter() - start
    return {"s": seconds, "load_s": loaded - start, "objective": comp.diagnostics["final_objective"],
            "weights": np.asarray(comp.weights), "evaluated": np.asarray(comp.diagnostics["evaluated"]),
            "at": lambda w: Objective(base, Stack(base, cands), task, shots,
                                      LorahubSettings(engine_mode=mode)).__enter__()(w)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6, help="encoder layers (= decoder layers)")
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--task", default="skills:sort_words")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine-mode", default="auto", choices=["auto", "dense", "lowrank"],
                    help="how the preset applies a composition (lowrank adds x A^T B^T as PEFT's layers do)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    task = load_task(args.task)
    shots = task.train[: args.shots]
    prompts, targets = [task.prompt(s) for s in shots], [s.target for s in shots]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        adapters = write_model_and_adapters(root, args.d_model, args.layers, args.candidates, args.rank)
        preset_run(root / "base", adapters[:2], task, shots, 2, args.seed)  # warm-up: imports, kernels
        ref = reference_run(root / "base", adapters, prompts, targets, args.budget, args.seed)
        ours = preset_run(root / "base", adapters, task, shots, args.budget, args.seed, args.engine_mode)
        # the two objectives at the reference's own evaluated points (one batched call)
        at_ref_points = ours["at"](ref["evaluated"])
    first_split = int(np.argmax(np.abs(ref["evaluated"] - ours["evaluated"]).max(1) > 1e-6))
    result = {
        "d_model": args.d_model, "layers": args.layers, "candidates": args.candidates, "rank": args.rank,
        "budget": args.budget, "shots": args.shots, "threads": torch.get_num_threads(),
        "engine_mode": args.engine_mode,
        "reference_s": round(ref["s"], 3), "preset_s": round(ours["s"], 3), "speedup": round(ref["s"] / ours["s"], 2),
        "reference_load_s": round(ref["load_s"], 3), "preset_load_s": round(ours["load_s"], 3),
        "reference_search_s": round(ref["s"] - ref["load_s"], 3), "preset_search_s": round(ours["s"] - ours["load_s"], 3),
        "reference_objective": ref["objective"], "preset_objective": ours["objective"],
        "objective_diff": abs(ref["objective"] - ours["objective"]),
        "max_objective_diff_at_same_weights": float(np.abs(at_ref_points - ref["values"]).max()),
        "first_diverging_evaluation": first_split,
        "max_evaluated_weight_diff": float(np.abs(ref["evaluated"] - ours["evaluated"]).max()),
    }
    return emit(result, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
