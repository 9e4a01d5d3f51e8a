"""The sampling policies (`table9`: one pair per group with k = min(K, n); `per-k`: one pair per k)
and the multi_rel guard (no two relations of a question share an object), as properties over
random scene graphs whose object, attribute and relation counts the test knows."""

import random
from collections import Counter

import pytest

from finer_datasets import KLimits, SceneGraph, SGAttribute, SGObject, SGRelation, build, pairs_for_image
from finer_datasets.errors import UsageError
from finer_datasets.mcq.pairs import PER_K, TABLE9, sampled_ks

NAMES = ["cat", "desk", "lamp", "book", "cup", "chair", "clock", "vase", "rug"]
LIMITS = KLimits(objects=6, attributes=5, relations=3)  # FINER-DOCCI's


def random_graph(rng: random.Random, image_id: str) -> tuple[SceneGraph, dict[str, tuple[str, ...]]]:
    """A scene graph with repeated object names, 0-7 attributes per object and relations that
    often share an object, plus 4 negatives for most elements (some have none and take no part).
    Every relation's predicate is unique, so a question's phrase names the relation it came from."""
    objects = []
    for i in range(rng.randint(0, 9)):
        attrs = tuple(SGAttribute(f"o{i}_a{j}", f"with trait {j}") for j in range(rng.choice([0, 1, 2, 3, 5, 7])))
        objects.append(SGObject(f"o{i}", rng.choice(NAMES[: rng.randint(2, len(NAMES))]), attrs))
    relations = []
    if len(objects) >= 2:
        for r in range(rng.randint(0, 14)):
            subject, obj = rng.sample(objects, 2)
            relations.append(SGRelation(f"r{r}", subject.id, f"is at spot {r} of", obj.id))
    graph = SceneGraph(image_id, f"{image_id}.jpg", tuple(objects), tuple(relations))
    negatives = {}
    for kind, element_id, text in graph.elements():
        if rng.random() < 0.9:
            if kind == "relation":
                negatives[element_id] = tuple(f"is not{m} at spot {element_id} of" for m in range(4))
            else:
                negatives[element_id] = tuple(f"{text} not{m}" for m in range(4))
    return graph, negatives


def graphs(n=300, seed=7):
    rng = random.Random(seed)
    return [random_graph(rng, f"img{i}") for i in range(n)]


def expected_groups(graph, negatives):
    """The groups the paper's rule samples from, counted independently of the code under test:
    distinct object names; each object's attributes; each subject's distinct related objects
    (and its relations, before the guard)."""
    names = {o.name.lower() for o in graph.objects if o.id in negatives}
    attrs = {o.id: n for o in graph.objects if (n := sum(a.id in negatives for a in o.attributes))}
    objects, relations = {}, Counter()
    for rel in graph.relations:
        if rel.id in negatives:
            objects.setdefault(rel.subject, set()).add(graph.object(rel.object).name.lower())
            relations[rel.subject] += 1
    return len(names), attrs, {s: len(o) for s, o in objects.items()}, relations


def histogram(pairs, setting):
    return Counter(p.k for p in pairs if p.setting == setting)


def test_table9_asks_one_pair_per_image_object_and_subject_with_k_min_of_the_limit_and_n():
    expected = {"multi_obj": Counter(), "multi_attr": Counter(), "multi_rel": Counter()}
    got = {setting: Counter() for setting in expected}
    images_with_objects = 0
    for graph, negatives in graphs():
        pairs, _ = pairs_for_image(graph, negatives, seed=0, key=graph.image_id, limits=LIMITS, sampling=TABLE9)
        n_names, attrs, related, _ = expected_groups(graph, negatives)
        images_with_objects += n_names > 0
        if n_names:
            expected["multi_obj"][min(6, n_names)] += 1
        expected["multi_attr"].update(min(5, n) for n in attrs.values())
        expected["multi_rel"].update(min(3, n) for n in related.values())
        for setting in got:
            got[setting] += histogram(pairs, setting)
        # one pair per group: the pair ids name the image / object / subject once each
        per_group = Counter(p.pair_id.rsplit("_k", 1)[0] for p in pairs if p.setting != "wh")
        assert set(per_group.values()) <= {1}
    assert got == expected
    assert sum(got["multi_obj"].values()) == images_with_objects  # one multi_obj pair per image
    assert sum(got["multi_attr"].values()) > 300 and set(got["multi_attr"]) == {1, 2, 3, 4, 5}
    assert set(got["multi_rel"]) == {1, 2, 3} and set(got["multi_obj"]) == {1, 2, 3, 4, 5, 6}


def test_per_k_asks_one_pair_for_every_k_up_to_min_of_the_limit_and_n():
    expected = {"multi_obj": Counter(), "multi_attr": Counter(), "multi_rel": Counter()}
    got = {setting: Counter() for setting in expected}
    for graph, negatives in graphs():
        pairs, skips = pairs_for_image(graph, negatives, seed=0, key=graph.image_id, limits=LIMITS, sampling=PER_K)
        n_names, attrs, related, _ = expected_groups(graph, negatives)
        expected["multi_obj"].update(range(1, min(6, n_names) + 1))
        expected["multi_attr"].update(k for n in attrs.values() for k in range(1, min(5, n) + 1))
        expected["multi_rel"].update(k for n in related.values() for k in range(1, min(3, n) + 1))
        for setting in got:
            got[setting] += histogram(pairs, setting)
        assert [r for r, _ in skips].count("too_few_objects") == 6 - min(6, n_names)
    assert got == expected


