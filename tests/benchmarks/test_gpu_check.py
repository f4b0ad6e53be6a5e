"""benchmarks/gpu_check.sh, the one command a session with a GPU runs, at toy sizes on CPU (--quick): it
cannot rot between the rare sessions that are lent a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a GPU session reads off each line (beside section, device, wall_s, peak_gpu_mb).
EXPECTED = {
    "env": {"torch", "transformers", "peft", "nevergrad", "python"},
    "correctness": {"passed", "checks", "tol", "max_abs_diff_vs_float64", "error_over_tol", "adapter_effect",
                    "objective", "float32_matmul_precision"},
    "lorahub_parity": {"variant", "speedup", "reference_objective", "preset_objective", "reference_rebuild_share",
                       "reference_s", "preset_s", "max_objective_diff_at_same_weights"},
    "compose_step": {"variant", "population", "step_s", "forward_s", "overhead_ratio", "evals_per_s"},
    "eval_throughput": {"variant", "naive_examples_per_s", "batched_examples_per_s", "harness_examples_per_s",
                        "limit_examples_per_s", "harness_over_limit", "identical_harness", "params_m"},
    "summary": {"failed", "correctness_passed", "heavy_imported"},
}


def test_quick_run_prints_every_section_and_passes_the_correctness_check(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--quick", "--device", "cpu",
                           "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr (end)\n{proc.stderr[-8000:]}"
    assert proc.returncode == 0, log
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines == [json.loads(x) for x in (tmp_path / "gpu_check.jsonl").read_text().splitlines()], log
    by: dict[str, list[dict]] = {}
    for line in lines:
        by.setdefault(line["section"], []).append(line)
    assert list(by) == list(EXPECTED), log
    for section, keys in EXPECTED.items():
        for line in by[section]:
            assert "error" not in line, f"{section}: {line.get('error')}\n{line.get('traceback')}\n{log}"
            assert keys <= line.keys(), f"{section} lacks {sorted(keys - line.keys())}\n{log}"
            if section not in ("env", "summary"):
                assert {"device", "wall_s", "peak_gpu_mb"} <= line.keys(), log
    assert [x["variant"] for x in by["lorahub_parity"]] == ["float32", "bfloat16"]
    assert [x["population"] for x in by["compose_step"]] == [1, 4, 8]
    assert [x["variant"] for x in by["eval_throughput"]] == ["bbh-icl", "bbh-zero-shot"]
    assert all(x["gen_tokens_per_example"] > 0 for x in by["eval_throughput"])  # the decode loop ran
    check = by["correctness"][0]
    assert check["passed"] and all(check["checks"].values()), check
    assert by["lorahub_parity"][0]["max_objective_diff_at_same_weights"] < 1e-4  # fp32: the same objective
    summary = by["summary"][0]
    assert summary["failed"] == [] and summary["correctness_passed"] is True
    assert summary["heavy_imported"] == []  # the GPU image has no mlflow, prefect, datasets ...


def test_tolerance_admits_fp32_rounding_but_not_tf32_or_bf16():
    saved = list(sys.path)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from gpu_check import fp32_tolerance
    finally:
        sys.path[:] = saved  # gpu_check puts benchmarks/ and the repo first on import
    # flan-t5-large-like: k = d_ff 4096, 49 layers deep, logits up to 20
    tol = fp32_tolerance(4096, 49, 20.0)
    assert 20.0 * 2.0**-24 * 64 < tol  # above one fp32 dot product's typical error (sqrt(k) u max|logit|)
    assert tol < 20.0 * 2.0**-11  # below TF32's unit roundoff on the logits alone (bf16's is 4x larger still)
