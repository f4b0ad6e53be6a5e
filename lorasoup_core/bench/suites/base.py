"""The shared benchmark template (lm-evaluation-harness style): each benchmark is one small config
naming its data source, default tasks, prompt and generation settings and metric."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lorasoup_core.config import StrictModel
from lorasoup_core.data import Example, Task
from lorasoup_core.plugins import Registry


class BenchmarkConfig(StrictModel):
    source: str = Field(description="Data source (lorasoup_core.data SOURCES) the tasks are loaded from.")
    default_tasks: tuple[str, ...] | None = Field(
        None, description="What tasks='all' means; None: every task the source lists.")
    max_new_tokens: int = Field(16, gt=0, description="Generation budget per example.")
    stop: tuple[str, ...] = Field(("\n",), description="Generation stops at (and is cut before) these strings.")
    metric: str | None = Field(None, description="METRICS name; None: the task's own metric.")
    extra_metrics: tuple[str, ...] = Field((), description="Companion scores reported beside the main one.")
    template: str | None = Field(None, description="Prompt template with {input}; None: the task's template.")
    split: str = Field("test", description="The split that is scored.")
    demo_answer: str = Field("target", description="What an ICL demonstration shows after its prompt: the "
                             "target, or the name of an Example.meta field (a worked answer, reference code).")
    demo_suffix: str = Field("", description="Text closing a demonstration (e.g. a code fence).")
    demo_separator: str = Field("\n\n", description="Text between demonstrations and the query.")
    cot_max_new_tokens: int | None = Field(
        None, description="Budget with the official chain-of-thought prompts; None: no CoT prompts exist.")
    cot_stop: tuple[str, ...] = Field(("\n\nQ:",), description="Stop strings with chain-of-thought prompts.")
    path: str | None = Field(None, description="Data path or hub id; None: the source's default.")
    icl_demos: Literal["per_example", "shared"] = Field(
        "per_example", description="ICL demonstrations drawn per example, or one seeded draw shared by every "
        "example of a task (one fixed prompt prefix, as PAL's prompt and LoraHub's ICL baseline).")
    multiple_choice: bool = Field(False, description="Where a task's answers form a closed set, also score each "
                                  "option's log-likelihood and report the best option's accuracy as '<method>/mc'.")
    prefix_cache: bool = Field(True, description="Encode the prompts' shared token prefix once (causal models); "
                               "predictions are those of the uncached path.")
    max_batch_tokens: int | None = Field(8192, gt=0, description="Padded tokens (prompt + new) per generation "
                                         "batch (beside the batch_size row cap); None: batch_size rows whatever "
                                         "their length.")
    merge_adapter: bool = Field(True, description="Merge an evaluated LoRA into the base weights for the "
                                "evaluation (no per-layer adapter overhead), restoring the exact weights after.")

    def prompt(self, task: Task, example: Example) -> str:
        template = self.template or task.template
        return template.replace("{input}", example.input)

    def demonstration(self, task: Task, example: Example) -> str:
        if self.demo_answer == "target":
            answer = example.target
        else:
            answer = (example.meta or {}).get(self.demo_answer) or example.target
        prompt = self.prompt(task, example)
        sep = "" if prompt.endswith(("\n", " ")) else " "
        return f"{prompt}{sep}{answer.strip()}{self.demo_suffix}"


BENCHMARKS: Registry[BenchmarkConfig] = Registry("benchmark")

# What evaluate_task uses for a Task that comes with no benchmark (e.g. a skills composed target).
GENERIC = BenchmarkConfig(source="", max_new_tokens=16)
