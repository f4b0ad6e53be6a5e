"""lorasoup_core: the library behind lorasoup (no Prefect here; flows/ and tasks/ wrap it)."""

__version__ = "0.1.0"
