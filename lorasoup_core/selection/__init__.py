"""Candidate filtering: chainable strategies behind one registry, after hard constraints.

`select_candidates` runs the constraints (same base model, compatible modules), then each filter of
the chain on what is left, keeping the top k by score; every decision goes to the selection log (and
to the `lorasoup.selection` logger). Filters read cards and adapter configs; only `loss` loads
weights, one adapter at a time, so memory does not grow with the pool.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Collection

from lorasoup_core.compose import Candidate, CompositionError
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel
from lorasoup_core.selection import arrow, constraints, fallback, scorers  # noqa: F401  (register the filters)
from lorasoup_core.selection.base import FILTERS, FilterSpec, Selection

logger = logging.getLogger("lorasoup.selection")
CONSTRAINTS = ("same_base", "compatible")


def select_candidates(base: LoadedModel, pool: list[Candidate], target: Task, shots: list[Example],
                      chain: list[FilterSpec | str], k: int | None = None, exclude: Collection[str] = ()) -> Selection:
    """Constraints, then each filter of `chain` in order, each keeping its own top `spec.k`; `k` caps how
    many the last filter keeps (the number of candidates composed). Candidates named in `exclude` (e.g.
    the target's own adapter, for a leave-one-out protocol) are never considered."""
    if k is not None and k < 1:  # k = 0 read as "no cap" would compose the whole pool
        raise CompositionError(f"k = {k} candidates for {target.name!r}: compose at least 1 (k >= 1)")
    log: list[str] = []
    left_out = sorted(c.name for c in pool if c.name in exclude)
    if left_out:
        pool = [c for c in pool if c.name not in exclude]
        log.append(f"excluded: {', '.join(left_out)}")
    if not pool:
        raise CompositionError(f"the candidate pool for {target.name!r} is empty: nothing to select from")
    dupes = sorted(name for name, count in Counter(c.name for c in pool).items() if count > 1)
    if dupes:
        raise CompositionError(f"candidate names must be unique; repeated: {', '.join(dupes)}")
    specs = [FilterSpec(name=s) if isinstance(s, str) else s for s in chain]
    for s in specs:
        FILTERS.get(s.name)  # unknown names fail before any work
    cands = list(pool)
    scores: dict[str, float] = {}
    steps = [FilterSpec(name=c, k=None) for c in CONSTRAINTS if c not in {s.name for s in specs}] + specs
    for i, spec in enumerate(steps):
        scores = FILTERS.get(spec.name)(base, cands, target, shots, spec, log)
        keep = spec.k if spec.name in CONSTRAINTS or k is None or i < len(steps) - 1 else min(spec.k or k, k)
        ranked = sorted((c for c in cands if c.name in scores), key=lambda c: -scores[c.name])
        ranked = ranked[:keep] if keep else ranked
        if spec.name not in CONSTRAINTS:
            log.append(f"{spec.name}: kept {len(ranked)} of {len(cands)}: " +
                       ", ".join(f"{c.name}={scores[c.name]:.4g}" for c in ranked))
        cands = ranked
        if not cands:
            break
    for line in log:
        logger.info("%s: %s", target.name, line)
    if not cands:
        raise CompositionError(f"no candidate adapters left for {target.name!r}: " + "; ".join(log))
    return Selection(cands, {c.name: scores.get(c.name, math.nan) for c in cands}, log)


__all__ = ["CONSTRAINTS", "FILTERS", "FilterSpec", "Selection", "select_candidates"]
