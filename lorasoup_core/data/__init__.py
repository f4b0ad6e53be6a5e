"""Task data: examples, splits, prompt templates, and the sources that load them."""

from lorasoup_core.data.task import SPLITS, DataError, Example, Task

__all__ = ["SPLITS", "DataError", "Example", "Task"]
