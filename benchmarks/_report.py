"""Shared output of the benchmark scripts: one JSON object with --json, else aligned key: value lines."""

from __future__ import annotations

import json
from typing import Any


def emit(result: dict[str, Any], as_json: bool) -> dict[str, Any]:
    if as_json:
        print(json.dumps(result))
    else:
        width = max(map(len, result), default=0)
        for k, v in result.items():
            print(f"{k:>{width}}: {v}")
    return result
