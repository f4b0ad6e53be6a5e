"""GSM8K: the final number (after '####' or 'The answer is'), compared numerically. ICL demonstrations
show the worked answers."""

from lorasoup_core.bench.suites.base import BENCHMARKS, BenchmarkConfig

GSM8K = BENCHMARKS.register("gsm8k")(BenchmarkConfig(
    source="gsm8k", default_tasks=("gsm8k",), max_new_tokens=256, stop=("\n\nQuestion:", "\nQuestion:"),
    metric="gsm8k", demo_answer="answer"))
