"""Negatives: the lexical generator's guarantees and the precomputed file format."""

import json
import random

import pytest

from finer_datasets import (
    LexicalNegatives,
    NegativesError,
    NegativesProvider,
    PrecomputedNegatives,
    build,
)
from finer_datasets.core.builder import BuildContext
from finer_datasets.core.text import words
from finer_datasets.scene_graph.lexicon import strip_copula
from finer_datasets.scene_graph.negatives import negatives_file_dict


@pytest.fixture(scope="module")
def graphs(builder, sample_dir):
    return [img.graph for img in builder.read_source(sample_dir, BuildContext(builder=builder, source=sample_dir))]


def test_providers_implement_the_protocol(tmp_path):
    assert isinstance(LexicalNegatives(), NegativesProvider)
    path = tmp_path / "n.json"
    path.write_text(json.dumps({"format": "finer-negatives/1", "images": {}}))
    assert isinstance(PrecomputedNegatives(path), NegativesProvider)


def test_lexical_gives_4_distinct_valid_negatives_for_every_element(graphs):
    gen = LexicalNegatives()
    for seed in range(3):
        for g in graphs:
            negs = gen.negatives_for(g, random.Random(seed))
            names = {o.name for o in g.objects}
            attr_texts = {a.text for o in g.objects for a in o.attributes}
            attr_words = {w for t in attr_texts for w in words(t)}
            predicates = {strip_copula(r.predicate)[1] for r in g.relations}
            for kind, element_id, positive in g.elements():
                got = negs[element_id]
                assert len(got) == 4 and len(set(got)) == 4 and positive not in got
                for n in got:
                    if kind == "object":
                        assert n not in names and not set(words(n)) & (attr_words | names)
                    elif kind == "attribute":
                        assert n not in attr_texts
                    else:
                        assert strip_copula(n)[1] not in predicates


def test_lexical_is_deterministic_given_the_rng(graphs):
    gen = LexicalNegatives()
    assert gen.negatives_for(graphs[0], random.Random(1)) == gen.negatives_for(graphs[0], random.Random(1))


def test_lexical_keeps_the_attribute_family_and_relation_copula(graphs):
    negs = LexicalNegatives().negatives_for(graphs[0], random.Random(0))
    sun = graphs[0].objects[0]
    color = next(a for a in sun.attributes if a.text.endswith("color"))
    assert all(n.startswith("with a") and n.endswith(" color") for n in negs[color.id])
    rel = graphs[0].relations[0]
    assert all(n.startswith("is ") for n in negs[rel.id])


def test_lexical_contrasting_relation_comes_first(graphs):
    from finer_datasets import SceneGraph, SGObject, SGRelation

    g = SceneGraph("x", "x.jpg", (SGObject("o0", "cup"), SGObject("o1", "table")), (SGRelation("r0", "o0", "is on", "o1"),))
    assert LexicalNegatives().negatives_for(g, random.Random(0))["r0"][0] == "is under"


def write(tmp_path, doc):
    path = tmp_path / "negatives.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_precomputed_round_trip_gives_identical_shards(tmp_path, builder, sample_dir, graphs, sample_build):
    gen = LexicalNegatives()
    doc = negatives_file_dict({g.image_id: (g, gen.negatives_for(g, random.Random(f"0:negatives:{g.image_id}"))) for g in graphs})
    path = write(tmp_path, doc)
    result = build(builder, source=sample_dir, out=tmp_path / "out", seed=0, options={"negatives": path}, progress=False)
    shards = lambda m: {f["path"]: f["sha256"] for f in m["files"] if f["path"].startswith("data/")}
    assert shards(result.manifest) == shards(sample_build.manifest)
    assert result.manifest["provenance"]["negatives"]["kind"] == "file"


def test_missing_entries_are_skipped_and_counted(tmp_path, builder, sample_dir, graphs):
    g = graphs[0]
    negs = LexicalNegatives().negatives_for(g, random.Random(0))
    doc = negatives_file_dict({g.image_id: (g, {k: v for k, v in negs.items() if k != "o0"})})
    result = build(builder, source=sample_dir, out=tmp_path / "out", options={"negatives": write(tmp_path, doc)},
                   max_skip_rate=1.0, progress=False)
    skips = result.manifest["counts"]["skips"]
    total_elements = sum(1 for g2 in graphs for _ in g2.elements())
    assert skips["no_negatives"] == total_elements - (len(negs) - 1)


def entry(positive, negatives):
    return {"positive": positive, "negatives": negatives}


@pytest.mark.parametrize(
    "doc,record,field,message",
    [
        ("{not json", None, None, "not valid JSON"),
        ({"format": "other", "images": {}}, None, "format", ""),
        ({"format": "finer-negatives/1", "images": {"000000000001": {"o0": entry("sun", ["a", "b", "c"])}}},
         "000000000001", "o0/negatives", ""),
        ({"format": "finer-negatives/1", "images": {"000000000001": {"o0": entry("sun", ["a", "b", "c", "a"])}}},
         "000000000001", "o0", "not distinct"),
        ({"format": "finer-negatives/1", "images": {"000000000001": {"o0": entry("sun", ["a", "b", "c", "Sun"])}}},
         "000000000001", "o0", "equals the positive"),
        ({"format": "finer-negatives/1", "images": {"000000000001": {"o0": entry("moon", ["a", "b", "c", "d"])}}},
         "000000000001", "o0", "does not match"),
        ({"format": "finer-negatives/1", "images": {"000000000001": {"o99": entry("sun", ["a", "b", "c", "d"])}}},
         "000000000001", "o99", "not in the image"),
    ],
)
def test_bad_negatives_files_name_file_image_and_element(tmp_path, builder, sample_dir, doc, record, field, message):
    path = write(tmp_path, doc)
    with pytest.raises(NegativesError) as info:
        build(builder, source=sample_dir, out=tmp_path / "out", options={"negatives": path}, progress=False)
    err = info.value
    assert err.path == str(path) and err.record == record and err.field == field
    assert message in str(err) and str(path) in str(err)
    assert not (tmp_path / "out").exists()
