"""lm-evaluation-harness interop: score an exported adapter with `lm_eval --model hf ... peft=<adapter>` and
with `lorasoup eval` on the same BBH examples, and print one JSON object comparing the two.

    .venv/bin/python benchmarks/lm_eval_interop.py --adapter <exported dir> --task boolean_expressions --limit 20

lm-eval is not a lorasoup dependency; without it this prints {"skipped": "lm_eval not installed: pip install
lm-eval"} and exits 0. `lorasoup eval --predictions` runs first; the prompts and targets it scored become a
custom lm-eval task (a YAML over a local JSONL, so lm-eval needs no network and sees exactly those examples),
generating greedily with the same budget and stop string as lorasoup's BBH config. lm-eval's generations are
also scored with lorasoup's own BBH metric, separating generation differences from metric differences.
`--lm-eval-task bbh_zeroshot_<task>` runs lm-eval's built-in task instead (its data from the hub, its
examples and prompt format, so only roughly comparable).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SKIPPED = {"skipped": "lm_eval not installed: pip install lm-eval"}


def _run(cmd: list[str]) -> str:
    """stdout of `cmd`; on failure, exit naming the command with the end of its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def base_dir_for(adapter: Path) -> tuple[str, str]:
    """(lorasoup spec, a local HF directory of the same weights) for an exported adapter: the card's path
    where it exists on this machine, else the spec loaded here (a preset is converted once)."""
    from lorasoup_core.adapters import AdapterCard

    card = AdapterCard.read(adapter)
    if card.base_model_path and (Path(card.base_model_path) / "config.json").is_file():
        return card.base_model, card.base_model_path
    from lorasoup_core.models import load_model

    base = load_model(card.base_model, device="cpu")
    if base.fingerprint != card.base_fingerprint:
        raise SystemExit(f"{card.base_model!r} here is not the base {adapter} was made on (fingerprints differ)")
    if not base.hf_path:
        raise SystemExit(f"{card.base_model!r} has no Hugging Face directory lm-eval could load; pass --base")
    return card.base_model, base.hf_path


def lorasoup_eval(spec: str, adapter: Path, task: str, limit: int, seed: int, device: str, work: Path) -> dict:
    """`lorasoup eval` on the BBH task through the adapter; its score and per-example predictions."""
    preds = work / "lorasoup_predictions.json"
    cmd = [str(Path(sys.executable).with_name("lorasoup")), "eval", "--benchmark", "bbh", "--tasks", task,
           "--model", spec, "--adapter", str(adapter), "--limit", str(limit), "--seed", str(seed), "--device",
           device, "--no-merge-adapter", "--json", "--predictions", str(preds)]
    out = _run(cmd)
    report = json.loads(out.strip().splitlines()[-1])
    row = next(r for r in report["rows"] if "/" not in r["method"])  # the main metric's row
    return {"score": row["score"], "n": row["n"], "command": " ".join(cmd), "predictions": json.loads(preds.read_text())[task]}


def write_task(name: str, predictions: list[dict[str, Any]], folder: Path) -> Path:
    """A custom lm-eval task over lorasoup's scored prompts and targets (greedy, BBH budget and stop)."""
    import yaml

    from lorasoup_core.bench import BENCHMARKS

    bbh = BENCHMARKS.get("bbh")
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"prompt": p["prompt"], "target": p["target"]}) + "\n" for p in predictions))
    config = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "{{target}}",
        "generation_kwargs": {"until": list(bbh.stop), "max_gen_toks": bbh.max_new_tokens, "do_sample": False},
        "filter_list": [{"name": "strip", "filter": [{"function": "remove_whitespace"}, {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True}],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_lm_eval(base_dir: str, adapter: Path, task: str, limit: int, device: str, work: Path,
                include: Path | None) -> dict:
    """`lm_eval --model hf` with the adapter as `peft=`; its score and logged samples."""
    out = work / "lm_eval"
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
           f"pretrained={base_dir},peft={adapter},dtype=float32", "--tasks", task, "--limit", str(limit),
           "--device", device, "--batch_size", "8", "--output_path", str(out), "--log_samples"]
    if include is not None:
        cmd += ["--include_path", str(include)]
    _run(cmd)
    results = json.loads(max(out.rglob("results_*.json")).read_text())["results"][task]
    score_key = next(k for k in results if k.startswith("exact_match,") and "stderr" not in k)
    samples = [json.loads(line) for f in out.rglob(f"samples_{task}_*.jsonl") for line in f.read_text().splitlines()]
    return {"score": results[score_key], "metric": score_key, "n": len(samples), "command": " ".join(cmd),
            "samples": samples}


def _generation(sample: dict) -> str:
    resp = sample["resps"][0]
    return resp[0] if isinstance(resp, list) else resp


def compare(ours: dict, theirs: dict, custom: bool) -> dict:
    """Scores side by side; on the custom task, lm-eval's generations rescored by lorasoup's metric and
    how often the two generations agree."""
    from lorasoup_core.bench.metrics import bbh

    result = {"lorasoup_score": ours["score"], "lm_eval_score": theirs["score"], "lm_eval_metric": theirs["metric"],
              "n_lorasoup": ours["n"], "n_lm_eval": theirs["n"]}
    if custom:
        by_prompt = {p["prompt"]: p for p in ours["predictions"]}
        pairs = [(by_prompt[s["doc"]["prompt"]], _generation(s)) for s in theirs["samples"]
                 if s["doc"]["prompt"] in by_prompt]
        if pairs:
            result["lm_eval_generations_lorasoup_metric"] = sum(bbh(g, p["target"]) for p, g in pairs) / len(pairs)
            result["same_generation"] = sum(g.strip() == p["prediction"].strip() for p, g in pairs) / len(pairs)
    result["difference"] = theirs["score"] - ours["score"]
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter", required=True, type=Path, help="An adapter directory exported by lorasoup.")
    ap.add_argument("--task", default="boolean_expressions", help="BBH task name.")
    ap.add_argument("--limit", type=int, default=20, help="Examples scored by both.")
    ap.add_argument("--base", help="HF directory or hub id lm-eval loads (default: the card's converted base).")
    ap.add_argument("--lm-eval-task", help="An lm-eval task name (e.g. bbh_zeroshot_<task>) instead of the "
                    "custom task over lorasoup's examples.")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if importlib.util.find_spec("lm_eval") is None:  # checked first: no model is loaded to say so
        print(json.dumps(SKIPPED))
        return SKIPPED
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    spec, base_dir = base_dir_for(args.adapter)
    base_dir = args.base or base_dir
    with tempfile.TemporaryDirectory(prefix="lorasoup-lm-eval-") as tmp:
        work = Path(tmp)
        ours = lorasoup_eval(spec, args.adapter.resolve(), args.task, args.limit, args.seed, device, work)
        include = None
        task = args.lm_eval_task
        if task is None:
            task = f"lorasoup_bbh_{args.task}"
            include = write_task(task, ours["predictions"], work / "tasks").parent
        theirs = run_lm_eval(base_dir, args.adapter.resolve(), task, args.limit, device, work, include)
    result = {"task": args.task, "lm_eval_task": task, "base": base_dir, "adapter": str(args.adapter),
              **compare(ours, theirs, custom=include is not None),
              "lorasoup_command": ours["command"], "lm_eval_command": theirs["command"]}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
