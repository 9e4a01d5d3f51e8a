"""Rule-based rewriting of CompreCap sentences (section B.1)."""

import pytest
from finer_datasets.builders.compre_cap.parsing import parse_relation, rewrite_attribute

from finer_datasets.scene_graph.lexicon import default_lexicon


@pytest.mark.parametrize(
    "sentence,name,expected",
    [
        ("The cat is black and orange.", "cat", ["with a black and orange color"]),
        ("The box is small and blue.", "box", ["with a small size", "with a blue color"]),
        ("The cat has a fluffy tail.", "cat", ["with a fluffy tail"]),
        ("The cars have black wheels.", "car", ["with black wheels"]),
        ("The desk is made of wood.", "desk", ["with a wood material"]),
        ("The man is wearing a red hat.", "man", ["with a red hat"]),
        ("It is sleepy.", "cat", ["with a sleepy appearance"]),
        ("The window is very large.", "window", ["with a large size"]),
        ("The cat is lying on the desk.", "cat", None),
        ("A dog runs.", "cat", None),
    ],
)
def test_rewrite_attribute(sentence, name, expected):
    assert rewrite_attribute(sentence, name, default_lexicon()) == expected


NAMES = ["cat", "desk", "door frame", "door", "cat"]


@pytest.mark.parametrize(
    "sentence,subject,predicate,obj,reason",
    [
        ("The cat is lying on the desk.", 0, "is lying on", 1, ""),
        ("The cat is next to the door frame.", 0, "is next to", 2, ""),  # longest name wins
        ("The cat is next to the door and the desk.", 0, "is next to", 3, ""),
        ("The cat sleeps near the other cat.", 0, "sleeps near the other", 4, ""),  # same-name object
        ("The cat is on the sofa.", 0, "", -1, "relation_unknown_object"),
        ("On the desk lies the cat.", 0, "", -1, "relation_unparsed"),
        ("The cat the desk.", 0, "", -1, "relation_unparsed"),
    ],
)
def test_parse_relation(sentence, subject, predicate, obj, reason):
    parsed = parse_relation(sentence, subject, NAMES)
    assert (parsed.predicate, parsed.object_index, parsed.reason) == (predicate, obj, reason)
