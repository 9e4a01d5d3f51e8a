"""FINER-Tuning tuple construction and selection: pure functions of (inputs, seed)."""

import random
from collections import Counter

import pytest

from finer_datasets.preference.configs import PRESETS
from finer_datasets.preference.construct import (
    LIMITS,
    Phrase,
    PhrasePlan,
    SceneObject,
    Selection,
    WhPair,
    assign_splits,
    candidate_tuples,
    join_phrases,
    part_index,
    plan_phrases,
    preselect,
    render,
    split_of,
    subsample,
    template_tuples,
    wh_tuples,
)
from finer_datasets.preference.templates import DEFAULT_TEMPLATES, PAPER_TEMPLATES, TEMPLATES, template

OBJECTS = (
    SceneObject("a red car", "the car", ("a red color", "a chrome bumper", "a roof rack", "tinted windows"),
                ("parked next to the bench", "in front of the house")),
    SceneObject("a wooden bench", "the bench", ("a wooden seat",), ()),
    SceneObject("a tall tree", "the tree", (), ("behind the bench",)),
    SceneObject("a brick house", "the house", (), ()),
    SceneObject("a white dog", "the dog", ("white fur",), ("lying under the tree",)),
)
WH = WhPair("The red car is parked next to the wooden bench.", "What color is the car parked next to the bench?",
            "The car parked next to the bench is red.", "What color is the car parked next to the fountain?",
            "There is no fountain; the car is parked next to the bench, and it is red.", "fountain instead of bench")


def phrases_for(image_id, seed=0):
    plans = plan_phrases(OBJECTS, image_id, seed)
    return {kind: Phrase(plan, f"a fake {kind}") for kind, plan in plans.items()}


def test_phrases_join_like_english():
    assert join_phrases(["a cat"]) == "a cat"
    assert join_phrases(["a cat", "a dog"]) == "a cat and a dog"
    assert join_phrases(["a", "b", "c"]) == "a, b, and c"
    assert render("attr", "the car", ["a red color", "a roof rack"]) == "the car with a red color and a roof rack"
    assert render("rel", "the car", ["next to the bench"]) == "the car next to the bench"
    with pytest.raises(ValueError):
        render("wh", "", [])


def test_plans_respect_the_limits_the_caption_order_and_pick_a_target():
    for n in range(200):
        plans = plan_phrases(OBJECTS, f"img{n}", 0)
        assert set(plans) == {"obj", "attr", "rel"}
        for kind, plan in plans.items():
            low, high = LIMITS[kind]
            assert low <= len(plan.items) <= high
            assert 0 <= plan.target < len(plan.items)
        order = [o.phrase for o in OBJECTS]
        assert [order.index(i) for i in plans["obj"].items] == sorted(order.index(i) for i in plans["obj"].items)
        owner = next(o for o in OBJECTS if o.name == plans["attr"].subject)
        assert set(plans["attr"].items) <= set(owner.attributes)
        owner = next(o for o in OBJECTS if o.name == plans["rel"].subject)
        assert set(plans["rel"].items) <= set(owner.relations)


def test_plans_vary_over_images_and_every_owner_gets_picked():
    subjects = Counter(plan_phrases(OBJECTS, f"img{n}", 0)["attr"].subject for n in range(300))
    assert set(subjects) == {"the car", "the bench", "the dog"}
    sizes = Counter(len(plan_phrases(OBJECTS, f"img{n}", 0)["obj"].items) for n in range(300))
    assert set(sizes) == {2, 3, 4}


def test_a_type_without_material_has_no_plan():
    plans = plan_phrases((SceneObject("a cat", "the cat"),), "x", 0)
    assert set(plans) == {"obj"} and plans["obj"].items == ("a cat",)
    assert plan_phrases((), "x", 0) == {}


def test_construction_ignores_the_global_rng_and_other_images():
    first = candidate_tuples(phrases_for("img7"), WH, "img7", 3)
    random.seed(12345)
    for n in range(20):
        candidate_tuples(phrases_for(f"other{n}"), WH, f"other{n}", 3)
    assert candidate_tuples(phrases_for("img7"), WH, "img7", 3) == first
    assert candidate_tuples(phrases_for("img7", seed=4), WH, "img7", 4) != first


