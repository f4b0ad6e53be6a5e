"""lm-evaluation-harness interop: score an exported adapter with `lm_eval --model hf ... peft=<adapter>` and
with `lorasoup eval` on the same BBH examples, and print one JSON object comparing the two.

    .venv/bin/python benchmarks/lm_eval_interop.py --adapter <exported dir> --task boolean_expressions --limit 50

lm-eval is pinned in the dev extra; without it this prints {"skipped": "lm_eval not installed: pip install
lm-eval"} and exits 0. `lorasoup eval --multiple-choice --predictions` runs first (fp32, adapter unmerged);
the prompts it scored become custom lm-eval tasks (YAML over local JSONL: no network, exactly those
examples), all run by one `lm_eval` call with the adapter as `peft=`:
- generation: greedy, lorasoup's BBH budget (24 tokens). lorasoup drops leading whitespace before cutting
  at its stop string ("\\nTrue\\n" gives "True"); lm-eval's `until` would stop at that first newline and
  give "", so `until` is empty and a regex filter makes lorasoup's cut. Exact match ignores case and '.',
  as lorasoup's `exact_match`; lm-eval's generations are also scored with lorasoup's BBH metric.
- multiple choice (tasks with a closed answer set): each option's log-likelihood after the prompt, the
  choices holding lorasoup's separator (target_delimiter ""), the best option as the answer.
Per task it reports both scores, how often the generations are the same (and the first that differ) and
how often the picks are. `--lm-eval-task bbh_zeroshot_<task>` runs lm-eval's built-in task instead (its
data from the hub, its prompts, so only roughly comparable).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SKIPPED = {"skipped": "lm_eval not installed: pip install lm-eval"}
EXACT_MATCH = {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True,
               "regexes_to_ignore": ["\\."]}  # = lorasoup's exact_match (LoraHub's: strip, lower, drop '.')
FILTER = "lorasoup_cut"
_SAMPLES_TIME = re.compile(r"\d{4}-\d\d-\d\dT[\d\-.:]+\.jsonl")  # samples_<task>_<time>.jsonl, not <task>_mc's


class CommandFailed(RuntimeError):
    """A subprocess exited non-zero; the message holds the command and the end of its output."""


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """stdout of `cmd`; on failure, CommandFailed naming the command with the end of its stderr and stdout."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise CommandFailed(f"{' '.join(cmd)} failed ({proc.returncode}):\n--- stderr\n{proc.stderr[-6000:]}"
                            f"\n--- stdout\n{proc.stdout[-2000:]}")
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


def lorasoup_eval(spec: str, adapter: Path, tasks: list[str], limit: int, seed: int, device: str, work: Path,
                  dtype: str = "float32") -> dict:
    """`lorasoup eval --multiple-choice` on BBH tasks through the adapter (unmerged, as PEFT in lm-eval): per
    task its score, its multiple-choice score (None for an open answer set) and per-example predictions."""
    preds = work / "lorasoup_predictions.json"
    cmd = [str(Path(sys.executable).with_name("lorasoup")), "eval", "--benchmark", "bbh", "--tasks", ",".join(tasks),
           "--model", spec, "--adapter", str(adapter), "--limit", str(limit), "--seed", str(seed), "--device",
           device, "--dtype", dtype, "--no-merge-adapter", "--multiple-choice", "--json", "--predictions", str(preds)]
    rows = json.loads(_run(cmd).strip().splitlines()[-1])["rows"]
    predictions = json.loads(preds.read_text())
    found = {}
    for task in tasks:
        main = next(r for r in rows if r["task"] == task and "/" not in r["method"])
        mc = next((r for r in rows if r["task"] == task and r["method"].endswith("/mc")), None)
        found[task] = {"score": main["score"], "mc_score": mc and mc["score"], "n": main["n"],
                       "predictions": predictions[task]}
    return {"command": " ".join(cmd), "tasks": found}


def task_options(task: str, seed: int) -> list[str] | None:
    """The options `lorasoup eval --multiple-choice` scores for a BBH task (None: open answer set)."""
    from lorasoup_core.bench.choice import closed_answer_set
    from lorasoup_core.data import load_task

    return closed_answer_set(load_task({"source": "bbh", "name": task, "seed": seed}))


def cut_pattern(stop: Sequence[str]) -> str:
    """A regex whose group is lorasoup's `cut_at_stop(text, stop)`: leading whitespace dropped, then the text
    up to the first stop string (lm-eval's regex filter strips the group, as the metrics do)."""
    stops = "|".join(re.escape(s) for s in stop if s)
    return rf"(?s)^\s*((?:(?!{stops}).)*)" if stops else r"(?s)^\s*(.*)"


