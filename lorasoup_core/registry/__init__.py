"""The MLflow-backed adapter registry."""

from lorasoup_core.registry.registry import (
    AdapterRegistry,
    AdapterVersion,
    RegistryError,
    model_name,
    open_registry,
    use_storage,
)

__all__ = ["AdapterRegistry", "AdapterVersion", "RegistryError", "model_name", "open_registry", "use_storage"]
