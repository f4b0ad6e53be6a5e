"""Typed results of an experiment: what one target's compose-and-evaluate returns (also across a
deployment boundary) and what the whole run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lorasoup_core.registry import AdapterVersion
from lorasoup_core.reporting import ResultRow


@dataclass
class TargetResult:
    target: str
    data_fingerprint: str
    rows: list[ResultRow]  # one per method and baseline: score with its 95% interval
    seed: int = 0
    scores: dict[str, list[float]] = field(default_factory=dict)  # method -> per-example main-metric scores
    throughput: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> examples/s, tokens ...
    weights: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> adapter -> weight
    traces: dict[str, list[float]] = field(default_factory=dict)  # method -> objective per evaluation
    selection: dict[str, float] = field(default_factory=dict)  # candidate -> its filter score
    adapters: dict[str, AdapterVersion] = field(default_factory=dict)  # method -> the adapter it registered


@dataclass
class ExperimentResult:
    experiment: str
    run_id: str
    tracking_uri: str
    report_uri: str
    table: str
    rows: list[ResultRow]
    trained: list[str]
    skipped: list[str]
    targets: list[TargetResult] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)  # Analysis.to_dict(): macro, costs, comparisons

    def summary(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "run_id": self.run_id, "report_uri": self.report_uri,
                "trained": self.trained, "skipped": self.skipped, "rows": [r.to_dict() for r in self.rows],
                **{k: self.analysis[k] for k in ("macro", "costs", "comparisons") if k in self.analysis}}