def _write(name: str, rows: list[dict[str, Any]], config: dict[str, Any], folder: Path) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / f"{name}.yaml"
    config = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
              "test_split": "test", **config}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_task(name: str, predictions: list[dict[str, Any]], folder: Path) -> Path:
    """A custom lm-eval generation task over lorasoup's scored prompts and targets: greedy, lorasoup's BBH
    budget; `until` is empty (only EOS ends early) and a regex filter makes lorasoup's stop cut."""
    from lorasoup_core.bench import BENCHMARKS

    bbh = BENCHMARKS.get("bbh")
    config = {
        "output_type": "generate_until", "doc_to_text": "prompt", "doc_to_target": "target",
        "generation_kwargs": {"until": [], "max_gen_toks": bbh.max_new_tokens, "do_sample": False},
        "filter_list": [{"name": FILTER, "filter": [
            {"function": "regex", "regex_pattern": cut_pattern(bbh.stop), "group_select": 0, "fallback": ""},
            {"function": "take_first"}]}],
        "metric_list": [EXACT_MATCH],
    }
    return _write(name, [{"prompt": p["prompt"], "target": p["target"]} for p in predictions], config, folder)


def write_mc_task(name: str, predictions: list[dict[str, Any]], options: list[str], folder: Path) -> Path:
    """A custom lm-eval multiple-choice task: each choice is lorasoup's continuation text (separator +
    option), so target_delimiter is empty; gold is the target's index among the options. (lm-eval moves a
    prompt's trailing whitespace into the continuation; BBH prompts end in 'Answer:', so none moves.)"""
    from lorasoup_core.bench.choice import continuation_text

    rows = [{"prompt": p["prompt"], "target": p["target"], "gold": options.index(p["target"].strip()),
             "choices": [continuation_text(p["prompt"], o) for o in options]} for p in predictions]
    config = {"output_type": "multiple_choice", "doc_to_text": "prompt", "doc_to_choice": "choices",
              "doc_to_target": "gold", "target_delimiter": "",
              "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    return _write(name, rows, config, folder)


def run_lm_eval(base_dir: str, adapter: Path, tasks: list[str], limit: int | None, device: str, work: Path,
                include: Path | None, dtype: str = "float32", batch_size: int = 8) -> dict[str, Any]:
    """One `lm_eval --model hf` call with the adapter as `peft=`; per task its score and logged samples,
    and the command."""
    out = work / "lm_eval"
    shutil.rmtree(out, ignore_errors=True)  # a reused --work-dir must not add an earlier run's samples
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
           f"pretrained={base_dir},peft={adapter},dtype={dtype}", "--tasks", ",".join(tasks),
           "--device", device, "--batch_size", str(batch_size), "--output_path", str(out), "--log_samples"]
    env = dict(os.environ)
    if include is not None:  # local tasks over all their rows: no --limit, and no hub needed
        cmd += ["--include_path", str(include)]
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("HF_DATASETS_OFFLINE", "1")
    elif limit is not None:
        cmd += ["--limit", str(limit)]
    _run(cmd, env)
    results = json.loads(max(out.rglob("results_*.json")).read_text())["results"]
    found = {}
    for task in tasks:
        metric = next(k for k in results[task] if k.split(",")[0] in ("exact_match", "acc") and "stderr" not in k)
        files = [f for f in out.rglob(f"samples_{task}_*.jsonl") if _SAMPLES_TIME.fullmatch(f.name[len(task) + 9:])]
        samples = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        found[task] = {"score": results[task][metric], "metric": metric, "n": len(samples), "samples": samples}
    found["command"] = " ".join(cmd)
    return found


def generation(sample: dict) -> str:
    """lm-eval's filtered generation (lorasoup's cut on the custom task)."""
    resp = sample["filtered_resps"][0]
    return resp[0] if isinstance(resp, list) else resp


def choice_logliks(sample: dict) -> list[float]:
    """lm-eval's log-likelihood of each choice of a multiple-choice sample."""
    return [float(r[0]) for r in sample["filtered_resps"]]


def paired(predictions: list[dict[str, Any]], samples: list[dict]) -> list[tuple[dict[str, Any], dict]]:
    """(lorasoup prediction, lm-eval sample) for the same prompt, in lorasoup's order."""
    by_prompt = {s["doc"]["prompt"]: s for s in samples}
    return [(p, by_prompt[p["prompt"]]) for p in predictions if p["prompt"] in by_prompt]


