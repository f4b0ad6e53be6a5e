"""One target cell (a target under one seed): load the target, draw its shots, list the pool, select
candidates once per distinct selection config, gather the training data the methods consume, run every
method, register what yields an adapter, evaluate. The plan comes from the methods' declarations in the
registry, so a new method needs no change here.

`run_cell` is the one implementation: `lorasoup compose` calls it with the library's steps, the
compose-and-evaluate flow with its Prefect tasks (caching, retries, the DAG view)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from lorasoup_core.bench import EvalReport
from lorasoup_core.compose import CompositionError
from lorasoup_core.config import MethodSettings, StorageConfig
from lorasoup_core.data import Example, Task, TaskSpec, parse_spec
from lorasoup_core.experiment.config import EvalConfig, ExperimentConfig, SelectionConfig
from lorasoup_core.experiment.results import TargetResult
from lorasoup_core.experiment.runs import log_evaluation
from lorasoup_core.experiment.steps import LIBRARY_STEPS, CellSteps
from lorasoup_core.methods import METHODS, Consumes, MethodCall, MethodOutput, MethodSpec, Yields
from lorasoup_core.models.cache import BaseRef
from lorasoup_core.pool import PoolConfig
from lorasoup_core.registry import AdapterVersion
from lorasoup_core.selection import Selection
from lorasoup_core.tracking import RunContext

log = logging.getLogger(__name__)


@dataclass
class PlannedMethod:
    name: str  # its name in the study (a variant's, or the method's)
    method: str  # the registered method
    settings: MethodSettings
    selection: SelectionConfig  # read only by methods that consume candidates

    @property
    def spec(self) -> MethodSpec:
        return METHODS.get(self.method)


@dataclass
class CellSpec:
    """What one cell runs: the target, its shots and seed, the methods in order, where candidates and
    training data come from, and how to evaluate (None: run and register only)."""

    target: TaskSpec | str
    shots: int
    seed: int
    methods: list[PlannedMethod]
    selection: SelectionConfig  # the experiment's own: its scores are the cell's reported selection
    experiment_seed: int = 0
    pool: PoolConfig | None = None  # candidate and pool training data
    pool_tasks: list[str] | None = None  # the candidates' tasks (None: every adapter on the base)
    evaluation: EvalConfig | None = None
    export_rank: int | None = None
    base_ref: str | None = None

    def selections(self) -> dict[str, SelectionConfig]:
        """One selection per distinct selection config, the experiment's first (variants may compare filters
        at the same k); none when no method consumes candidates."""
        if not any(Consumes.CANDIDATES in m.spec.consumes for m in self.methods):
            return {}
        picked = [self.selection] + [m.selection for m in self.methods if Consumes.CANDIDATES in m.spec.consumes]
        return {s.model_dump_json(): s for s in picked}


def cell_of(cfg: ExperimentConfig, target_index: int, seed: int | None = None,
            methods: list[str] | None = None) -> CellSpec:
    """The cell of `cfg.targets[target_index]` under `seed` (default the config's), for `methods` (default
    all of the config's, in its order)."""
    target = cfg.targets[target_index]
    planned = [PlannedMethod(m, cfg.method_of(m), cfg.settings(m), cfg.selection_of(m)) for m in methods or cfg.methods]
    return CellSpec(target.task, target.shots, cfg.seed if seed is None else seed, planned, cfg.selection,
                    experiment_seed=cfg.seed, pool=cfg.pool, pool_tasks=cfg.candidate_tasks(), evaluation=cfg.eval)


@dataclass
class MethodResult:
    name: str
    method: str
    output: MethodOutput
    version: AdapterVersion | None = None  # the registered adapter (None: a prompting method)
    candidates: list[str] = field(default_factory=list)  # what it composed, in order
    report: EvalReport | None = None
    eval_run_id: str | None = None


@dataclass
class CellResult:
    target: str
    data_fingerprint: str
    seed: int
    selection: dict[str, float]  # candidate -> score under the experiment's selection
    methods: dict[str, MethodResult] = field(default_factory=dict)

    def target_result(self) -> TargetResult:
        """The rows, per-example scores, costs, weights and traces of the evaluated methods."""
        out = TargetResult(self.target, self.data_fingerprint, rows=[], seed=self.seed, selection=dict(self.selection))
        for name, m in self.methods.items():
            if m.version is not None:
                out.adapters[name] = m.version
            if m.output.weights:
                out.weights[name] = m.output.weights
            if m.output.trace:
                out.traces[name] = m.output.trace
            if m.report is None:
                continue
            out.rows += m.report.rows  # the main metric, then companions such as '<name>/mc'
            preds = m.report.predictions[self.target]
            metrics = ["score", *m.report.metrics[self.target][1:]]  # a prediction holds the main one as 'score'
            for row, metric in zip(m.report.rows, metrics, strict=True):
                out.scores[row.method] = [p[metric] for p in preds]
            out.throughput[name] = dict(m.report.throughput)
            if m.output.seconds is not None:
                out.throughput[name]["compose_seconds"] = m.output.seconds
            if m.output.trainable_params is not None:
                out.throughput[name]["trainable_params"] = m.output.trainable_params
        return out


def _call(cell: CellSpec, m: PlannedMethod, target: Task, shots: list[Example], chosen: Selection | None,
          data: dict[str, Task]) -> MethodCall:
    """The method's inputs: only what it consumes."""
    needs = m.spec.consumes
    call = MethodCall(m.name, m.method, m.settings, cell.seed, cell.experiment_seed)
    if Consumes.SHOTS in needs:
        call.target, call.shots = target, shots
    if Consumes.CANDIDATES in needs and chosen is not None:
        call.candidates = chosen.candidates
    if Consumes.CANDIDATE_DATA in needs and chosen is not None:
        call.candidate_data = {c.name: data[c.name] for c in chosen.candidates if c.name in data}
    if Consumes.POOL_DATA in needs:
        call.pool = cell.pool
    if Consumes.POOL_TRAINING in needs and cell.pool is not None:
        call.pool_training = cell.pool.training
    if m.spec.yields == Yields.ADAPTER:
        call.export_rank, call.base_ref = cell.export_rank, cell.base_ref
    return call


def run_cell(cell: CellSpec, base: BaseRef, storage: StorageConfig, run: RunContext, steps: CellSteps = LIBRARY_STEPS,
             *, links: dict[str, str] | None = None, say: Callable[[str], None] = log.info) -> CellResult:
    """Run one cell: every method of `cell`, registered and (with `cell.evaluation`) evaluated, in order."""
    target = steps.load_target(cell.target)
    shots = steps.draw_shots(target, cell.shots, cell.seed)
    wanted = cell.selections()
    selections: dict[str, Selection] = {}
    if wanted:
        candidates = steps.pool_candidates(base, cell.pool_tasks, storage, run)
        if not candidates:
            raise CompositionError(f"no registered adapters on {base.model.spec}; run `lorasoup pool train` first")
        for key, sel in wanted.items():
            selections[key] = steps.select_candidates(base, candidates, target, shots, sel, cell.seed)
            for line in selections[key].log:
                say(f"selection {'+'.join(sel.filters)}: {line}")
    chosen_of = {m.name: selections.get(m.selection.model_dump_json()) if Consumes.CANDIDATES in m.spec.consumes
                 else None for m in cell.methods}
    # the candidates' own data, for methods that train on it (CAT); loaded once, only when one does
    readers = [m for m in cell.methods if Consumes.CANDIDATE_DATA in m.spec.consumes and chosen_of[m.name]]
    names = sorted({c.name for m in readers for c in chosen_of[m.name].candidates})
    data = steps.candidate_data(cell.pool, names) if names and cell.pool is not None else {}
    default = selections.get(cell.selection.model_dump_json())
    result = CellResult(target.name, target.fingerprint, cell.seed, dict(default.scores) if default else {})
    for m in cell.methods:
        chosen = chosen_of[m.name]
        output = steps.run_method(base, _call(cell, m, target, shots, chosen, data), storage, run)
        version = output.version
        if version is None and output.adapter_dir is not None:
            version = steps.register(output, storage, run)
        result.methods[m.name] = MethodResult(m.name, m.method, output, version,
                                              [c.name for c in chosen.candidates] if chosen else [])
    if cell.evaluation is None:
        return result
    source = parse_spec(cell.target).source
    for m in result.methods.values():
        m.report = steps.evaluate(base, target, shots, m.name, m.output.mode, m.version, cell.evaluation, source,
                                  cell.seed, storage)
        # a nested MLflow run per evaluation, also when the score came from the cache
        m.eval_run_id = log_evaluation(run, target, m.name, cell.seed, m.report, m.version, links)
        if m.version is not None:
            steps.record_score(m.version, target.name, m.report, m.eval_run_id, storage, run)
    return result
