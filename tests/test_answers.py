"""Reading the chosen letter out of raw model answers (strict and FINER's official parser)."""

import pytest

import finer_datasets.eval.answers as answers
from finer_datasets.eval.answers import parse_answer

YESNO = [
    "No, but I can see cloud in this image.",
    "No, but I can see river in this image.",
    "Yes, I can see tree in this image.",
    "No, but I can see moon in this image.",
    "No, but I can see leaf in this image.",
]
WH = ["skateboard", "boat", "van", "The house is not with a large size, but is with a medium size.", "car"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("B", "B"),
        ("b", "B"),
        ("A", "A"),
        ("E", "E"),
        ("  C\n", "C"),
        ("(B)", "B"),
        ("(b)", "B"),
        ("[D]", "D"),
        ("B.", "B"),
        ("b.", "B"),
        ("B)", "B"),
        ("B:", "B"),
        ("A.", "A"),
        ("B) text", "B"),
        ("B. text", "B"),
        ("(B) text", "B"),
        ("A) A cat", "A"),
        ("Answer: B", "B"),
        ("answer: b", "B"),
        ("Answer: (C)", "C"),
        ("Answer: A", "A"),
        ("The answer is B.", "B"),
        ("The answer is B", "B"),
        ("The correct answer is D", "D"),
        ("The answer is e.", "E"),
        ("**B**", "B"),
        ("**Answer:** B", "B"),
        ("`C`", "C"),
        ("B: No, but I can see tree in this image.", "B"),
        ("B: No, but", "B"),
        ("Option A is correct", "A"),
        ("A is correct", "A"),
        ("I'd pick c.", "C"),
        ("I think D", "D"),
        ("A, because the image shows a tree", "A"),
    ],
)
def test_strict_accepts_the_usual_forms(text, expected):
    assert parse_answer(text) == expected
    assert parse_answer(text, YESNO) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\n",
        "A or B",
        "A and C",
        "B or C",
        "Either B or D.",
        "B, not C",
        "The answer is B, not A",
        "Answer: B or C",
        "B\nC",
        "A cat is sitting on the desk.",
        "A tree",
        "I",
        "I don't know",
        "Yes",
        "No",
        "The image shows a cat.",
        "the answer is a cat",
        "E.g. a tree",
        "F",
        "(F)",
    ],
)
def test_strict_returns_none_when_empty_or_ambiguous(text):
    assert parse_answer(text) is None
    assert parse_answer(text, YESNO) is None


@pytest.mark.parametrize(
    "text,options,expected",
    [
        ("Yes, I can see tree in this image.", YESNO, "C"),
        ("yes,  i can see TREE in this image", YESNO, "C"),
        ("  No, but I can see moon in this image  ", YESNO, "D"),
        ("No, but I can see moon in this image..", YESNO, "D"),
        ("C. Yes, I can see tree in this image.", YESNO, "C"),
        ("car", WH, "E"),
        ("Car.", WH, "E"),
        ("The house is not with a large size, but is with a medium size.", WH, "D"),
        # a letter and the text of another option: ambiguous
        ("B. Yes, I can see tree in this image.", YESNO, None),
        # only a prefix shared by four options, or not exactly an option
        ("No, but I can see", YESNO, None),
        ("Yes, I can see tree", YESNO, None),
        ("A car", WH, None),
        ("a van or a car", WH, None),
    ],
)
def test_strict_full_option_text(text, options, expected):
    assert parse_answer(text, options) == expected


def test_option_text_needs_the_options():
    assert parse_answer("Yes, I can see tree in this image.") is None
    assert parse_answer("car") is None


def test_two_options_with_the_same_text_are_ambiguous():
    assert parse_answer("cat", ["cat", "Cat.", "dog", "fox", "owl"]) is None


def test_option_text_does_not_add_letters():
    # a capital letter inside the repeated option text is not a second answer
    options = ["a plate", "a C-shaped rail", "a cup", "a bowl", "a fork"]
    assert parse_answer("B: a C-shaped rail", options) == "B"
    assert parse_answer("B: a C-shaped rail") is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("B", "B"),
        ("b", "B"),
        ("(C)", "C"),
        ("The answer is B", "E"),  # the "e" of "The": the flaw the docstring describes
        ("Answer: B", "A"),
        ("Yes", "E"),
        ("No", None),
        ("", None),
        ("I think D", "D"),
        ("  d.", "D"),
        ("xyz", None),
    ],
)
def test_official_mode_reproduces_the_released_parser(text, expected):
    assert parse_answer(text, mode="official") == expected
    assert parse_answer(text, YESNO, mode="official") == expected


def test_official_mode_is_documented_as_flawed():
    doc = parse_answer.__doc__
    assert "official" in doc and "flawed" in doc and "The answer is B" in doc


def test_none_and_bad_arguments():
    assert parse_answer(None) is None
    assert parse_answer(None, mode="official") is None
    with pytest.raises(ValueError, match="unknown parser mode"):
        parse_answer("B", mode="lenient")
    with pytest.raises(TypeError):
        parse_answer(2)


def test_module_exports():
    assert "parse_answer" in answers.__all__
    for name in answers.__all__:
        assert hasattr(answers, name)
