"""MCQ construction: the paper's templates (B.4), answers, option roles, seeded shuffling."""

import random

import pytest

from finer_datasets import wh_pair, yesno_pair
from finer_datasets.mcq.construct import LETTERS

UNITS = ["cat", "desk", "lamp"]
NEGS = ["dog", "fox", "owl", "rabbit"]


def option(q, letter):
    return q.options[LETTERS.index(letter)]


def test_yesno_positive_question_uses_the_true_phrase_and_yes_is_correct():
    pair = yesno_pair("p", "multi_obj", UNITS, 1, NEGS, random.Random(0))
    assert pair.positive.question == "Can you see cat, desk, and lamp in this image?"
    assert option(pair.positive, pair.positive.answer) == "Yes, I can see cat, desk, and lamp in this image."
    nos = sorted(o for o in pair.positive.options if o.startswith("No"))
    assert nos == sorted(f"No, but I can see cat, {n}, and lamp in this image." for n in NEGS)


def test_yesno_negative_question_is_answered_by_no_but_true_phrase():
    pair = yesno_pair("p", "multi_obj", UNITS, 1, NEGS, random.Random(3))
    neg = pair.negative
    assert neg.question == f"Can you see cat, {pair.negated_negative}, and lamp in this image?"
    assert option(neg, neg.answer) == "No, but I can see cat, desk, and lamp in this image."
    yes = [o for o in neg.options if o.startswith("Yes")]
    assert yes == [f"Yes, I can see cat, {pair.negated_negative}, and lamp in this image."]
    # the other three corrupted phrases are the remaining distractors
    others = {f"No, but I can see cat, {n}, and lamp in this image." for n in NEGS if n != pair.negated_negative}
    assert others < set(neg.options)
    assert len(set(neg.options)) == 5


def test_option_types_mark_yes_as_affirm():
    pair = yesno_pair("p", "multi_obj", UNITS, 0, NEGS, random.Random(1))
    for q in (pair.positive, pair.negative):
        for text, kind in zip(q.options, q.option_types):
            assert kind == ("affirm" if text.startswith("Yes") else "deny")


def test_question_ids_and_fields():
    pair = yesno_pair("multi_obj_x_k3", "multi_obj", UNITS, 2, NEGS, random.Random(0))
    assert pair.positive.question_id == "multi_obj_x_k3_pos"
    assert pair.negative.question_id == "multi_obj_x_k3_neg"
    assert (pair.k, pair.negated_index, pair.negated_positive) == (3, 2, "lamp")


def test_same_seed_same_pair_other_seed_differs_and_global_rng_untouched():
    random.seed(123)
    state = random.getstate()
    a = yesno_pair("p", "multi_obj", UNITS, 1, NEGS, random.Random(7))
    b = yesno_pair("p", "multi_obj", UNITS, 1, NEGS, random.Random(7))
    assert a == b
    assert random.getstate() == state
    others = {yesno_pair("p", "multi_obj", UNITS, 1, NEGS, random.Random(s)).positive.options for s in range(20)}
    assert len(others) > 1


def test_every_negative_can_be_the_query_and_answers_are_spread():
    chosen, letters = set(), set()
    for seed in range(200):
        pair = yesno_pair("p", "multi_obj", UNITS, 1, NEGS, random.Random(seed))
        chosen.add(pair.negated_negative)
        letters.add(pair.positive.answer)
        letters.add(pair.negative.answer)
    assert chosen == set(NEGS)
    assert letters == set(LETTERS)


@pytest.mark.parametrize(
    "units,index,negs,error",
    [([], 0, NEGS, "at least one"), (UNITS, 3, NEGS, "out of range"), (UNITS, 0, NEGS[:3], "4 distinct"),
     (UNITS, 0, ["a", "a", "b", "c"], "4 distinct")],
)
def test_yesno_rejects_bad_arguments(units, index, negs, error):
    with pytest.raises(ValueError, match=error):
        yesno_pair("p", "multi_obj", units, index, negs, random.Random(0))


def wh(seed=0):
    return wh_pair(
        "wh_x_r0",
        question=lambda d: f"What is the {d} lying on?",
        context="cat",
        attributes=["with a black color", "with a long tail"],
        attribute_index=0,
        attribute_negatives=["with a white color", "with a red color", "with a gray color", "with a brown color"],
        target="desk",
        target_negatives=["chair", "bed", "shelf", "stool"],
        rng=random.Random(seed),
    )


def test_wh_positive_is_answered_by_the_target_object():
    pair = wh()
    assert pair.positive.question == "What is the cat with a black color and with a long tail lying on?"
    assert option(pair.positive, pair.positive.answer) == "desk"
    wrong = pair.negated_negative
    assert f"The cat is not with a black color, but is {wrong}." in pair.positive.options


def test_wh_negative_is_answered_by_the_correction():
    pair = wh(5)
    wrong = pair.negated_negative
    assert pair.negative.question == f"What is the cat {wrong} and with a long tail lying on?"
    assert option(pair.negative, pair.negative.answer) == f"The cat is not {wrong}, but is with a black color."
    assert "desk" in pair.negative.options
    assert pair.negative.option_types[LETTERS.index(pair.negative.answer)] == "deny"
    assert pair.setting == "wh" and pair.k == 2 and pair.negated_index == 0
    # the four object options are the same in both questions
    objects = lambda q: sorted(o for o, t in zip(q.options, q.option_types) if t == "affirm")
    assert objects(pair.positive) == objects(pair.negative)


def test_prompt_follows_section_d():
    q = wh().positive
    lines = q.prompt().splitlines()
    assert lines[1].startswith("A. ") and lines[5].startswith("E. ")
    assert lines[-1] == "Please answer with a single capital letter (A, B, C, D, or E)."
