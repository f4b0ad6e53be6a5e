"""The steps of a target cell as plain library functions over typed inputs. `run_cell` calls them directly
(`lorasoup compose`); the Prefect flow passes the same functions wrapped as tasks (`tasks/compose.py`), which
adds caching keyed on these inputs, retries on I/O and the DAG view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lorasoup_core.bench import EvalReport, evaluate_task
from lorasoup_core.compose import Candidate
from lorasoup_core.config import StorageConfig
from lorasoup_core.data import Example, Task, TaskSpec, load_task
from lorasoup_core.experiment.config import EvalConfig, SelectionConfig
from lorasoup_core.methods import METHODS, MethodCall, MethodEnv, MethodOutput
from lorasoup_core.models.cache import BaseRef
from lorasoup_core.pool import PoolConfig, register_adapter, training_data
from lorasoup_core.pool import pool_candidates as _pool_candidates
from lorasoup_core.registry import AdapterVersion, open_registry, use_storage
from lorasoup_core.selection import FilterSpec, Selection
from lorasoup_core.selection import select_candidates as _select
from lorasoup_core.tracking import RunContext


def load_target(spec: TaskSpec | str) -> Task:
    """Read and check the target's data (a bad file fails here, naming the file and row)."""
    return load_task(spec)


def draw_shots(target: Task, n: int, seed: int) -> list[Example]:
    return target.draw_shots(n, seed)


def pool_candidates(base: BaseRef, task_names: list[str] | None, storage: StorageConfig,
                    run: RunContext) -> list[Candidate]:
    """The pool's registered adapters on this base model (those of `task_names`; None: all), downloaded to
    the local cache."""
    return _pool_candidates(open_registry(storage, run.tracking_uri), base.model.spec, base.fingerprint, task_names)


def select_candidates(base: BaseRef, candidates: list[Candidate], target: Task, shots: list[Example],
                      selection: SelectionConfig, seed: int) -> Selection:
    chain = [FilterSpec(name=f, k=selection.k, seed=seed) for f in selection.filters]
    exclude = {target.name} if selection.exclude_target else set()
    return _select(base.load(), candidates, target, shots, chain, selection.k, exclude)


def candidate_data(pool: PoolConfig, names: list[str]) -> dict[str, Task]:
    """The training tasks of the named pool candidates (what CAT trains its coefficients on)."""
    return training_data(pool, names)


def run_method(base: BaseRef, call: MethodCall, storage: StorageConfig, run: RunContext) -> MethodOutput:
    """Run one method of the registry on its inputs."""
    return METHODS.get(call.method).run(base.load(), call, MethodEnv(run, storage))


def register(output: MethodOutput, storage: StorageConfig, run: RunContext) -> AdapterVersion:
    """Publish a method's adapter and register it with its lineage (candidates, method, weights)."""
    return register_adapter(open_registry(storage, run.tracking_uri), output.adapter_dir, output.run_id)


def evaluate(base: BaseRef, target: Task, shots: list[Example], label: str, mode: str,
             adapter: AdapterVersion | None, settings: EvalConfig, source: str, seed: int,
             storage: StorageConfig) -> EvalReport:
    """Score one method on the target's test split, never on the fitting shots, with the target's scoring
    spec (its data source's benchmark, `settings`' overrides applied)."""
    use_storage(storage)  # the store's S3 endpoint, for fetching the adapter
    return evaluate_task(base.load(), target, mode=mode, adapter=adapter.store_uri if adapter else None,
                         limit=settings.limit, k_shot=settings.k_shot, exclude={target.name: {s.input for s in shots}},
                         seed=seed, batch_size=settings.batch_size, method_label=label,
                         benchmark=settings.scoring_for(source))


def record_score(adapter: AdapterVersion, target: str, report: EvalReport, eval_run_id: str, storage: StorageConfig,
                 run: RunContext) -> None:
    """The evaluated score as tags on the adapter's registered version, linked to the evaluation run."""
    main = report.rows[0]
    open_registry(storage, run.tracking_uri).record_score(adapter, target, main.score, (main.ci_low, main.ci_high),
                                                          main.n, eval_run_id)


@dataclass(frozen=True)
class CellSteps:
    """The step functions a cell runs, by role: these library functions, or the flow's Prefect tasks
    wrapping them (same signatures)."""

    load_target: Callable[..., Task] = load_target
    draw_shots: Callable[..., list[Example]] = draw_shots
    pool_candidates: Callable[..., list[Candidate]] = pool_candidates
    select_candidates: Callable[..., Selection] = select_candidates
    candidate_data: Callable[..., dict[str, Task]] = candidate_data
    run_method: Callable[..., MethodOutput] = run_method
    register: Callable[..., AdapterVersion] = register
    evaluate: Callable[..., EvalReport] = evaluate
    record_score: Callable[..., None] = record_score


LIBRARY_STEPS = CellSteps()
