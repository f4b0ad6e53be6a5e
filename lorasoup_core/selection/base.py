"""Filter specs, the filter registry and what a selection returns."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import Field

from lorasoup_core.compose import Candidate
from lorasoup_core.config import StrictModel
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel
from lorasoup_core.plugins import Registry


class FilterSpec(StrictModel):
    name: str = Field(description="Filter name: random, loss, embedding, arrow, embedding-or-arrow, oracle, same_base, "
                      "compatible.")
    k: int | None = Field(20, ge=1, description="Candidates kept (top-k by score); None keeps all that pass.")
    seed: int = Field(0, description="random: the sampling seed.")


@dataclass
class Selection:
    candidates: list[Candidate]
    scores: dict[str, float] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


# A filter: (base, candidates, target, shots, spec, log) -> {name: score} for the candidates it lets through
# (higher is better); hard constraints score 1.0 and leave out (and log) the ones they reject.
Filter = Callable[[LoadedModel, list[Candidate], Task, list[Example], FilterSpec, list[str]], dict[str, float]]
FILTERS: Registry[Filter] = Registry("candidate filter")


def skip(log: list[str], target: Task, line: str) -> None:
    """A candidate a ranking filter cannot score: one line naming it, in the selection log and the
    `lorasoup.selection` logger (the filter ranks the others)."""
    log.append(line)
    logging.getLogger("lorasoup.selection").warning("%s: %s", target.name, line)
