"""Answer extraction: the step between a generation and the metric (lm-evaluation-harness's filters). Each
extractor is `(generation, target) -> answer | None`, registered by name; a metric compares the answer with
the target. A benchmark names one in its scoring spec (`extract`), else the metric's own is used, so a new
answer format is one registered function:

    @EXTRACTORS.register("after_hash")
    def after_hash(generation: str, target: str) -> str | None:
        return generation.rpartition("#")[2].strip() or None

The target only tells an extractor the answer's format (option letter, yes/no, number), never its value."""

from __future__ import annotations

from collections.abc import Callable

from lorasoup_core.bench import answers
from lorasoup_core.plugins import Registry

Extractor = Callable[[str, str], "str | None"]
EXTRACTORS: Registry[Extractor] = Registry("answer extractor")


@EXTRACTORS.register("raw")
def raw(generation: str, target: str) -> str | None:
    """The generation as it is (the harness has already cut it at the stop strings)."""
    return generation


@EXTRACTORS.register("bbh")
def bbh(generation: str, target: str) -> str | None:
    """After the last 'answer is', else the start of the first line, else the last answer-shaped token, in
    the target's format (see `answers.extract_bbh_answer`)."""
    return answers.extract_bbh_answer(generation, target)


def _number(value: float | None) -> str | None:
    return None if value is None else answers.format_number(value)


@EXTRACTORS.register("final_number")
def final_number(generation: str, target: str) -> str | None:
    """GSM8K's: the number after '####', else after 'the answer is', else the last number."""
    return _number(answers.extract_gsm8k_number(generation))


@EXTRACTORS.register("last_number")
def last_number(generation: str, target: str) -> str | None:
    """The last number written in the generation."""
    return _number(answers.last_number(generation))


@EXTRACTORS.register("code")
def code(generation: str, target: str) -> str | None:
    """The first fenced code block (PAL), else the whole generation."""
    return answers.extract_code(generation)


def extract_all(name: str, generations: list[str], targets: list[str]) -> list[str | None]:
    fn = EXTRACTORS.get(name)
    return [fn(g, t) for g, t in zip(generations, targets, strict=True)]
