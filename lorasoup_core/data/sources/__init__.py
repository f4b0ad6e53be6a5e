"""Data sources, one module each; importing this package registers them all."""

from lorasoup_core.data.sources import bbh, codealpaca, gsm8k, gsm_hard, hf, jsonl, skills  # noqa: F401
