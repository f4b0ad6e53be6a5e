import pytest

from lorasoup_core.bench import answers
from lorasoup_core.bench.metrics import score_all


@pytest.mark.parametrize("prediction,target", [
    (" Yes. ", "yes"), ("TRUE", "True"), ("(A).", "(a)"), ("3.", "3"), ("Dr. Who", "dr who"),
])
def test_lorahub_normalisation_matches(prediction, target):
    assert answers.exact_match(prediction, target)


@pytest.mark.parametrize("prediction,target", [
    ("yes no", "yes"), ("(B)", "(A)"), ("31", "3"), ("not true", "True"), ("", "no"),
])
def test_lorahub_normalisation_does_not_match_other_answers(prediction, target):
    assert not answers.exact_match(prediction, target)


@pytest.mark.parametrize("generation,target", [
    ("(B)", "(B)"), ("B", "(B)"), ("(b) the second one", "(B)"), ("B) because", "(B)"),
    ("Let's think. (A) is wrong and (C) too. So the answer is (B).", "(B)"),
    ("step 1 ... (C) step 2 ... (B)", "(B)"),
    ("Yes", "Yes"), ("yes, he did.", "Yes"), ("So the answer is No.", "No"), ("False", "False"),
    ("The argument is invalid.", "invalid"), ("valid", "valid"),
    ("24", "24"), ("-50.", "-50"), ("The answer is 1,024.", "1024"), ("there are 7 apples", "7"),
    ("apple banana cherry", "apple banana cherry"), ("apple, banana, cherry.", "apple banana cherry"),
    ("] ]", "]]"), (") > }", ") > }"), ("So the answer is ] ).", "] )"),
])
def test_bbh_extraction_finds_the_answer(generation, target):
    assert answers.bbh_correct(generation, target), answers.extract_bbh_answer(generation, target)


@pytest.mark.parametrize("generation,target", [
    ("(A)", "(B)"), ("A dog ran", "(A)"), ("Alice", "(A)"), ("", "(A)"), ("(B) or maybe (A)? the answer is (C)", "(B)"),
    ("No", "Yes"), ("Nobody knows", "No"), ("yesterday", "Yes"), ("True", "False"), ("valid", "invalid"),
    ("invalid", "valid"),
    ("240", "24"), ("-24", "24"), ("2.4", "24"), ("x24", "24"), ("", "24"),
    ("apple cherry banana", "apple banana cherry"), ("apple banana", "apple banana cherry"), ("] ] ]", "] ]"),
])
def test_bbh_extraction_never_turns_a_wrong_answer_right(generation, target):
    assert not answers.bbh_correct(generation, target)


def test_answer_kinds():
    assert [answers.answer_kind(t) for t in ("(A)", "No", "valid", "-3", "] >", "a b")] == [
        "choice", "binary", "binary", "number", "text", "text"]


@pytest.mark.parametrize("generation,reference,ok", [
    ("She pays 5 + 3 = 8.\n#### 8", "#### 8", True), ("so 1,200 total.\n#### 1,200", "1200", True),
    ("The answer is 18 dollars.", "18", True), ("3 + 4 = 7, plus 11 = 18", "18", True),
    ("#### 18.0", "18", True), ("#### 17", "18", False), ("The answer is 18. Or 20", "20", False),
    ("no number here", "18", False), ("18 eggs, then 180", "18", False),
])
def test_gsm8k_final_number(generation, reference, ok):
    assert score_all("gsm8k", [generation], [reference]) == [float(ok)]


def test_gsm8k_target_without_number_is_an_error():
    with pytest.raises(ValueError, match="no number"):
        score_all("gsm8k", ["#### 3"], ["none"])


def test_code_extraction_and_last_number():
    fenced = "Here:\n```python\ndef solution():\n    return 2\n```\nDone: 3"
    assert answers.extract_code(fenced) == "def solution():\n    return 2\n"
    assert answers.extract_code("def solution():\n    return 2\n") == "def solution():\n    return 2\n"
    assert answers.last_number("first 1, then -2.5") == -2.5 and answers.last_number("none") is None
