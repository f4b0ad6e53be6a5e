"""Evaluation: benchmarks (BBH, skills, GSM8K, GSM-hard), batched generation, metrics, the code sandbox."""

from lorasoup_core.bench.generation import GenerationResult, generate
from lorasoup_core.bench.harness import (
           BENCHMARKS,
           MODES,
           BenchmarkConfig,
           EvalReport,
           evaluate,
           evaluate_task,
)

__all__ = ["BENCHMARKS", "MODES", "BenchmarkConfig", "EvalReport", "GenerationResult", "evaluate", "evaluate_task",
           "generate"]
