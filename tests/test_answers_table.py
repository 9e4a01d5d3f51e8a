"""Strict answer parsing, table-driven: a letter only when the output states exactly one option.

Each row is (model output, option set or None, expected letter or None). The rows cover what
strict must accept, and the ways an output can fail to state exactly one option: negations,
contradictions and retractions, letters inside free text, option text that disagrees with the
letter, several letters, articles, abbreviations and the pronoun "I". A property test then checks
the rule on random option sets.
"""

import random

import pytest

from finer_datasets.eval.answers import LETTERS, parse_answer

YESNO = [
    "No, but I can see cloud in this image.",
    "No, but I can see river in this image.",
    "Yes, I can see tree in this image.",
    "No, but I can see moon in this image.",
    "No, but I can see leaf in this image.",
]
WH = ["skateboard", "boat", "van", "The house is not with a large size, but is with a medium size.", "car"]
ATTR = [
    "The cup is not with a white color, but is with a black color.",
    "Yes, the cup is with a white color.",
    "The cup is not with a white color, but is with a red color.",
    "The cup is not with a white color, but is with a blue color.",
    "The cup is not with a white color, but is with a green color.",
]
SHAPES = ["a plate", "a C-shaped rail", "a cup", "a D-ring", "a fork"]
OPTIONS = {"yesno": YESNO, "wh": WH, "attr": ATTR, "shapes": SHAPES, None: None}

ROWS = [
    # -- accepted: one option, stated unambiguously ------------------------------------------
    ("B", None, "B"),
    ("(b)", None, "B"),
    ("B.", None, "B"),
    ("B) text", None, "B"),
    ("(b) text", None, "B"),
    ("B) " + YESNO[1], "yesno", "B"),
    ("Answer: B", None, "B"),
    ("The answer is B.", None, "B"),
    ("**B**", None, "B"),
    ("B: " + YESNO[1], "yesno", "B"),
    ("B: No, but", "yesno", "B"),
    ("Option C is correct", None, "C"),
    ("I think D", None, "D"),
    (YESNO[2], "yesno", "C"),
    ("car.", "wh", "E"),
    ("The answer is (B).", None, "B"),
    ("Answer - D", None, "D"),
    ("answer = e", None, "E"),
    ("I choose option B", None, "B"),
    ("Therefore, the answer is E.", None, "E"),
    ("Looking closely, C.", None, "C"),
    ("C is the correct answer", None, "C"),
    ("My answer would be D.", None, "D"),
    ("It's B", None, "B"),
    ("B\n\nExplanation: the image shows a cat.", None, "B"),
    ("A, because the image shows a tree", None, "A"),
    ("B. There is no dog in the image.", None, "B"),
    ("I'm not sure, but I think B", None, "B"),
    ("B, no doubt", None, "B"),
    ("E, because it is a car", "wh", "E"),
    ("A Yes, I can see tree", ["Yes, I can see tree.", *YESNO[:4]], "A"),
    ("B: a C-shaped rail", "shapes", "B"),
    ("D. a D-ring", "shapes", "D"),
    # -- negations -----------------------------------------------------------------------------
    ("Not A", None, None),
    ("It is not B.", None, None),
    ("The answer is not C", None, None),
    ("the answer is not c.", None, None),
    ("It isn't B", None, None),
    ("I don't think it's B", None, None),
    ("Option B is incorrect.", None, None),
    ("B is wrong", None, None),
    ("B is false", "yesno", None),
    ("B: incorrect", None, None),
    ("B (incorrect)", None, None),
    ("B, which is not right", None, None),
    ("A is not correct", None, None),
    ("anything but C", None, None),
    ("All except D", None, None),
    ("I would rule out A", None, None),
    ("E can be ruled out", None, None),
    ("The wrong one is A", None, None),
    ("Neither A nor B", None, None),
    ("B rather than C", None, None),
    ("not c, it's B", None, None),
    ("Not " + YESNO[2], "yesno", None),
    # -- contradictions and retractions ----------------------------------------------------------
    ("A. Actually B", None, None),
    ("A. Actually, no.", None, None),
    ("B... wait", None, None),
    ("C, or maybe not", None, None),
    ("D. Sorry, I cannot tell.", None, None),
    ("The answer is B, not A", None, None),
    ("B, definitely not C", None, None),
    # -- letters inside free text ------------------------------------------------------------------
    ("I see the letter B on the sign", None, None),
    ("Vitamin C is in oranges", None, None),
    ("Plan B.", None, None),
    ("The sign on the D-shaped table says hello", None, None),
    ("Is it B?", None, None),
    ("B?", None, None),
    ("B's color is red", None, None),
    ("U.S.A.", None, None),
    # -- option text that disagrees with the letter ---------------------------------------------
    ("Answer: C. " + YESNO[3], "yesno", None),
    ("Answer: C. " + YESNO[2], "yesno", "C"),
    ("B. " + YESNO[2], "yesno", None),
    ("B. Yes", "yesno", None),
    ("C. No", "yesno", None),
    ("A. Yes, I can see", "yesno", None),
    ("A) " + WH[1], "wh", None),
    ("C, because it is a car", "wh", None),
    ("C. I can see a boat", "wh", None),
    ("B. " + ATTR[0], "attr", None),
    ("A. The cup is not with a white color, but is with a black color.", "attr", "A"),
    ("B. The cup is not with a white color", "attr", None),
    (YESNO[2] + " So the answer is B.", "yesno", None),
    # -- several letters ---------------------------------------------------------------------------
    ("A or B", None, None),
    ("A, B", None, None),
    ("Both A and B", None, None),
    ("A/B", None, None),
    ("B\nC", None, None),
    ("Answer: B or C", None, None),
    ("A B C D E", None, None),
    ("A. The answer is C.", None, None),
    ("B: a C-shaped rail", None, None),  # without the options, "C" may be a second letter
    # -- articles, abbreviations, the pronoun I, nothing at all ----------------------------------
    ("A cat is sitting on the desk.", None, None),
    ("A Cat", None, None),
    ("Answer: A cat", None, None),
    ("There is A cat", None, None),
    ("A car", "wh", None),
    ("E.g. a tree", None, None),
    ("I", None, None),
    ("I don't know", None, None),
    ("I can see it", "yesno", None),
    ("None of the above", None, None),
    ("Yes", "yesno", None),
    ("", None, None),
]


