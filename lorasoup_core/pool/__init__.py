"""The adapter pool: train one LoRA per task into the registry (skipping what exists), import others."""

from lorasoup_core.pool.config import PoolConfig, load_pool
from lorasoup_core.pool.importer import AdapterMismatch, ImportReport, check_adapter, import_adapters
from lorasoup_core.pool.train import PoolReport, ensure_adapter, registry_for, train_pool

__all__ = ["AdapterMismatch", "ImportReport", "PoolConfig", "PoolReport", "check_adapter", "ensure_adapter",
           "import_adapters", "load_pool", "registry_for", "train_pool"]
