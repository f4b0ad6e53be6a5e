"""The adapter pool: train one LoRA per task into the registry (skipping what exists), import others,
and hand the registered adapters to composition as candidates."""

from lorasoup_core.pool.candidates import as_candidates, pool_candidates, pool_versions
from lorasoup_core.pool.config import DEFAULT_EXPERIMENT, PoolConfig, PoolFile
from lorasoup_core.pool.ensure import (
    EnsuredAdapter,
    PlannedAdapter,
    PoolPlan,
    PoolResult,
    datamix_task,
    ensure_adapter,
    ensure_datamix,
    ensure_pool,
    load_pool_tasks,
    plan_pool,
    register_adapter,
    training_data,
)
from lorasoup_core.pool.importer import AdapterMismatch, ImportReport, check_adapter, import_adapters

__all__ = ["DEFAULT_EXPERIMENT", "AdapterMismatch", "EnsuredAdapter", "ImportReport", "PlannedAdapter", "PoolConfig",
           "PoolFile", "PoolPlan", "PoolResult", "as_candidates", "check_adapter", "datamix_task", "ensure_adapter",
           "ensure_datamix", "ensure_pool", "import_adapters", "load_pool_tasks", "plan_pool",
           "pool_candidates", "pool_versions", "register_adapter",
           "training_data"]
