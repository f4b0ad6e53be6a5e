"""GSM-hard, PAL style: the prompt opens a ```python block, the model writes `def solution():`, the
sandbox runs it ('pal'); the last number in the text is scored beside it ('last_number'). ICL uses one
shared set of demonstrations per run, like PAL's fixed prompt."""

from lorasoup_core.bench.suites.base import BENCHMARKS, BenchmarkConfig

GSM_HARD = BENCHMARKS.register("gsm-hard", "gsm_hard")(BenchmarkConfig(
    source="gsm-hard", default_tasks=("gsm-hard",), max_new_tokens=256, stop=("```", "\nQuestion:"),
    metric="pal", extra_metrics=("last_number",), demo_answer="code", demo_suffix="\n```",
    icl_demos="shared"))  # PAL: one fixed few-shot prompt for every question
