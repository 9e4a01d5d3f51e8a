"""Reading k, the negated position and the elements back from the text of a released pair
(finer_datasets.mcq.release_text): exact on pairs rendered with the paper's templates, None when
the text does not tell -- never a wrong value."""

import random

import pytest

from finer_datasets.core.text import join_list
from finer_datasets.mcq.construct import wh_pair, yesno_pair
from finer_datasets.mcq.release_import import pair_record, release_pairs
from finer_datasets.mcq.release_text import option_types, recover_structure

OBJECTS = ["cat", "desk", "lamp", "salt and pepper shaker", "tv", "black and white dog", "sofa", "cup", "window"]
NEGATIVES = ["bowl", "fork", "chair", "bench", "oven", "sink", "kite", "boat", "horse", "plate"]
ATTRIBUTES = ["with a red shirt", "with a black and brown color", "with short hair", "with a crème, knitted hat",
              "with a long tail", "with four legs"]
ATTRIBUTE_NEGATIVES = ["with a blue shirt", "with a white color", "with long hair", "with a green hat",
                       "with a short tail", "with three legs", "with a grey and white color"]


def recovered(pair):
    found = recover_structure(pair.setting, pair.positive.question, pair.negative.question, pair.positive.options,
                              pair.negative.options)
    return found.k, found.negated_index, found.elements, found.negated


def prefixed(prefix):
    return lambda units: f"{prefix} {join_list(units)}"


def some_attributes(rng, most):
    """(k attributes, the negated position, its 4 negatives)."""
    k = rng.randint(1, most)
    attrs = rng.sample(ATTRIBUTES, k)
    return attrs, rng.randrange(k), rng.sample([a for a in ATTRIBUTE_NEGATIVES if a not in attrs], 4)


@pytest.mark.parametrize("seed", range(60))
def test_yes_no_pairs_of_the_templates_are_read_back_exactly(seed):
    rng = random.Random(seed)
    k = rng.randint(1, 6)
    units = rng.sample(OBJECTS, k)
    i = rng.randrange(k)
    pair = yesno_pair("p", "multi_obj", units, i, rng.sample(NEGATIVES, 4), rng)
    k_, index, elements, negated = recovered(pair)
    assert (k_, index) == (k, i)
    # "salt and pepper shaker and cat" (cat negated) reads two ways: the elements are then unknown, never wrong
    if (elements, negated) == ((), None):
        assert k == 2 and any(" and " in u for u in units)
    else:
        assert (elements, negated) == (tuple(units), (units[i], pair.negated_negative))
    attrs, i, negatives = some_attributes(rng, 4)
    pair = yesno_pair("p", "multi_attr", attrs, i, negatives, rng, render=prefixed("the big cat"))
    assert recovered(pair) == (len(attrs), i, tuple(attrs), (attrs[i], pair.negated_negative))
    k = rng.randint(1, 3)
    rels = rng.sample(["lying on the desk", "next to the lamp", "under the table", "near the window"], k)
    i = rng.randrange(k)
    negs = ["above the shelf", "behind the door", "inside the box", "beside the sink"]
    pair = yesno_pair("p", "multi_rel", rels, i, negs, rng, render=prefixed("the cat"))
    assert recovered(pair) == (k, i, (), None)  # where the subject ends is not in the text


@pytest.mark.parametrize("seed", range(40))
def test_wh_pairs_of_the_template_are_read_back_exactly(seed):
    rng = random.Random(seed)
    attrs, i, negatives = some_attributes(rng, 3)
    k = len(attrs)
    pair = wh_pair("p", question=lambda d: f"What is the {d} standing on?", context="dog", attributes=attrs,
                   attribute_index=i, attribute_negatives=negatives, target="rug", target_negatives=NEGATIVES[:4],
                   rng=rng)
    k_, index, elements, negated = recovered(pair)
    assert (k_, index, negated) == (k, i, (attrs[i], pair.negated_negative))
    assert elements == (tuple(attrs) if i == k - 1 else ())
    assert option_types("wh", pair.positive.options) == list(pair.positive.option_types)
    assert option_types("wh", pair.negative.options) == list(pair.negative.option_types)


def test_option_types_of_yes_no_options_follow_the_template():
    rng = random.Random(3)
    pair = yesno_pair("p", "multi_obj", ["cat", "desk"], 0, NEGATIVES[:4], rng)
    for q in (pair.positive, pair.negative):
        assert option_types("multi_obj", q.options) == list(q.option_types)


@pytest.mark.parametrize("positive,negative", [
    ("Can you see the bed under the window in this image?", "Is the bed next to the window in this picture?"),
    ("Is there a cat?", "Is there a dog?"),
    ("Can you see cat and dog in this image?", "Can you see cat and dog in this image?"),  # nothing differs
    ("Can you see cat, dog, and rug in this image?", "Can you see cow, pig, and rug in this image?"),  # two differ
])
def test_text_off_the_template_gives_no_structure(positive, negative):
    found = recover_structure("multi_obj", positive, negative, ["Yes"] * 5, ["No"] * 5)
    assert (found.k, found.negated_index, found.elements, found.negated) == (None, None, (), None)


def test_a_wh_pair_without_one_correction_option_gives_no_structure():
    options = ["rug", "mat", "bed", "sofa", "floor"]
    found = recover_structure("wh", "What is the dog with a red collar lying on?", "What is the dog with a blue "
                              "collar lying on?", options, options)
    assert (found.k, found.negated_index, found.negated) == (None, None, None)


def test_pair_records_follow_gt_index_and_the_qtype_suffix():
    from finer_datasets.mcq.release_import import ReleaseRow

    def row(n, qtype, gt):
        return ReleaseRow(file="t.csv", row=n, line=n + 2, image="a b.jpg", qtype=qtype, question=f"Q{n}?",
                          options=tuple(f"o{j}" for j in range(5)), gt_index=gt)

    (pair,) = release_pairs("wh", [row(0, "wh_neg", 4), row(1, "wh_pos", 0)], file="t.csv")
    record = pair_record(pair)
    assert record["pair_id"] == "wh_a-b_p00000"
    assert (record["positive"]["question"], record["positive"]["answer"]) == ("Q1?", "A")
    assert (record["negative"]["question_id"], record["negative"]["answer"]) == ("wh_a-b_p00000_neg", "E")
