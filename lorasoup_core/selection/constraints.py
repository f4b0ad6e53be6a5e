"""Hard constraints: same base model, compatible adapted modules. Read cards and adapter configs only."""

from __future__ import annotations

import json
from pathlib import Path

from lorasoup_core.compose import Candidate
from lorasoup_core.selection.base import FILTERS


def _targets(c: Candidate) -> tuple[str, ...]:
    if c.card is not None and c.card.target_modules:
        return tuple(sorted(c.card.target_modules))
    cfg = Path(c.path) / "adapter_config.json"
    if not cfg.is_file():
        return ()
    tm = json.loads(cfg.read_text()).get("target_modules") or []
    return tuple(sorted([tm] if isinstance(tm, str) else tm))


@FILTERS.register("same_base")
def same_base(base, cands, target, shots, spec, log):
    """Drop adapters whose card names another base model (by weight fingerprint)."""
    kept = {}
    for c in cands:
        if c.card is not None and c.card.base_fingerprint != base.fingerprint:
            log.append(f"same_base: dropped {c.name}: trained on {c.card.base_model}, not {base.spec}")
        else:
            kept[c.name] = 1.0
    return kept


@FILTERS.register("compatible")
def compatible(base, cands, target, shots, spec, log):
    """Keep adapters that adapt the same modules as the majority of the pool (compositions need one set)."""
    targets = {c.name: _targets(c) for c in cands}
    if not targets:
        return {}
    values = list(targets.values())
    common = max(set(values), key=values.count)
    kept = {}
    for c in cands:
        if targets[c.name] != common:
            log.append(f"compatible: dropped {c.name}: adapts {list(targets[c.name])}, the pool adapts {list(common)}")
        else:
            kept[c.name] = 1.0
    return kept
