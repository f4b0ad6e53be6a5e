"""One small config per benchmark over the shared template in `base`."""

from lorasoup_core.bench.suites import bbh, gsm8k, gsm_hard, skill_composition  # noqa: F401  (register)
from lorasoup_core.bench.suites.base import BENCHMARKS, GENERIC, BenchmarkConfig, scoring_spec, with_settings

__all__ = ["BENCHMARKS", "GENERIC", "BenchmarkConfig", "scoring_spec", "with_settings"]
