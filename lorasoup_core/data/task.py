"""What a task is: named (input, target) examples in train/validation/test splits, a prompt template
and a metric name. Every source in ``lorasoup_core.data.sources`` produces one of these."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from lorasoup_core.fingerprint import sha256_json

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """Bad task data; the message names the file (and row) at fault."""


@dataclass(frozen=True)
class Example:
    """One (input, target) pair. ``meta`` carries what a source keeps beside the target (GSM8K's worked
    answer, GSM-hard's PAL code); it takes no part in equality, hashing or the task fingerprint."""

    input: str
    target: str
    meta: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass
class Task:
    """A task ready for training, composition and evaluation.

    ``template`` formats one input into the model's prompt (``{input}`` is replaced); the target is
    appended after the prompt for causal models and used as the decoder label for seq2seq models.
    ``metric`` names an entry of ``lorasoup_core.bench.metrics.METRICS``.
    """

    name: str
    train: list[Example]
    validation: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    template: str = "{input}\nAnswer:"
    metric: str = "exact_match"
    source: str = ""  # where it came from (a path, a hub id, "skills:<seed>")
    components: tuple[str, ...] = ()  # the upstream tasks a composed task is built from, when known (oracle)
    files: dict[str, str] = field(default_factory=dict)  # split -> the file it was read from (error messages)
    notes: list[str] = field(default_factory=list)  # what loading dropped (duplicate rows), for error messages

    def prompt(self, example: Example | str) -> str:
        text = example.input if isinstance(example, Example) else example
        return self.template.replace("{input}", text)

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise DataError(f"task {self.name!r}: unknown split {name!r}; known: {', '.join(SPLITS)}")
        return getattr(self, name)

    def draw_shots(self, n: int, seed: int) -> list[Example]:
        """The few-shot examples a composition is fitted on: a seeded draw from the train split."""
        if len(self.train) < n:
            raise DataError(f"task {self.name!r} has {len(self.train)} train examples; {n} shots requested")
        return random.Random(seed).sample(self.train, n)

    @property
    def fingerprint(self) -> str:
        """sha256 over the examples of every split, the template and the metric: what training depends on."""
        return sha256_json({
            "template": self.template,
            "metric": self.metric,
            **{s: [[e.input, e.target] for e in self.split(s)] for s in SPLITS},
        })

    def check(self, where: str | None = None) -> Task:
        """Raise DataError for an empty task, or for test inputs that also appear in train or validation.

        Overlap is refused, never silently dropped: a test input seen in training (or used to pick the
        checkpoint) makes test scores meaningless, and which side should keep it is the data owner's call.
        The message names the test file, the other split's file, how many test rows overlap and the first."""
        where = where or self.source or self.name
        if not self.train and not self.test:
            raise DataError(f"{where}: task {self.name!r} has no examples")
        for other in ("train", "validation"):
            seen = {e.input: i for i, e in enumerate(self.split(other))}
            rows = [r for r, e in enumerate(self.test) if e.input in seen]
            if not rows:
                continue
            test_file = self.files.get("test", where)
            other_file = self.files.get(other)
            in_other = f"the {other} split" + (f" ({other_file})" if other_file and other_file != test_file else "")
            first = self.test[rows[0]].input
            raise DataError(f"{test_file}: task {self.name!r}: {len(rows)} of {len(self.test)} test inputs also appear "
                            f"in {in_other}; first: test row {rows[0]} ({first[:60]!r}); remove them from one side "
                            "(test scores on inputs seen in training or validation are not test scores)")
        return self
