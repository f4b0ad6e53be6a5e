"""mix_tasks: proportions, prompts kept per task, seeded, clear errors."""

from __future__ import annotations

from collections import Counter

import pytest

from lorasoup_core.adapters import mix_tasks


def test_proportions_and_prompts(first_letter_task, length_task):
    mixed = mix_tasks([first_letter_task, length_task], [3, 1], name="mix", seed=0)
    n = len(first_letter_task.train)  # both tasks have 64 train examples
    source = Counter("How long" in e.input for e in mixed.train)
    assert len(mixed.train) == n and source[False] == 48 and source[True] == 16
    assert mixed.template == "{input}" and mixed.test == [] and mixed.name == "mix"
    # the template is applied per example: the mixed prompt is the original task's prompt
    originals = {first_letter_task.prompt(e): e.target for e in first_letter_task.train}
    originals |= {length_task.prompt(e): e.target for e in length_task.train}
    assert all(originals[mixed.prompt(e)] == e.target for e in mixed.train)
    # no example repeats before every example of its task has been used
    from_first = [e for e in mixed.train if "How long" not in e.input]
    assert len(set(from_first)) == len(set(first_letter_task.train))
    assert len(mixed.validation) == len(first_letter_task.validation) + len(length_task.validation)
    assert mixed == mix_tasks([first_letter_task, length_task], [3, 1], name="mix", seed=0)
    assert mixed.train != mix_tasks([first_letter_task, length_task], [3, 1], name="mix", seed=1).train


def test_default_equal_and_zero_weight(first_letter_task, length_task):
    equal = mix_tasks([first_letter_task, length_task], size=10)
    assert Counter("How long" in e.input for e in equal.train) == {True: 5, False: 5}
    only_first = mix_tasks([first_letter_task, length_task], [1, 0])
    assert not any("How long" in e.input for e in only_first.train + only_first.validation)


def test_bad_proportions(first_letter_task, length_task, make_word_task):
    with pytest.raises(ValueError, match="proportions"):
        mix_tasks([first_letter_task, length_task], [1])
    with pytest.raises(ValueError, match="proportions"):
        mix_tasks([first_letter_task, length_task], [0, 0])
    with pytest.raises(ValueError, match="'empty'"):
        mix_tasks([first_letter_task, make_word_task("empty", str, words=[])])
    with pytest.raises(ValueError, match="at least one"):
        mix_tasks([])
