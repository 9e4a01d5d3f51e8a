"""The sampling policy: k ranges, skips, stable pair ids, order independence."""

from collections import Counter

from finer_datasets import (
    KLimits,
    LexicalNegatives,
    SceneGraph,
    SGAttribute,
    SGObject,
    SGRelation,
    pairs_for_image,
)
from finer_datasets.mcq.pairs import pair_rng, relation_phrase


def graph(n_objects=7, image_id="img"):
    names = ["cat", "desk", "lamp", "book", "cup", "chair", "clock", "vase"][:n_objects]
    objects = tuple(
        SGObject(f"o{i}", name, tuple(SGAttribute(f"o{i}_a{j}", text) for j, text in enumerate(
            ["with a black color", "with a small size", "with a striped pattern", "with a round shape"][: i % 4 + 1])))
        for i, name in enumerate(names)
    )
    relations = (
        SGRelation("r0", "o0", "is lying on", "o1"),
        SGRelation("r1", "o0", "is next to", "o2"),
        SGRelation("r2", "o2", "is on", "o1"),
        SGRelation("r3", "o0", "holds", "o3") if n_objects > 3 else SGRelation("r3", "o0", "is under", "o2"),
    )
    return SceneGraph(image_id, f"{image_id}.jpg", objects, relations)


def build_pairs(g, seed=0, limits=KLimits()):
    negs = LexicalNegatives().negatives_for(g, pair_rng(seed, "neg"))
    return pairs_for_image(g, negs, seed=seed, key=g.image_id, limits=limits)


def test_k_ranges_follow_the_limits():
    pairs, skips = build_pairs(graph(7))
    by = Counter((p.setting, p.k) for p in pairs)
    assert [by[("multi_obj", k)] for k in range(1, 8)] == [1, 1, 1, 1, 1, 1, 0]
    assert max(p.k for p in pairs if p.setting == "multi_attr") == 3
    # o0 has 3 relations -> k 1..3; o2 has one relation -> k 1
    assert sorted(p.k for p in pairs if p.setting == "multi_rel") == [1, 1, 2, 3]
    assert skips == []


def test_too_few_objects_is_skipped_per_k():
    pairs, skips = build_pairs(graph(3))
    assert sorted(p.k for p in pairs if p.setting == "multi_obj") == [1, 2, 3]
    assert [r for r, _ in skips].count("too_few_objects") == 3


def test_multi_attr_counts_one_pair_per_object_and_k():
    pairs, _ = build_pairs(graph(4))
    got = Counter(p.pair_id.rsplit("_", 1)[0] for p in pairs if p.setting == "multi_attr")
    # object i has i % 4 + 1 attributes -> min(3, that) pairs
    assert got == {"multi_attr_img_o0": 1, "multi_attr_img_o1": 2, "multi_attr_img_o2": 3, "multi_attr_img_o3": 3}


def test_multi_rel_phrase_groups_relations_of_one_subject():
    pairs, _ = build_pairs(graph(4))
    k1 = next(p for p in pairs if p.pair_id == "multi_rel_img_o2_k1")
    assert k1.positive.question == "Can you see the lamp on the desk in this image?"
    k3 = next(p for p in pairs if p.pair_id == "multi_rel_img_o0_k3")
    assert k3.positive.question.startswith("Can you see the cat ")
    assert "that holds the book" in k3.positive.question


def test_wh_pairs_exist_for_relations_with_attributed_context():
    pairs, skips = build_pairs(graph(4))
    wh = [p for p in pairs if p.setting == "wh"]
    assert len(wh) == 4
    assert not [r for r, _ in skips if r.startswith("wh")]
    assert all(p.positive.question.startswith("What ") for p in wh)


def test_wh_skips_when_no_context_has_attributes():
    g = graph(4)
    bare = SceneGraph(g.image_id, g.image_file, tuple(SGObject(o.id, o.name) for o in g.objects), g.relations)
    pairs, skips = build_pairs(bare)
    assert not [p for p in pairs if p.setting in ("wh", "multi_attr")]
    assert [r for r, _ in skips].count("wh_no_context_attribute") == 4


def test_pairs_are_sorted_and_stable_and_seed_dependent():
    a, _ = build_pairs(graph(6), seed=1)
    b, _ = build_pairs(graph(6), seed=1)
    c, _ = build_pairs(graph(6), seed=2)
    assert a == b
    assert [p.pair_id for p in a] == sorted(p.pair_id for p in a)
    assert [p.positive.options for p in a] != [p.positive.options for p in c]


def test_a_pair_does_not_depend_on_other_images():
    g1, g2 = graph(6, "a"), graph(5, "b")
    alone, _ = build_pairs(g1)
    build_pairs(g2)  # other work in between must not matter (no shared RNG state)
    again, _ = build_pairs(g1)
    assert alone == again


def test_elements_without_negatives_take_no_part():
    g = graph(4)
    negs = LexicalNegatives().negatives_for(g, pair_rng(0, "neg"))
    del negs["o1"]
    pairs, _ = pairs_for_image(g, negs, seed=0, key="img")
    assert all("desk" not in p.elements for p in pairs if p.setting == "multi_obj")


def test_relation_phrase_forms():
    assert relation_phrase("is lying on", "desk") == "lying on the desk"
    assert relation_phrase("holds", "cup") == "that holds the cup"
