"""Easy deterministic tasks that a LoRA on a random-init tiny model learns in ~150 steps."""

from __future__ import annotations

import pytest

from lorasoup_core.data import Example, Task

WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "ocean", "maple", "zebra", "candle",
         "forest", "violet", "hammer", "garden", "silver"]


def word_task(name: str, answer, template: str = "word: {input}\nAnswer:", words=WORDS) -> Task:
    """Each word maps to a fixed answer; validation = the same words (the task is memorisation)."""
    examples = [Example(w, answer(w)) for w in words]
    return Task(name, train=examples * 4, validation=examples, test=[], template=template)


@pytest.fixture(scope="session")
def make_word_task():
    return word_task


@pytest.fixture(scope="session")
def first_letter_task() -> Task:
    return word_task("first_letter", lambda w: w[0])


@pytest.fixture(scope="session")
def length_task() -> Task:
    return word_task("word_length", lambda w: str(len(w)), template="How long is {input}?")