def test_templated_tuples_follow_eq4_and_section_g():
    plan = PhrasePlan("obj", "", ("a red car", "a wooden bench"), 1)
    phrase = Phrase(plan, "a stone fountain")
    assert phrase.negative == "a red car and a stone fountain"
    for n in range(50):
        pos, neg = template_tuples(phrase, f"img{n}", 0)
        assert (pos["query"], neg["query"]) == ("positive", "negative")
        assert pos["id"] == f"img{n}_obj_pos" and neg["id"] == f"img{n}_obj_neg"
        assert phrase.positive in pos["question"] and phrase.negative in neg["question"]
        assert pos["chosen"].startswith("Yes") and phrase.positive in pos["chosen"]
        assert pos["rejected"].startswith("No") and phrase.negative in pos["rejected"]
        assert neg["chosen"].startswith("No") and phrase.positive in neg["chosen"]  # names what the image shows
        assert neg["rejected"].startswith("Yes") and phrase.negative in neg["rejected"]
        assert all("{" not in t[f] for t in (pos, neg) for f in ("question", "chosen", "rejected"))
        assert 1 <= pos["template"] <= 5 and not pos["selected"]


def test_every_template_is_used_and_well_formed():
    assert {name: {kind: len(t) for kind, t in kinds.items()} for name, kinds in TEMPLATES.items()} == {
        name: {"obj": 5, "attr": 5, "rel": 5} for name in ("paper", "ours")}
    for kinds in TEMPLATES.values():
        for templates in kinds.values():
            for t in templates:
                assert t.question.endswith("?") and "{X}" in t.question
                assert t.yes.startswith("Yes, ") and "{Y}" in t.yes and t.no.startswith("No, but ") and "{Z}" in t.no
    for name in TEMPLATES:
        used = Counter((t["type"], t["template"]) for n in range(300)
                       for t in candidate_tuples(phrases_for(f"i{n}"), None, f"i{n}", 0, name))
        assert {(k, i) for k in ("obj", "attr", "rel") for i in range(1, 6)} == set(used)


def test_the_default_templates_are_appendix_g_word_for_word():
    assert DEFAULT_TEMPLATES == "paper"
    assert [tuple(t) for t in PAPER_TEMPLATES] == [
        ("Does this image contain {X}?", "Yes, this image contains {Y}.", "No, but this image contains {Z}."),
        ("Does this image show {X}?", "Yes, this image shows {Y}.", "No, but this image shows {Z}."),
        ("Does this image include {X}?", "Yes, this image includes {Y}.", "No, but this image includes {Z}."),
        ("Can you see {X} in this image?", "Yes, I can see {Y} in this image.", "No, but I can see {Z} in this image."),
        ("Can {X} be seen in this image?", "Yes, {Y} can be seen in this image.", "No, but {Z} can be seen in this image."),
    ]
    assert all(TEMPLATES["paper"][kind] == PAPER_TEMPLATES for kind in ("obj", "attr", "rel"))  # shared by the types
    phrase = Phrase(PhrasePlan("attr", "the car", ("a red color", "a roof rack"), 0), "a blue color")
    for n in range(40):
        pos, neg = template_tuples(phrase, f"img{n}", 0)  # the default is the paper's set
        t = PAPER_TEMPLATES[pos["template"] - 1]
        assert pos["question"] == t.question.format(X="the car with a red color and a roof rack")
        assert pos["chosen"] == t.yes.format(Y="the car with a red color and a roof rack")
        assert pos["rejected"] == t.no.format(Z="the car with a blue color and a roof rack")
        t = PAPER_TEMPLATES[neg["template"] - 1]
        assert neg["question"] == t.question.format(X="the car with a blue color and a roof rack")
        # section 3 / B.4: a+ of a negative query says No and names what the image shows
        assert neg["chosen"] == t.no.format(Z="the car with a red color and a roof rack")
        assert neg["rejected"] == t.yes.format(Y="the car with a blue color and a roof rack")


def test_templates_are_drawn_per_tuple_from_seeded_streams():
    phrase = Phrase(PhrasePlan("obj", "", ("a red car", "a wooden bench"), 1), "a stone fountain")
    draws = [tuple(t["template"] for t in template_tuples(phrase, f"img{n}", 0)) for n in range(300)]
    assert sum(pos != neg for pos, neg in draws) > 150  # the positive and the negative tuple draw their own
    assert set(Counter(pos for pos, _ in draws)) == {1, 2, 3, 4, 5}
    random.seed(1)
    first = [template_tuples(phrase, f"img{n}", 0) for n in range(50)]
    random.seed(2)
    assert [template_tuples(phrase, f"img{n}", 0) for n in range(50)] == first  # never the global RNG
    assert [template_tuples(phrase, f"img{n}", 1) for n in range(50)] != first  # another seed, other draws
    ours = [template_tuples(phrase, f"img{n}", 0, "ours") for n in range(50)]
    assert [[t["template"] for t in pair] for pair in ours] == [[t["template"] for t in pair] for pair in first]
    paper_texts = {text for t in PAPER_TEMPLATES for text in t}
    for pair in ours:  # --templates ours: the same draws, our wording, none of the paper's
        for t in pair:
            wording = template("obj", t["template"], "ours")
            assert t["question"] == wording.question.format(X=phrase.positive if t["query"] == "positive"
                                                             else phrase.negative)
            assert wording.question not in paper_texts
    with pytest.raises(ValueError, match="template set"):
        template_tuples(phrase, "img1", 0, "mine")


