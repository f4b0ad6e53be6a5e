"""Evaluation: benchmarks (BBH, skills, GSM8K, GSM-hard), batched generation, metrics, the code sandbox."""

from lorasoup_core.bench.generation import GenerationResult, generate
from lorasoup_core.bench.harness import MODES, EvalReport, benchmark_tasks, evaluate_benchmark, evaluate_task
from lorasoup_core.bench.suites import BENCHMARKS, BenchmarkConfig

__all__ = ["BENCHMARKS", "MODES", "BenchmarkConfig", "EvalReport", "GenerationResult", "benchmark_tasks",
           "evaluate_benchmark", "evaluate_task", "generate"]
