"""The procedural skill suite: upstream skills (one adapter each) and composed target tasks that
each need two of them. Deterministic from a seed, scored by exact match, shipped with the package."""

from lorasoup_core.data.procedural.generators import COMPOSED_TASKS, GENERATORS, UPSTREAM_SKILLS, generate

__all__ = ["COMPOSED_TASKS", "GENERATORS", "UPSTREAM_SKILLS", "generate"]
