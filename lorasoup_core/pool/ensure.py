"""Ensure the pool: one registered adapter per (base model, task data, training config).

The registry is the cache: an adapter whose three fingerprints are registered is not trained again,
so running a pool twice trains nothing and changing one task's data retrains only that task (what
scheduled retraining relies on). A training writes into a local work directory named by the
fingerprints and marked complete by its card, so a run killed after training but before registering
reuses it. Each training is an MLflow run (params, the loss curve as `train_loss` per step,
validation metrics) that the registered version points to.

Concurrent runs on one home (two teammates, two `pool train`s) train each adapter once: a file lock
per adapter serializes find -> train -> register, and the registry is checked again under it. Runs on
other homes sharing the registry converge on one version (see `AdapterRegistry.register`). A run killed
anywhere is finished by the next: its staging directory is removed, its MLflow run marked KILLED, a
published but unregistered artifact adopted, an undecided `champion` decided.

`ensure_pool` is the whole operation (the CLI's); the pipeline runs the same two pieces, `plan_pool`
then `ensure_adapter` per missing task, on threads or a Dask cluster.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric

from lorasoup_core import tracking
from lorasoup_core.adapters import CARD_FILE, AdapterCard, TrainingConfig, mix_tasks, slug, train_lora
from lorasoup_core.adapters.train import check_train_data
from lorasoup_core.data import Task, load_task
from lorasoup_core.models import LoadedModel
from lorasoup_core.pool.config import PoolConfig
from lorasoup_core.registry import AdapterRegistry, AdapterVersion
from lorasoup_core.settings import fault, get_settings, is_stale, process_token
from lorasoup_core.tracking import RunContext

log = logging.getLogger(__name__)
PARTIAL = ".partial-"  # <work dir>.partial-<uuid>@<host>@<pid:start>: a training in progress (or killed)


@dataclass
class PlannedAdapter:
    task: Task
    training: TrainingConfig
    registered: AdapterVersion | None  # None: to train


@dataclass
class PoolPlan:
    base_spec: str
    base_fingerprint: str
    adapters: list[PlannedAdapter]

    @property
    def missing(self) -> list[PlannedAdapter]:
        return [a for a in self.adapters if a.registered is None]


@dataclass
class EnsuredAdapter:
    version: AdapterVersion
    trained: bool  # trained (or a finished local training or published artifact registered) by this call
    reused_local_training: bool = False
    adopted: bool = False  # registered the artifact a killed run had published (nothing trained)


@dataclass
class PoolResult:
    base_spec: str
    base_fingerprint: str
    versions: dict[str, AdapterVersion] = field(default_factory=dict)  # task -> its registered version
    trained: list[str] = field(default_factory=list)  # tasks trained (and registered) by this run
    skipped: list[str] = field(default_factory=list)  # tasks whose adapter was already registered

    @classmethod
    def of(cls, plan: PoolPlan, ensured: dict[str, EnsuredAdapter]) -> PoolResult:
        """The plan's registered versions with the `ensured` ones (by task) filled in, in pool order."""
        result = cls(plan.base_spec, plan.base_fingerprint)
        for item in plan.adapters:
            name = item.task.name
            done = ensured.get(name)
            if done is None and item.registered is None:
                raise ValueError(f"pool task {name!r} has no registered adapter and none was ensured")
            result.versions[name] = done.version if done else item.registered
            (result.trained if done and done.trained else result.skipped).append(name)
        return result


def load_pool_tasks(pool: PoolConfig) -> list[Task]:
    """Every task's data, read and checked before anything trains (a bad file fails here, named; so does a
    task with nothing to learn: no train examples, or only empty targets)."""
    tasks = [load_task(spec) for spec in pool.tasks]
    for task in tasks:
        check_train_data(task)
    return tasks


def training_data(pool: PoolConfig, names: list[str]) -> dict[str, Task]:
    """The training tasks of the named pool tasks (what CAT trains on); names not in the pool are left out."""
    specs = dict(zip(pool.task_names, pool.tasks, strict=True))
    return {n: load_task(specs[n]) for n in names if n in specs}


