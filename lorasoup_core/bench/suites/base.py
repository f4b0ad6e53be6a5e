"""The shared benchmark template (lm-evaluation-harness style): each benchmark is one small config
naming its data source, default tasks, prompt and generation settings and metric."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

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
    extract: str | None = Field(None, description="EXTRACTORS name: how the answer is taken from a generation "
                                "before the main metric compares it; None: the metric's own extractor.")
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

    @field_validator("extract")
    @classmethod
    def _known_extractor(cls, name: str | None) -> str | None:
        from lorasoup_core.bench.extract import EXTRACTORS

        if name is not None and name not in EXTRACTORS:
            raise ValueError(f"unknown answer extractor {name!r}; known: {', '.join(EXTRACTORS.names())}")
        return name

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

# What a Task of no registered benchmark is scored with (a JSONL or hub dataset of your own).
GENERIC = BenchmarkConfig(source="", max_new_tokens=16)


def scoring_spec(source: str) -> BenchmarkConfig:
    """How a task of the data source `source` (a TaskSpec's: skills, bbh, gsm-hard ...) is scored: the
    registered benchmark reading that source (the first by name, when several do), else GENERIC."""
    for name in BENCHMARKS.names():
        config = BENCHMARKS.get(name)
        if source and config.source == source:
            return config
    return GENERIC


def with_settings(config: BenchmarkConfig, settings: dict[str, Any] | None) -> BenchmarkConfig:
    """``config`` with some fields replaced, validated like the config itself (one ValueError naming the
    fields at fault)."""
    if not settings:
        return config
    try:
        return BenchmarkConfig.model_validate({**config.model_dump(), **settings})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"scoring settings: {problems}") from None
