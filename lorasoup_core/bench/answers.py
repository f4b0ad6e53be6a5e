"""Answer normalisation and extraction from free-form generations (BBH, GSM8K, PAL).

Extraction looks for "the answer is X" first, then an answer at the very start of the first line
(what direct-answer models emit), then the last answer-shaped token anywhere. It only ever picks
what the generation says: the BBH target is used to know the answer's *format* (option letter,
yes/no, number, text), never its value, so a wrong answer cannot be turned into a right one.
"""

from __future__ import annotations

import math
import re

# A number as written in text: optional minus, thousands commas, decimals. Not part of a word or
# of a longer number ("x3", "1.2.3"); "12" never matches inside "120".
NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")
_ANSWER_IS_RE = re.compile(r"\banswer\s+is\b[\s:]*", re.IGNORECASE)
_CHOICE_TARGET_RE = re.compile(r"^\(([A-R])\)$")
_CHOICE_RE = re.compile(r"\(([A-Ra-r])\)")
# A bare option letter at the start of a span: "B", "B)", "B.", "B:" (not "A dog", "Alice").
_BARE_CHOICE_RE = re.compile(r"^\s*\(?([A-R])(?:[).:]|\s*$)")
_BINARY_FAMILIES = (("yes", "no"), ("true", "false"), ("valid", "invalid"))
_NUMBER_TARGET_RE = re.compile(r"^-?\d+(?:\.\d+)?$")
_BRACKETS = set("()[]{}<>")

KINDS = ("choice", "binary", "number", "text")


def normalize_lorahub(text: str) -> str:
    """LoraHub's normalisation (sail-sg/lorahub ``accuracy_score``): strip, lower-case, drop '.'."""
    return text.strip().lower().replace(".", "")


def exact_match(prediction: str, target: str) -> bool:
    """Exact match after LoraHub's normalisation."""
    return normalize_lorahub(prediction) == normalize_lorahub(target)


def parse_number(text: str) -> float | None:
    """The first number written in ``text`` ("$1,000.50" -> 1000.5), or None."""
    match = NUMBER_RE.search(text)
    return None if match is None else float(match.group().replace(",", ""))


def last_number(text: str) -> float | None:
    """The last number written in ``text``, or None."""
    matches = NUMBER_RE.findall(text)
    return None if not matches else float(matches[-1].replace(",", ""))


def format_number(value: float) -> str:
    """Canonical text for a number: integral values without a decimal point ("24", not "24.0")."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def numbers_close(a: float | None, b: float | None, rel_tol: float = 1e-9, abs_tol: float = 1e-6) -> bool:
    """Numeric equality with tolerance; None or NaN never matches."""
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return False
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


# --------------------------------------------------------------------------------------------- BBH


def answer_kind(target: str) -> str:
    """The format of a BBH target: "choice" ("(A)"), "binary" (yes/no, True/False, valid/invalid),
    "number" ("-50") or "text" (word lists, Dyck closings, the odd free-form option)."""
    target = target.strip()
    if _CHOICE_TARGET_RE.match(target):
        return "choice"
    if any(target.lower() in family for family in _BINARY_FAMILIES):
        return "binary"
    if _NUMBER_TARGET_RE.match(target):
        return "number"
    return "text"


def _answer_span(text: str) -> str | None:
    """The rest of the line after the last "answer is", or None when the phrase is absent."""
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    return text[matches[-1].end() :].split("\n", 1)[0]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _find_choice(span: str, *, at_start: bool) -> str | None:
    if at_start:
        match = _CHOICE_RE.match(span.lstrip()) or _BARE_CHOICE_RE.match(span)
    else:
        match = _CHOICE_RE.search(span) or _BARE_CHOICE_RE.match(span)
    return None if match is None else f"({match.group(1).upper()})"


def _binary_re(target: str) -> re.Pattern[str]:
    family = next(f for f in _BINARY_FAMILIES if target.strip().lower() in f)
    return re.compile(r"\b(" + "|".join(family) + r")\b", re.IGNORECASE)


def extract_bbh_answer(generation: str, target: str) -> str | None:
    """The answer a generation gives, in the target's format ("(B)", "yes", "24", "a b c"), or None.

    ``target`` only selects the format. Order: after the last "answer is"; the start of the first
    line; the last answer-shaped token in the text (e.g. the last "(X)" of a chain of thought).
    """
    kind = answer_kind(target)
    span, first = _answer_span(generation), _first_line(generation)
    if kind == "text":
        answer = span if span is not None else first
        return answer.strip().rstrip(".").strip() or None
    if kind == "choice":
        found = (_find_choice(span, at_start=False) if span is not None else None) or _find_choice(
            first, at_start=True
        )
        if found is None:
            letters = _CHOICE_RE.findall(generation)
            found = f"({letters[-1].upper()})" if letters else None
        return found
    if kind == "binary":
        pattern = _binary_re(target)
        match = pattern.search(span) if span is not None else None
        match = match or pattern.match(first.lstrip("*\"'( "))
        words = pattern.findall(generation)
        if match is None and not words:
            return None
        return (match.group(1) if match else words[-1]).lower()
    # number
    number = parse_number(span) if span is not None else None
    if number is None and NUMBER_RE.match(first.lstrip("$*")):
        number = parse_number(first)
    if number is None:
        number = last_number(generation)
    return None if number is None else format_number(number)


def _canonical_text(text: str) -> str:
    """LoraHub normalisation, commas as separators, single spaces; Dyck-style bracket sequences
    compare without spaces ("] ]" == "]]")."""
    words = normalize_lorahub(text).replace(",", " ").split()
    joined = " ".join(words)
    if joined and set(joined) <= _BRACKETS | {" "}:
        return joined.replace(" ", "")
    return joined


def bbh_correct(generation: str, target: str) -> bool:
    """Whether the answer extracted from ``generation`` equals the BBH ``target``."""
    return bbh_answer_matches(extract_bbh_answer(generation, target), target)


def bbh_answer_matches(answer: str | None, target: str) -> bool:
    """Whether an extracted answer equals the BBH ``target``: numbers as numbers, text canonicalised, option
    letters and yes/no-style words exactly."""
    if answer is None:
        return False
    kind = answer_kind(target)
    if kind == "number":
        return numbers_close(float(answer), float(target), rel_tol=0.0, abs_tol=1e-9)
    if kind == "text":
        return _canonical_text(answer) == _canonical_text(target)
    return answer == (target.strip().upper() if kind == "choice" else target.strip().lower())


# ------------------------------------------------------------------------------------------- GSM8K


def gsm8k_reference(answer: str) -> float | None:
    """The final number of a GSM8K reference: what follows the last "####" (or a bare number)."""
    if "####" in answer:
        return parse_number(answer.rsplit("####", 1)[1])
    return parse_number(answer)


def extract_gsm8k_number(generation: str) -> float | None:
    """A prediction's number: after "####" if present, else after "the answer is", else the last."""
    if "####" in generation:
        number = parse_number(generation.rsplit("####", 1)[1])
        if number is not None:
            return number
    span = _answer_span(generation)
    number = parse_number(span) if span is not None else None
    return number if number is not None else last_number(generation)


_FENCE_RE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(generation: str) -> str:
    """The program in a PAL generation: the first fenced code block, else the whole text."""
    match = _FENCE_RE.search(generation)
    return match.group(1) if match else generation
