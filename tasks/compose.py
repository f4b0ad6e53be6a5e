"""Prefect tasks for composition and evaluation: each calls the library directly.

Compositions and scores persist and are cached under keys computed from their typed inputs (base
weights, target data, shots, candidate adapters, the method's settings, the seed) and the lorasoup
version, so re-running a crashed or finished experiment does not redo them.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from lorasoup_core.bench import EvalReport, evaluate_task
from lorasoup_core.compose import Candidate, ComposerSettings
from lorasoup_core.compose.target import ComposedAdapter, compose_for_target
from lorasoup_core.config import StorageConfig
from lorasoup_core.data import Example, Task, TaskSpec, load_task
from lorasoup_core.experiment import EvalConfig, SelectionConfig
from lorasoup_core.models.cache import BaseRef
from lorasoup_core.pool import PoolConfig, register_adapter, training_data
from lorasoup_core.pool import pool_candidates as _pool_candidates
from lorasoup_core.registry import AdapterVersion, open_registry, use_storage
from lorasoup_core.selection import FilterSpec, Selection
from lorasoup_core.selection import select_candidates as _select
from lorasoup_core.tracking import RunContext
from tasks._policies import IO_RETRIES, typed_inputs_key


@task(task_run_name="load-target", cache_policy=NONE)
def load_target(spec: TaskSpec | str) -> Task:
    """Read and check the target's data (a bad file fails here, naming the file and row)."""
    return load_task(spec)


@task(task_run_name="candidate-data", cache_policy=NONE)
def candidate_data(pool: PoolConfig, names: list[str]) -> dict[str, Task]:
    """The training tasks of the named pool candidates (what CAT trains its coefficients on)."""
    return training_data(pool, names)


@task(task_run_name="shots-{target.name}", cache_policy=NONE)
def draw_shots(target: Task, n: int, seed: int) -> list[Example]:
    return target.draw_shots(n, seed)


@task(task_run_name="pool-candidates", cache_policy=NONE, **IO_RETRIES)
def pool_candidates(base: BaseRef, task_names: list[str], storage: StorageConfig, run: RunContext) -> list[Candidate]:
    """The pool's registered adapters on this base model, downloaded to the local cache."""
    return _pool_candidates(open_registry(storage, run.tracking_uri), base.model.spec, base.fingerprint, task_names)


@task(task_run_name="select-{target.name}", cache_policy=NONE)
def select_candidates(base: BaseRef, candidates: list[Candidate], target: Task, shots: list[Example],
                      selection: SelectionConfig, seed: int) -> Selection:
    chain = [FilterSpec(name=f, k=selection.k, seed=seed) for f in selection.filters]
    exclude = {target.name} if selection.exclude_target else set()
    return _select(base.load(), candidates, target, shots, chain, selection.k, exclude)


@task(task_run_name="compose-{target.name}-{label}", persist_result=True, cache_key_fn=typed_inputs_key)
def compose_adapter(base: BaseRef, candidates: list[Candidate], target: Task, shots: list[Example], label: str,
                    method: str, settings: ComposerSettings, seed: int, train_data: dict[str, Task],
                    run: RunContext) -> ComposedAdapter:
    return compose_for_target(base.load(), candidates, target, shots, method, settings, run, seed=seed,
                              train_data=train_data, label=label)


@task(task_run_name="register-{composed.target}-{composed.label}", cache_policy=NONE, **IO_RETRIES)
def register_composed(composed: ComposedAdapter, storage: StorageConfig, run: RunContext) -> AdapterVersion:
    """Publish the composed adapter and register it with its lineage (candidates, method, weights)."""
    return register_adapter(open_registry(storage, run.tracking_uri), composed.adapter_dir, composed.run_id)


@task(task_run_name="evaluate-{target.name}-{label}", persist_result=True, cache_key_fn=typed_inputs_key)
def evaluate_method(base: BaseRef, target: Task, shots: list[Example], label: str, mode: str,
                    adapter: AdapterVersion | None, settings: EvalConfig, seed: int,
                    storage: StorageConfig) -> EvalReport:
    """Score one method or baseline on the target's test split, never on the fitting shots."""
    use_storage(storage)  # the store's S3 endpoint, for fetching the adapter
    return evaluate_task(base.load(), target, mode=mode, adapter=adapter.store_uri if adapter else None,
                         limit=settings.limit, k_shot=settings.k_shot, exclude={target.name: {s.input for s in shots}},
                         seed=seed, batch_size=settings.batch_size, method_label=label, benchmark=settings.benchmark())


@task(task_run_name="record-score-{target}-{adapter.name}", cache_policy=NONE, **IO_RETRIES)
def record_score(adapter: AdapterVersion, target: str, report: EvalReport, eval_run_id: str, storage: StorageConfig,
                 run: RunContext) -> None:
    """The evaluated score as tags on the adapter's registered version, linked to the evaluation run."""
    main = report.rows[0]
    open_registry(storage, run.tracking_uri).record_score(adapter, target, main.score, (main.ci_low, main.ci_high),
                                                          main.n, eval_run_id)