def plan_pool(pool: PoolConfig, base: LoadedModel, registry: AdapterRegistry,
              run: RunContext | None = None) -> PoolPlan:
    """Which of the pool's adapters the registry has, and which must be trained. First tidies up after
    killed runs: their MLflow runs (of `run`'s experiment) and staging directories; a registered version
    whose champion decision was cut short gets it now."""
    if run is not None:
        recover(run, registry)
    planned = []
    for task in load_pool_tasks(pool):
        training = pool.training_for(task.name)
        found = registry.find(base.fingerprint, task.fingerprint, training.fingerprint)
        planned.append(PlannedAdapter(task, training, found and registry.settle_champion(found)))
    return PoolPlan(base.spec, base.fingerprint, planned)


def recover(run: RunContext, registry: AdapterRegistry) -> dict[str, list[str]]:
    """What killed runs of this host left: RUNNING MLflow runs marked KILLED, staging dirs removed."""
    runs = tracking.mark_stale_runs(run.experiment, registry.client.tracking_uri)
    work = [str(p) for p in clean_stale_work()]
    if runs or work:
        log.warning("cleaned up after killed runs: %d MLflow run(s) marked KILLED, %d staging dir(s) removed",
                    len(runs), len(work))
    return {"runs": runs, "work": work}


def _work_dir(base: LoadedModel, task: Task, training: TrainingConfig) -> Path:
    """Under LORASOUP_HOME whatever the task is called: the name is slugged (`../../x` is `x`, no separator)."""
    return get_settings().home.joinpath("work", "trained", base.fingerprint[:12],
                                        f"{slug(task.name)[:60]}-{task.fingerprint[:12]}-{training.fingerprint[:12]}")


def _staging_dir(out: Path) -> Path:
    """A staging directory only this process writes, named by its owner (host, pid and start time) so a
    later run can tell a live one from a killed one's leftover."""
    token = process_token() or f"{os.getpid()}:?"
    return out.with_name(f"{out.name}{PARTIAL}{uuid.uuid4().hex[:12]}@{socket.gethostname()}@{token}")


def clean_stale_work(root: Path | None = None) -> list[Path]:
    """Remove the staging directories of processes of this host that are gone (another host's are left:
    a shared home cannot tell); one named before owners were recorded once untouched for
    LORASOUP_CLEAN_MIN_AGE minutes."""
    settings = get_settings()
    root = root or settings.home / "work" / "trained"
    removed = []
    for path in root.glob(f"*/*{PARTIAL}*") if root.is_dir() else []:
        parts = path.name.rpartition(PARTIAL)[2].split("@")
        try:
            stale = is_stale(parts[1], parts[2]) if len(parts) == 3 else \
                time.time() - path.stat().st_mtime > settings.clean_min_age_s
        except OSError:  # removed meanwhile
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def _adapter_lock(out: Path, name: str) -> Iterator[None]:
    """One process of this home at a time trains (and registers) an adapter; the others wait, then find
    it registered. An OS lock: released when its holder dies, even by SIGKILL."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(out.with_name(f"{out.name}.lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process of this home that is training %s", name)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _log_training(run_id: str, card: AdapterCard, tracking_uri: str | None) -> None:
    """The loss curve as `train_loss` per optimizer step, the other metrics at the last step."""
    steps = int(card.metrics.get("steps", len(card.loss_curve)) or 1)
    curve = card.loss_curve
    if curve:
        stride = max(1, -(-steps // len(curve)))  # train_lora keeps every stride-th step's loss
        c = tracking.client(tracking_uri)
        now = int(time.time() * 1000)
        items = [Metric("train_loss", float(v), now, i * stride + 1) for i, v in enumerate(curve)]
        for i in range(0, len(items), 1000):
            c.log_batch(run_id, metrics=items[i: i + 1000])
    final = {k: v for k, v in card.metrics.items() if k != "train_loss" or not curve}
    tracking.log_metrics(run_id, final, step=steps, tracking_uri=tracking_uri)


def _parent_run(tracking_uri: str) -> str | None:
    """The fluent MLflow run active in this process, when it lives on the same tracking server."""
    import mlflow

    run = mlflow.active_run()
    if run is None or mlflow.get_tracking_uri() != tracking_uri:
        return None
    return run.info.run_id


def register_adapter(registry: AdapterRegistry, adapter_dir: str | Path, run_id: str | None) -> AdapterVersion:
    """Publish and register as one unit (idempotent on fingerprints); `champion` moves only when the
    validation loss improves on the current champion's (a decision a killed run leaves to the next)."""
    return registry.register(AdapterCard.read(adapter_dir), adapter_dir, run_id=run_id, decide_champion=True)


