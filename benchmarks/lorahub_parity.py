"""The `lorahub` preset against LoraHub's procedure as the original code runs it, end to end.

    .venv/bin/python benchmarks/lorahub_parity.py --json
    .venv/bin/python benchmarks/lorahub_parity.py --d-model 64 --layers 2 --candidates 4 --json   (a quick check)
    python3 benchmarks/lorahub_parity.py --device cuda --dtype bfloat16 --d-model 1024 --layers 24 --json

`--device`/`--dtype` put both sides on that device in that dtype (default: CPU, fp32); `--workdir` keeps the
written model and adapters there and reuses them when their shape matches (default: a temp dir).

A T5 built from a config (default d_model 512, 6 encoder + 6 decoder layers, byte tokenizer) is saved to a
temp dir with `--candidates` rank-`--rank` LoRAs on q and v (random factors through PEFT). Both sides then
start from disk and run a budget-40 search on the same 5 examples with 2 CPU threads:

- reference: tests/lorasoup_core/compose/lorahub_reference.py, as sail-sg/lorahub's algorithm.py runs it:
  base and adapters loaded with transformers/PEFT, every evaluation rebuilds the weighted state dict, loads
  it with `set_peft_model_state_dict` and runs the full forward with labels; NGOpt via `minimize`;
- preset: lorasoup's `lorahub` composer with its defaults (the same objective and search): `load_model`,
  `Stack`, `compose` (stacked factors, one contraction per module, head only at target positions).

Over `--seeds` searches per side, prints each side's mean wall time (load + search, and each part), the
reference's share of time spent rebuilding and loading state dicts (what the preset saves), the final
objectives at the recommendations (per seed and their means), the preset's reported objective re-scored
by the reference, the largest difference between the two objectives at the same weights (the reference's
evaluated points, one call each), the first evaluation at which the two COBYLA paths part (weights more
than 1e-6 apart), and the speedup (reference / preset).
"""

from __future__ import annotations

import argparse
import contextlib
import json
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


@contextlib.contextmanager
def _synced_state_loads(device: str):
    """On CUDA the reference's rebuild and load run asynchronously, so its rebuild clock would stop before
    the work ends and the forward's clock would absorb it: wait for them to finish before the clock reads."""
    if torch.device(device).type != "cuda":
        yield
        return
    import peft.utils

    original = peft.utils.set_peft_model_state_dict

    def synced(*args, **kwargs):
        out = original(*args, **kwargs)
        torch.cuda.synchronize()
        return out

    peft.utils.set_peft_model_state_dict = synced  # the reference imports it from peft.utils per call
    try:
        yield
    finally:
        peft.utils.set_peft_model_state_dict = original


