"""One small config per benchmark over the shared template in `base`."""

from lorasoup_core.bench.benchmarks import bbh, gsm8k, gsm_hard, skills  # noqa: F401  (register)
from lorasoup_core.bench.benchmarks.base import BENCHMARKS, GENERIC, BenchmarkConfig

__all__ = ["BENCHMARKS", "GENERIC", "BenchmarkConfig"]
