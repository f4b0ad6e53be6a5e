"""BIG-Bench Hard: 27 tasks, LoraHub's zero-shot format, the official 3-shot CoT prompts on request."""

from lorasoup_core.bench.suites.base import BENCHMARKS, BenchmarkConfig

BBH = BENCHMARKS.register("bbh")(BenchmarkConfig(
    source="bbh", max_new_tokens=24, stop=("\n",), metric="bbh", cot_max_new_tokens=256, cot_stop=("\n\nQ:",)))
