"""One generator per skill: (random.Random) -> (input, answer). Inputs are short and answers a few
tokens, so small models learn a skill with a LoRA in a few hundred steps."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

Gen = Callable[[random.Random], tuple[str, str]]
GENERATORS: dict[str, Gen] = {}
WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "maple", "otter", "candle", "bread", "comet",
         "daisy", "eagle", "flute", "grape", "honey", "igloo", "jelly", "koala"]
UNITS = {"km to m": 1000, "m to cm": 100, "kg to g": 1000, "hours to minutes": 60, "minutes to seconds": 60}


def skill(name: str) -> Callable[[Gen], Gen]:
    def deco(fn: Gen) -> Gen:
        GENERATORS[name] = fn
        return fn

    return deco


def _words(rng: random.Random, lo: int = 3, hi: int = 5) -> list[str]:
    return rng.sample(WORDS, rng.randint(lo, hi))


@skill("add")
def add(rng):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"add {a} {b}", str(a + b)


@skill("subtract")
def subtract(rng):
    a = rng.randint(20, 99)
    b = rng.randint(1, a)
    return f"subtract {b} from {a}", str(a - b)


@skill("double")
def double(rng):
    a = rng.randint(2, 400)
    return f"double {a}", str(2 * a)


@skill("compare")
def compare(rng):
    a, b = rng.sample(range(10, 100), 2)
    return f"larger of {a} {b}", str(max(a, b))


@skill("boolean")
def boolean(rng):
    parts = []
    for i in range(rng.randint(2, 4)):
        if i:
            parts.append(rng.choice(["and", "or"]))
        if rng.random() < 0.3:
            parts.append("not")
        parts.append(rng.choice(["true", "false"]))
    text = " ".join(parts)
    value = eval(text.replace("true", "True").replace("false", "False"))  # noqa: S307  (our own tokens only)
    return text, str(value).lower()


@skill("sort_words")
def sort_words(rng):
    w = _words(rng)
    return f"sort: {' '.join(w)}", " ".join(sorted(w))


@skill("reverse_list")
def reverse_list(rng):
    w = _words(rng)
    return f"reverse: {' '.join(w)}", " ".join(reversed(w))


@skill("count_items")
def count_items(rng):
    w = [rng.choice(WORDS[:6]) for _ in range(rng.randint(2, 9))]
    return f"count: {' '.join(w)}", str(len(w))


@skill("first_item")
def first_item(rng):
    w = _words(rng)
    return f"first: {' '.join(w)}", w[0]


@skill("uppercase")
def uppercase(rng):
    w = _words(rng, 1, 3)
    return f"upper: {' '.join(w)}", " ".join(w).upper()


@skill("brackets")
def brackets(rng):
    n = rng.randint(2, 4)
    s = _balanced(rng, n)
    if rng.random() < 0.5:
        i = rng.randrange(len(s))
        s = s[:i] + {"(": ")", ")": "(", "[": "]", "]": "["}[s[i]] + s[i + 1:]
    return f"balanced: {s}", "yes" if _is_balanced(s) else "no"


def _balanced(rng: random.Random, n: int) -> str:
    if n == 0:
        return ""
    k = rng.randint(0, n - 1)
    o, c = rng.choice(["()", "[]"])
    return o + _balanced(rng, k) + c + _balanced(rng, n - 1 - k)


def _is_balanced(s: str) -> bool:
    stack = []
    for ch in s:
        if ch in "([":
            stack.append(ch)
        elif not stack or {"(": ")", "[": "]"}[stack.pop()] != ch:
            return False
    return not stack


@skill("date_add")
def date_add(rng):
    d = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 360))
    n = rng.randint(1, 20)
    return f"date {d.isoformat()} plus {n} days", (d + dt.timedelta(days=n)).isoformat()


@skill("unit_convert")
def unit_convert(rng):
    unit = rng.choice(sorted(UNITS))
    x = rng.randint(1, 99)
    return f"{unit}: {x}", str(x * UNITS[unit])


UPSTREAM_SKILLS = sorted(GENERATORS)

# Composed targets: each needs two upstream skills (listed), never trained on directly.


@skill("count_then_add")
def count_then_add(rng):
    inp, n = count_items(rng)
    k = rng.randint(10, 60)
    return f"count then add {k}: {inp.split(': ', 1)[1]}", str(int(n) + k)


@skill("sort_then_first")
def sort_then_first(rng):
    w = _words(rng)
    return f"sort then first: {' '.join(w)}", sorted(w)[0]


@skill("reverse_then_upper")
def reverse_then_upper(rng):
    w = _words(rng, 2, 3)
    return f"reverse then upper: {' '.join(w)}", " ".join(reversed(w)).upper()


@skill("compare_then_double")
def compare_then_double(rng):
    a, b = rng.sample(range(10, 50), 2)
    return f"double the larger of {a} {b}", str(2 * max(a, b))


@skill("add_then_compare")
def add_then_compare(rng):
    a, b, c = rng.randint(10, 49), rng.randint(10, 49), rng.randint(20, 99)
    return f"larger of (add {a} {b}) {c}", str(max(a + b, c))


COMPOSED_TASKS: dict[str, tuple[str, str]] = {
    "count_then_add": ("count_items", "add"),
    "sort_then_first": ("sort_words", "first_item"),
    "reverse_then_upper": ("reverse_list", "uppercase"),
    "compare_then_double": ("compare", "double"),
    "add_then_compare": ("add", "compare"),
}


def generate(name: str, n: int, seed: int, stream: int, exclude: set[str] | None = None) -> list[tuple[str, str]]:
    """`n` distinct examples of a skill from (seed, stream); streams 0/1/2 feed train/validation/test."""
    try:
        gen = GENERATORS[name]
    except KeyError:
        raise KeyError(f"unknown skill {name!r}; known: {', '.join(sorted(GENERATORS))}") from None
    rng = random.Random(f"{name}:{seed}:{stream}")
    seen = set(exclude or ())
    out: list[tuple[str, str]] = []
    for _ in range(n * 50):
        if len(out) == n:
            break
        inp, ans = gen(rng)
        if inp not in seen:
            seen.add(inp)
            out.append((inp, ans))
    return out