def reference_run(base_dir: Path, adapters: list[Path], prompts, targets, budget: int, seed: int,
                  device: str = "cpu", dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    start = time.perf_counter()
    model = AutoModelForSeq2SeqLM.from_pretrained(str(base_dir), dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    batch = {k: v.to(device) for k, v in encode("seq2seq", tokenizer, prompts, targets, 2048).items()}
    ref = ReferenceLoraHub(model, adapters, batch, len(prompts))
    loaded = time.perf_counter()
    with _synced_state_loads(device):
        weights, evaluated, values = ref.search(budget=budget, seed=seed)
    final = ref.objective(weights)
    return {"s": time.perf_counter() - start, "load_s": loaded - start, "objective": final, "weights": weights,
            "evaluated": np.asarray(evaluated), "values": np.asarray(values), "ref": ref}


def preset_run(base_dir: Path, adapters: list[Path], task, shots, budget: int, seed: int, mode: str = "auto",
               device: str = "cpu", dtype: str = "float32"):

    start = time.perf_counter()
    base = load_model(str(base_dir), device=device, dtype=dtype)
    loaded = time.perf_counter()
    cands = [Candidate(p.name, p) for p in adapters]
    comp = compose("lorahub", base, cands, task, shots, {"budget": budget, "engine_mode": mode}, seed=seed)
    seconds = time.perf_counter() - start
    return {"s": seconds, "load_s": loaded - start, "objective": comp.diagnostics["final_objective"],
            "weights": np.asarray(comp.weights), "evaluated": np.asarray(comp.diagnostics["evaluated"]),
            "objective_at": lambda ws: _one_by_one(base, cands, task, shots, mode, ws)}


def _one_by_one(base, cands, task, shots, mode, ws) -> np.ndarray:
    """The preset's objective at each weight vector, one call each (as the search calls it)."""
    from lorasoup_core.compose import Stack
    from lorasoup_core.compose.lorahub import LorahubSettings, Objective

    with Objective(base, Stack(base, cands), task, shots, LorahubSettings(engine_mode=mode)) as f:
        return np.array([f(w)[0] for w in ws])


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
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, default=1, help="searches per side (seeds seed, seed+1, ...); NGOpt's COBYLA is deterministic, other optimizers are not")
    ap.add_argument("--engine-mode", default="auto", choices=["auto", "dense", "lowrank"],
                    help="how the preset applies a composition (lowrank adds x A^T B^T as PEFT's layers do)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (both sides)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="both sides' dtype")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="write the model and adapters here and reuse them when their shape matches")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    on = {"device": args.device, "dtype": args.dtype}
    task = load_task(args.task)
    shots = task.train[: args.shots]
    prompts, targets = [task.prompt(s) for s in shots], [s.target for s in shots]
    per_seed = []
    with contextlib.ExitStack() as cleanup:
        root = args.workdir or Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        adapters = _model_and_adapters(root, args)
        preset_run(root / "base", adapters[:2], task, shots, 2, args.seed, **on)  # warm-up: imports, kernels
        for seed in range(args.seed, args.seed + args.seeds):
            ref = reference_run(root / "base", adapters, prompts, targets, args.budget, seed, args.device,
                                getattr(torch, args.dtype))
            ours = preset_run(root / "base", adapters, task, shots, args.budget, seed, args.engine_mode, **on)
            # both objectives at the reference's evaluated points and at the preset's recommendation
            at_ref_points = ours["objective_at"](ref["evaluated"])
            split = np.abs(ref["evaluated"] - ours["evaluated"]).max(1) > 1e-6
            per_seed.append({
                "seed": seed, "reference_s": ref["s"], "preset_s": ours["s"], "reference_load_s": ref["load_s"],
                "preset_load_s": ours["load_s"], "reference_rebuild_s": ref["ref"].rebuild_s,
                "reference_forward_s": ref["ref"].forward_s,
                "reference_objective": ref["objective"], "preset_objective": ours["objective"],
                "preset_objective_by_reference": ref["ref"].objective(ours["weights"]),
                "max_objective_diff_at_same_weights": float(np.abs(at_ref_points - ref["values"]).max()),
                "first_diverging_evaluation": int(np.argmax(split)) if split.any() else None})

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in per_seed]))

    first = per_seed[0]
    result = {
        "d_model": args.d_model, "layers": args.layers, "candidates": args.candidates, "rank": args.rank,
        "budget": args.budget, "shots": args.shots, "threads": torch.get_num_threads(),
        "device": args.device, "dtype": args.dtype,
        "engine_mode": args.engine_mode, "seeds": args.seeds,
        # wall time: the mean over seeds
        "reference_s": round(mean("reference_s"), 3), "preset_s": round(mean("preset_s"), 3),
        "speedup": round(mean("reference_s") / mean("preset_s"), 2),
        "reference_load_s": round(mean("reference_load_s"), 3), "preset_load_s": round(mean("preset_load_s"), 3),
        "reference_search_s": round(mean("reference_s") - mean("reference_load_s"), 3),
        "preset_search_s": round(mean("preset_s") - mean("preset_load_s"), 3),
        # the original's own per-evaluation overhead (rebuild + set_peft_model_state_dict) vs its forward
        "reference_rebuild_share": round(mean("reference_rebuild_s") / (mean("reference_rebuild_s")
                                                                         + mean("reference_forward_s")), 4),
        "reference_objective": first["reference_objective"], "preset_objective": first["preset_objective"],
        "reference_objective_mean": mean("reference_objective"), "preset_objective_mean": mean("preset_objective"),
        "max_abs_final_objective_diff": max(abs(r["reference_objective"] - r["preset_objective"]) for r in per_seed),
        # the preset's reported objective is the original's objective at the preset's weights
        "max_reported_vs_reference_objective_diff": max(abs(r["preset_objective"] - r["preset_objective_by_reference"])
                                                        for r in per_seed),
        "max_objective_diff_at_same_weights": max(r["max_objective_diff_at_same_weights"] for r in per_seed),
        "first_diverging_evaluation": [r["first_diverging_evaluation"] for r in per_seed],
        "per_seed_objectives": [[round(r["reference_objective"], 5), round(r["preset_objective"], 5)]
                                for r in per_seed],
    }
    return emit(result, args.json)


def _model_and_adapters(root: Path, args) -> list[Path]:
    """The base and adapters under `root`: reused when an earlier run wrote the same shape there."""
    shape = {k: getattr(args, k) for k in ("d_model", "layers", "candidates", "rank")}
    stamp = root / "shape.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == shape:
        return sorted(p for p in root.glob("adapter*") if p.is_dir())
    root.mkdir(parents=True, exist_ok=True)
    adapters = write_model_and_adapters(root, args.d_model, args.layers, args.candidates, args.rank)
    stamp.write_text(json.dumps(shape))
    return adapters


if __name__ == "__main__":
    main(sys.argv[1:])