def test_table9_pairs_are_the_per_k_pairs_of_the_same_k():
    for graph, negatives in graphs(80):
        table9, _ = pairs_for_image(graph, negatives, seed=3, key=graph.image_id, limits=LIMITS, sampling=TABLE9)
        per_k, _ = pairs_for_image(graph, negatives, seed=3, key=graph.image_id, limits=LIMITS, sampling=PER_K)
        assert set(table9) <= set(per_k)
        assert [p for p in table9 if p.setting == "wh"] == [p for p in per_k if p.setting == "wh"]


@pytest.mark.parametrize("sampling", [TABLE9, PER_K])
def test_no_two_relations_of_a_multi_rel_question_share_an_object(sampling):
    checked = shared_subjects = 0
    for graph, negatives in graphs(400, seed=11):
        pairs, skips = pairs_for_image(graph, negatives, seed=0, key=graph.image_id, limits=LIMITS, sampling=sampling)
        by_phrase = {f"at spot {r.id[1:]} of the {graph.object(r.object).name}": r for r in graph.relations}
        for pair in (p for p in pairs if p.setting == "multi_rel"):
            relations = [by_phrase[unit] for unit in pair.elements]
            objects = [graph.object(r.object).name.lower() for r in relations]
            assert len(set(objects)) == len(objects) == pair.k, (pair.pair_id, objects)
            assert len({r.subject for r in relations}) == 1
            checked += 1
        # each k the guard takes away from a subject is one counted skip
        _, _, related, relations = expected_groups(graph, negatives)
        lost = {s: len(set(sampled_ks(relations[s], 3, sampling)) - set(sampled_ks(n, 3, sampling)))
                for s, n in related.items()}
        shared_subjects += sum(related[s] < relations[s] for s in related)
        assert [r for r, _ in skips].count("relations_share_object") == sum(lost.values())
    assert checked > 500 and shared_subjects > 50  # the random graphs do exercise the guard


def test_a_subject_with_two_relations_about_one_object_asks_them_apart():
    objects = (SGObject("o0", "cat"), SGObject("o1", "desk"), SGObject("o2", "lamp"))
    relations = (SGRelation("r0", "o0", "is on", "o1"), SGRelation("r1", "o0", "is next to", "o1"),
                 SGRelation("r2", "o0", "is near", "o2"))
    graph = SceneGraph("img", "img.jpg", objects, relations)
    negatives = {e: tuple(f"is not{m} by" for m in range(4)) if kind == "relation" else
                 tuple(f"{text} {m}" for m in range(4)) for kind, e, text in graph.elements()}
    table9, skips = pairs_for_image(graph, negatives, seed=0, key="img", sampling=TABLE9)
    (pair,) = [p for p in table9 if p.setting == "multi_rel"]
    assert pair.k == 2 and "near the lamp" in pair.elements
    assert [s for s in skips if not s[0].startswith("wh_")] == [("relations_share_object", "multi_rel o0 k=3: r0, r1 share the desk (asked with k=2)")]
    per_k, skips = pairs_for_image(graph, negatives, seed=0, key="img", sampling=PER_K)
    assert sorted(p.k for p in per_k if p.setting == "multi_rel") == [1, 2]
    assert ("relations_share_object", "multi_rel o0 k=3: r0, r1 share the desk") in skips
    for seed in range(40):  # whichever of the two desk relations is drawn, never both
        pairs, _ = pairs_for_image(graph, negatives, seed=seed, key="img", sampling=TABLE9)
        (pair,) = [p for p in pairs if p.setting == "multi_rel"]
        assert sum("the desk" in unit for unit in pair.elements) == 1


def test_table9_skips_only_an_image_without_objects():
    empty = SceneGraph("img", "img.jpg", (), ())
    assert pairs_for_image(empty, {}, seed=0, key="img", sampling=TABLE9) == (
        [], [("too_few_objects", "multi_obj: no object with negatives")])
    one = SceneGraph("img", "img.jpg", (SGObject("o0", "cat"),), ())
    pairs, skips = pairs_for_image(one, {"o0": ("dog", "cow", "pig", "hen")}, seed=0, key="img", sampling=TABLE9)
    assert [(p.setting, p.k) for p in pairs] == [("multi_obj", 1)] and skips == []


def test_an_unknown_policy_is_a_usage_error():
    with pytest.raises(UsageError, match="--sampling 'per-image': use one of table9, per-k"):
        pairs_for_image(SceneGraph("img", "img.jpg", (), ()), {}, seed=0, key="img", sampling="per-image")


def test_a_build_with_an_unknown_policy_fails_before_reading_the_source(tmp_path, builder, sample_dir):
    with pytest.raises(UsageError, match="--sampling 'per-image'"):
        build(builder, source=sample_dir, out=tmp_path / "o", options={"sampling": "per-image"}, progress=False)
    assert not (tmp_path / "o").exists()
