"""Data sources, one module each; importing this package registers them all."""

from lorasoup_core.data.sources import bbh, files, math, skills_source  # noqa: F401
