"""The MLflow-backed adapter registry."""

from lorasoup_core.registry.registry import AdapterRegistry, AdapterVersion, RegistryError, model_name

__all__ = ["AdapterRegistry", "AdapterVersion", "RegistryError", "model_name"]