def compare_generation(ours: dict, theirs: dict) -> dict:
    """Scores side by side (lorasoup's BBH metric and exact match on both sides' generations) and how
    often the two generations are the same."""
    from lorasoup_core.bench.metrics import score_all

    pairs = paired(ours["predictions"], theirs["samples"])
    n = max(len(pairs), 1)
    differ = [(p, generation(s)) for p, s in pairs if generation(s) != p["prediction"].strip()]
    targets = [p["target"] for p, _ in pairs]
    return {"lorasoup_score": ours["score"], "lm_eval_generations_lorasoup_metric":
            sum(score_all("bbh", [generation(s) for _, s in pairs], targets)) / n,
            "lorasoup_exact_match": sum(score_all("exact_match", [p["prediction"] for p, _ in pairs], targets)) / n,
            "lm_eval_exact_match": theirs["score"], "lm_eval_metric": theirs["metric"],
            "same_generation": 1 - len(differ) / n, "n_lorasoup": ours["n"], "n_lm_eval": theirs["n"],
            "n_paired": len(pairs), "generations_that_differ": [
                {"prompt_end": p["prompt"][-60:], "lorasoup": p["prediction"], "lm_eval": g} for p, g in differ[:5]]}


def compare_choices(ours: dict, theirs: dict, options: list[str]) -> dict:
    """Multiple-choice accuracy on both sides and how often both pick the same option."""
    pairs = paired(ours["predictions"], theirs["samples"])
    picks = [(p["choice"], options[max(range(len(options)), key=choice_logliks(s).__getitem__)]) for p, s in pairs]
    return {"lorasoup_mc": ours["mc_score"], "lm_eval_mc": theirs["score"], "lm_eval_mc_metric": theirs["metric"],
            "same_choice": sum(a == b for a, b in picks) / max(len(picks), 1), "n_mc_paired": len(picks)}


def custom_tasks(ours: dict, seed: int, folder: Path) -> dict[str, tuple[str, str | None, list[str] | None]]:
    """Per BBH task: (its lm-eval generation task, its multiple-choice task or None, the options)."""
    made = {}
    for task, result in ours["tasks"].items():
        gen, mc, options = f"lorasoup_bbh_{task}", f"lorasoup_bbh_{task}_mc", task_options(task, seed)
        write_task(gen, result["predictions"], folder)
        if options:
            write_mc_task(mc, result["predictions"], options, folder)
        made[task] = (gen, mc if options else None, options)
    return made


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter", required=True, type=Path, help="An adapter directory exported by lorasoup.")
    ap.add_argument("--task", default="boolean_expressions", help="BBH task name, or NAME,NAME.")
    ap.add_argument("--limit", type=int, default=20, help="Examples per task scored by both.")
    ap.add_argument("--base", help="HF directory or hub id lm-eval loads (default: the card's converted base).")
    ap.add_argument("--lm-eval-task", help="An lm-eval task name (e.g. bbh_zeroshot_<task>) instead of the "
                    "custom tasks over lorasoup's examples (one --task).")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available).")
    ap.add_argument("--dtype", default="float32", help="Weights' dtype on both sides.")
    ap.add_argument("--batch-size", type=int, default=8, help="lm-eval's batch size.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", type=Path, help="Keep the tasks, predictions and lm-eval samples here "
                    "(default: a temporary directory).")
    args = ap.parse_args(argv)
    if importlib.util.find_spec("lm_eval") is None:  # checked first: no model is loaded to say so
        print(json.dumps(SKIPPED))
        return SKIPPED
    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    if args.lm_eval_task and len(tasks) != 1:
        ap.error("--lm-eval-task compares with one --task")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    spec, base_dir = base_dir_for(args.adapter)
    base_dir = args.base or base_dir
    adapter = args.adapter.resolve()
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="lorasoup-lm-eval-") as tmp:
            work = args.work_dir or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            ours = lorasoup_eval(spec, adapter, tasks, args.limit, args.seed, device, work, args.dtype)
            if args.lm_eval_task:
                theirs = run_lm_eval(base_dir, adapter, [args.lm_eval_task], args.limit, device, work, None,
                                     args.dtype, args.batch_size)
                own, mine = theirs[args.lm_eval_task], ours["tasks"][tasks[0]]
                results[tasks[0]] = {"lm_eval_task": args.lm_eval_task, "lorasoup_score": mine["score"],
                                     "lm_eval_score": own["score"], "lm_eval_metric": own["metric"],
                                     "n_lorasoup": mine["n"], "n_lm_eval": own["n"]}
            else:
                made = custom_tasks(ours, args.seed, work / "tasks")
                names = [n for gen, mc, _ in made.values() for n in (gen, mc) if n]
                theirs = run_lm_eval(base_dir, adapter, names, args.limit, device, work, work / "tasks",
                                     args.dtype, args.batch_size)
                for task, (gen, mc, options) in made.items():
                    results[task] = compare_generation(ours["tasks"][task], theirs[gen])
                    if mc:
                        results[task] |= compare_choices(ours["tasks"][task], theirs[mc], options)
    except CommandFailed as err:
        raise SystemExit(str(err)) from None
    result = {"base": base_dir, "adapter": str(args.adapter), "device": device, "dtype": args.dtype,
              "limit": args.limit, "results": results, "lorasoup_command": ours["command"],
              "lm_eval_command": theirs["command"]}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