def test_wh_pairs_are_symmetrised():
    pos, neg = wh_tuples(WH, "img1")
    assert (pos["question"], pos["chosen"], pos["rejected"]) == (WH.positive_question, WH.positive_answer,
                                                                 WH.negative_answer)
    assert (neg["question"], neg["chosen"], neg["rejected"]) == (WH.negative_question, WH.negative_answer,
                                                                 WH.positive_answer)
    assert pos["template"] == neg["template"] == 0


def test_an_image_gives_at_most_eight_tuples_in_type_order():
    tuples = candidate_tuples(phrases_for("img1"), WH, "img1", 0)
    assert [t["id"].split("_", 1)[1] for t in tuples] == [
        "obj_pos", "obj_neg", "attr_pos", "attr_neg", "rel_pos", "rel_neg", "wh_pos", "wh_neg"]
    assert len(candidate_tuples({}, None, "x", 0)) == 0


def test_pon_keeps_one_query_per_image_and_type_and_both_occur():
    queries = Counter()
    for n in range(200):
        tuples = candidate_tuples(phrases_for(f"i{n}"), WH, f"i{n}", 0)
        kept = preselect(tuples, f"i{n}", PRESETS["paper"], 0)
        by_type = Counter(i.split("_")[-2] for i in kept)
        assert by_type == {"obj": 1, "attr": 1, "rel": 1, "wh": 1}
        queries.update(i.rsplit("_", 1)[1] for i in kept)
        assert preselect(tuples, f"i{n}", PRESETS["paper"], 0) == kept
    assert 300 < queries["pos"] < 500 and queries["pos"] + queries["neg"] == 800


def test_presets_and_filters():
    tuples = candidate_tuples(phrases_for("i1"), WH, "i1", 0)
    assert len(preselect(tuples, "i1", PRESETS["all-queries"], 0)) == 8
    assert all(i.endswith("_neg") for i in preselect(tuples, "i1", PRESETS["negative-only"], 0))
    assert len(preselect(tuples, "i1", PRESETS["negative-only"], 0)) == 4
    assert all(i.endswith("_pos") for i in preselect(tuples, "i1", PRESETS["positive-only"], 0))
    for kind in ("obj", "attr", "rel", "wh"):  # Table 5: one type, both queries of every image
        kept = preselect(tuples, "i1", PRESETS[kind], 0)
        assert kept == [f"i1_{kind}_pos", f"i1_{kind}_neg"]
    for bad in ({"types": ()}, {"types": ("color",)}, {"queries": ("maybe",)}, {"sampling": "some"},
                {"max_tuples": 0}):
        with pytest.raises(ValueError):
            Selection(**bad)


def test_subsample_is_uniform_order_free_and_capped():
    ids = [f"t{i:04d}" for i in range(1000)]
    chosen = subsample(ids, 250, 0)
    assert len(chosen) == 250 and chosen <= set(ids)
    assert subsample(reversed(ids), 250, 0) == chosen
    assert subsample(ids, 250, 1) != chosen
    assert subsample(ids, None, 0) == set(ids) == subsample(ids, 5000, 0)
    hits = Counter(i for seed in range(200) for i in subsample(ids[:100], 50, seed))
    assert min(hits.values()) > 60 and max(hits.values()) < 140  # each id ~100 of 200 draws


def test_splits_are_per_image_and_never_empty():
    ids = [f"img{i}" for i in range(4000)]
    splits = assign_splits(ids, 0, 0.005)
    assert 5 <= sum(s == "validation" for s in splits.values()) <= 40
    assert all(splits[i] == split_of(i, 0, 0.005) for i in ids)  # the fallback never applies at scale
    small = assign_splits(["a", "b", "c"], 0, 0.005)
    assert sorted(small.values()) == ["train", "train", "validation"]
    assert assign_splits(["a"], 0, 0.005) == {"a": "train"}
    assert "train" in assign_splits(["a", "b"], 0, 0.999).values()


def test_parts_are_disjoint_stable_and_balanced():
    urls = [f"https://example.com/{i}.jpg" for i in range(3000)]
    parts = Counter(part_index(u, 3) for u in urls)
    assert set(parts) == {0, 1, 2} and min(parts.values()) > 900
    assert [part_index(u, 3) for u in urls] == [part_index(u, 3) for u in urls]
