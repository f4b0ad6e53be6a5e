"""`embedding-or-arrow`: the embedding filter where every candidate has stored examples, else the `arrow`
filter for all of them. What `recommended` selects with: a pool with imported adapters (no stored examples,
so no embedding) is ranked from the weights instead of losing those adapters, with one comparable score
for every candidate. In study 1 the arrow filter's 5 candidates gave LoraHub's search 84% of the embedding
filter's gain over the random draw (README, Findings)."""

from __future__ import annotations

from lorasoup_core.selection.arrow import arrow_filter
from lorasoup_core.selection.base import FILTERS
from lorasoup_core.selection.scorers import embedding_filter, embedding_problem


@FILTERS.register("embedding-or-arrow")
def embedding_or_arrow(base, cands, target, shots, spec, log):
    """embedding when every candidate has a stored embedding; otherwise arrow over all, with a line saying why."""
    size = getattr(getattr(base.model, "config", None), "hidden_size", None)
    lacking = [c.name for c in cands if embedding_problem(c, size if isinstance(size, int) else None)]
    if not lacking:
        return embedding_filter(base, cands, target, shots, spec, log)
    log.append(f"embedding-or-arrow: {len(lacking)} of {len(cands)} candidates have no usable stored embedding "
               f"({', '.join(map(repr, lacking[:3]))}{', ...' if len(lacking) > 3 else ''}): all ranked by arrow")
    return arrow_filter(base, cands, target, shots, spec, log)
