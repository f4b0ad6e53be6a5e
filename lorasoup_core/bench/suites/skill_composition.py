"""The procedural skill-composition suite: 'all' means the composed targets (upstream skills by name)."""

from lorasoup_core.bench.suites.base import BENCHMARKS, BenchmarkConfig
from lorasoup_core.data.procedural import COMPOSED_TASKS

SKILLS = BENCHMARKS.register("skills")(BenchmarkConfig(
    source="skills", default_tasks=tuple(sorted(COMPOSED_TASKS)), max_new_tokens=16, stop=("\n",)))
