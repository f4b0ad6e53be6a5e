"""Task data: examples, splits, prompt templates, and the sources that load them."""

from lorasoup_core.data import sources  # noqa: F401  (registers the sources)
from lorasoup_core.data.procedural import COMPOSED_TASKS, UPSTREAM_SKILLS
from lorasoup_core.data.sources.bbh import bbh_cot_prompt
from lorasoup_core.data.spec import SOURCES, TaskSpec, UnknownSourceError, list_tasks, load_task, parse_spec
from lorasoup_core.data.task import SPLITS, DataError, Example, Task

__all__ = ["COMPOSED_TASKS", "SOURCES", "SPLITS", "UPSTREAM_SKILLS", "DataError", "Example", "Task", "TaskSpec",
           "UnknownSourceError", "bbh_cot_prompt", "list_tasks", "load_task", "parse_spec"]