def _train_into(out: Path, base: LoadedModel, task: Task, training: TrainingConfig, *, progress: bool,
                embed_examples: int) -> None:
    """Train into this process's staging directory, then rename it to `out` in one step: `out` is
    complete or absent, and two trainings never write into one directory."""
    staging = _staging_dir(out)
    try:
        train_lora(base, task, training, staging, progress=progress, embed_examples=embed_examples)
        fault("mid-train")  # a kill anywhere in training leaves just this: a staging directory
        try:
            os.rename(staging, out)
        except OSError:
            if (out / CARD_FILE).is_file():  # another process finished the same training first: keep it
                return
            shutil.rmtree(out, ignore_errors=True)  # an incomplete leftover (no card)
            os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_adapter(base: LoadedModel, task: Task, training: TrainingConfig, registry: AdapterRegistry,
                   run: RunContext, *, embed_examples: int = 64, progress: bool = True) -> EnsuredAdapter:
    """The registered adapter for (base, task data, training): found; or a finished local training
    registered; or trained, registered and returned. Safe to call again after any failure, and from
    several processes at once."""
    fingerprints = (base.fingerprint, task.fingerprint, training.fingerprint)
    existing = registry.find(*fingerprints)
    if existing is not None:
        return EnsuredAdapter(registry.settle_champion(existing), trained=False)
    uri = registry.client.tracking_uri
    out = _work_dir(base, task, training)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _adapter_lock(out, task.name):
        existing = registry.find(*fingerprints)  # registered while this process waited for the lock
        if existing is not None:
            return EnsuredAdapter(registry.settle_champion(existing), trained=False)
        key = AdapterCard.model_construct(base_model=base.spec, name=task.name, data_fingerprint=task.fingerprint,
                                          config_fingerprint=training.fingerprint).store_key
        adopted = registry.adopt(key, *fingerprints, decide_champion=True)
        if adopted is not None:  # published by a run killed before registering: register, never retrain
            return EnsuredAdapter(adopted, trained=True, adopted=True)
        parent = run.parent_run_id or _parent_run(uri)
        tags = {"lorasoup.step": "train", "lorasoup.task": task.name, "lorasoup.base_model": base.spec}
        with tracking.run(run.experiment, f"train {task.name}", parent_run_id=parent, tracking_uri=uri,
                          tags=tags, store_uri=run.store_uri, system_metrics=True) as run_id:
            tracking.log_params(run_id, {"task": task.name, "base_model": base.spec,
                                         "base_fingerprint": base.fingerprint, "data_fingerprint": task.fingerprint,
                                         "config_fingerprint": training.fingerprint, "n_train": len(task.train),
                                         **training.model_dump(mode="json")}, uri)
            reused = (out / CARD_FILE).is_file()
            if reused:
                tracking.set_tags(run_id, {"lorasoup.reused_local_training": "true"}, uri)
            else:
                _train_into(out, base, task, training, progress=progress, embed_examples=embed_examples)
                fault("after-train")
            _log_training(run_id, AdapterCard.read(out), uri)
            version = register_adapter(registry, out, run_id)
    return EnsuredAdapter(version, trained=True, reused_local_training=reused)


def ensure_pool(pool: PoolConfig, base: LoadedModel, registry: AdapterRegistry, run: RunContext, *,
                progress: bool = True) -> PoolResult:
    """Make sure every task of the pool has a registered adapter; train only the missing ones."""
    plan = plan_pool(pool, base, registry, run)
    ensured = {item.task.name: ensure_adapter(base, item.task, item.training, registry, run,
                                              embed_examples=pool.embed_examples, progress=progress)
               for item in plan.missing}
    return PoolResult.of(plan, ensured)


def datamix_task(pool: PoolConfig, tasks: list[Task], seed: int) -> Task:
    """The DATA-MIX baseline's task: the pool's data mixed by `datamix_proportions` (default equal)."""
    props = [pool.datamix_proportions.get(t.name, 0.0) for t in tasks] if pool.datamix_proportions else None
    return mix_tasks(tasks, props, name="datamix", seed=seed)


def ensure_datamix(pool: PoolConfig, base: LoadedModel, registry: AdapterRegistry, run: RunContext, *,
                   seed: int = 0, progress: bool = True) -> EnsuredAdapter:
    """The DATA-MIX adapter: one LoRA trained on the mixture, registered like any pool adapter."""
    mixed = datamix_task(pool, load_pool_tasks(pool), seed)
    return ensure_adapter(base, mixed, pool.training, registry, run, embed_examples=pool.embed_examples,
                          progress=progress)