def test_the_table_is_large_and_covers_every_category():
    assert len(ROWS) >= 60
    assert len({(text, str(options)) for text, options, _ in ROWS}) == len(ROWS)  # no repeated row
    assert sum(expected is None for _, _, expected in ROWS) >= 40


@pytest.mark.parametrize("text,options,expected", ROWS)
def test_strict_parser_table(text, options, expected):
    options = OPTIONS[options] if not isinstance(options, list) else options
    assert parse_answer(text, options) == expected


# -- property: random option sets -------------------------------------------------------------------

WORDS = ["cat", "dog", "red", "blue", "kite", "table", "with", "the", "a", "house", "size", "large", "small",
         "is", "not", "but", "see", "can", "this", "image", "in", "on", "door", "C-shaped", "T-shirt", "No,",
         "Yes,", "striped", "ball", "color", "green", "of", "and", "I", "window", "wooden", "chair"]


def random_options(rng: random.Random) -> list[str]:
    """Five distinct option texts: FINER templates or random phrases, with no standalone letter."""
    options: list[str] = []
    while len(options) < 5:
        kind = rng.randrange(3)
        thing = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        if kind == 0:
            text = rng.choice(["Yes, I can see {} in this image.", "No, but I can see {} in this image."]).format(thing)
        elif kind == 1:
            text = f"The {thing} is not with a large size, but is with a {rng.choice(WORDS)} size."
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        if len(text) > 1 and text.casefold().rstrip(".") not in {o.casefold().rstrip(".") for o in options}:
            options.append(text)
    return options


NEGATED = ["not {}", "Not {}.", "The answer is not {}", "It isn't {}", "{} is wrong", "anything but {}",
           "Option {} is incorrect.", "except {}"]


def test_random_option_sets():
    rng = random.Random(20260317)
    checked = 0
    for _ in range(300):
        options = random_options(rng)
        for index, letter in enumerate(LETTERS):
            for form in (letter, f"Answer: {letter}", options[index], f"{letter}. {options[index]}"):
                assert parse_answer(form, options) == letter, (form, options)
            for negated in NEGATED:
                assert parse_answer(negated.format(letter), options) != letter, (negated, options)
                assert parse_answer(negated.format(letter), options) is None
            other = options[(index + 1 + rng.randrange(4)) % 5]
            assert parse_answer(f"{letter}. {other}", options) is None, (letter, other, options)
            checked += 1
    assert checked == 1500
