"""FINER-DOCCI's pure parts: the verbatim guard, the wording rules, candidate pairs, the
validation rule, the scripted stand-in's rules, and the source reader's bad-input policy."""

import json
import shutil

import pytest
from finer_datasets.builders.docci import scripted
from finer_datasets.builders.docci.extract import MAX_OBJECTS, guard_objects
from finer_datasets.builders.docci.phrases import (
    attribute_phrase,
    candidate_pairs,
    object_name,
    relation_predicate,
)
from finer_datasets.builders.docci.source import DESCRIPTIONS, read_captions
from finer_datasets.builders.docci.validate import Verdict, keep
from PIL import Image

from finer_datasets import get_builder
from finer_datasets.core.builder import BuildReport
from finer_datasets.errors import SourceError, StrictModeError
from finer_datasets.llm.verbatim import VerbatimGuard
from finer_datasets.scene_graph.lexicon import default_lexicon

DUMMY = get_builder("docci").dummy_data_dir()
SAMPLE = get_builder("docci").sample_dir()


# --- the verbatim guard ----------------------------------------------------------------------

def test_verbatim_guard_accepts_copied_phrases_only():
    guard = VerbatimGuard("A small  Brown dog is lying on the rug. The bored cat’s tail is long.")
    for phrase in ("brown dog", "Brown   Dog", "lying on", "the rug.", "cat's tail", "bored"):
        assert phrase in guard, phrase
    for phrase in ("red", "ored", "dog is sitting", "g is", "", "   ", None):
        assert phrase not in guard, phrase
    assert guard.find("lying") > 0 and guard.find("red") == -1


def test_stage1_guard_drops_and_lists_invented_names_and_attributes():
    caption = "A large pink house with a blue door. A green tree."
    answer = [{"name": "house", "attributes": [{"text": "pink", "kind": "quality"},
                                               {"text": "a red door", "kind": "part"}]},
              {"name": "person", "attributes": [{"text": "smiling", "kind": "quality"}]},
              {"name": "Tree", "attributes": [{"text": "green", "kind": "quality"}]}]
    extraction = guard_objects(answer, VerbatimGuard(caption))
    assert [(o.name, o.attributes) for o in extraction.objects] == [("house", (("pink", "quality"),)),
                                                                    ("Tree", (("green", "quality"),))]
    assert extraction.dropped == (("objects[0].attributes[1]", "a red door"), ("objects[1].name", "person"))
    many = guard_objects([{"name": "tree", "attributes": []}] * (MAX_OBJECTS + 3), VerbatimGuard(caption))
    assert len(many.objects) == MAX_OBJECTS and many.over_limit == 3


# --- wording rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, phrase", [
    ("dark brown", "quality", "with a dark brown color"),
    ("small", "quality", "with a small size"),
    ("Wooden,", "quality", "with a wooden material"),
    ("oval shape", "quality", "with an oval shape"),
    ("glittery", "quality", "with a glittery appearance"),
    ("a red collar", "part", "with a red collar"),
    ("four legs", "part", "with four legs"),
    ("black wheels", "part", "with black wheels"),
    ("the handle", "part", "with a handle"),
    ("orange roof", "part", "with an orange roof"),
    ("with a red roof", "part", "with a red roof"),
])
def test_attribute_phrases_start_with_with(text, kind, phrase):
    assert attribute_phrase(text, kind, default_lexicon()) == phrase


@pytest.mark.parametrize("phrase, subject, predicate", [
    ("To the left of", "tree", "is to the left of"),
    ("is lying on", "dog", "is lying on"),
    ("lying on", "dogs", "are lying on"),
    ("attached to", "sign", "is attached to"),
    ("was sitting on", "cat", "is sitting on"),
    ("holds", "man", "holds"),
    ("above", "glass", "is above"),
])
def test_relation_predicates_read_after_their_subject(phrase, subject, predicate):
    assert relation_predicate(phrase, subject) == predicate


def test_object_names_lose_articles_and_case():
    assert object_name("The Red Car") == "red car" and object_name(" a  dog ") == "dog"


def test_candidate_pairs_are_co_mentioned_ordered_and_bounded():
    caption = "A dog is on a rug. The cat sits near the lamp and the dog. A rug and a rug."
    names = ["dog", "rug", "cat", "lamp", "rug"]
    pairs, over = candidate_pairs(caption, names, limit=10)
    assert pairs == [(0, 1), (0, 2), (0, 3), (2, 3)] and over == 0  # (1, 4): same name, never a pair
    bounded, over = candidate_pairs(caption, names, limit=2)
    assert bounded == [(0, 1), (0, 2)] and over == 2


# --- relation validation rule ------------------------------------------------------------------

@pytest.mark.parametrize("llm, mllm, kept", [
    (False, False, False),  # both disagree: discarded
    (True, False, True),   # one agrees: kept
    (False, True, True),
    (True, True, True),
    (None, False, False),  # a missing vote disagrees
    (False, None, False),
    (True, None, True),    # no MLLM: the LLM alone decides
])
def test_a_relation_is_discarded_only_when_both_disagree(llm, mllm, kept):
    assert keep(Verdict(llm=llm, mllm=mllm)) is kept


# --- the scripted stand-in -----------------------------------------------------------------------

def test_scripted_rules_extract_only_verbatim_phrases_from_the_sample():
    lines = [json.loads(line) for line in (SAMPLE / DESCRIPTIONS).read_text().splitlines()]
    tests = [line for line in lines if line["split"] == "test"]
    assert len(tests) >= 20
    relations = 0
    for line in tests:
        guard = VerbatimGuard(line["description"])
        objects = scripted.extract_objects(line["description"])
        assert len(objects) >= 3
        for obj in objects:
            assert obj["name"] in guard and all(a["text"] in guard for a in obj["attributes"])
        names = [o["name"] for o in objects]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                found = scripted.find_relation(line["description"], a, b)
                if found:
                    relations += 1
                    assert found[2] in guard and {found[0], found[1]} == {a, b}
    assert relations >= len(tests)


def test_scripted_relation_rules_read_both_sentence_forms():
    caption = "To the right of the house is a green tree. A white car is to the left of the house."
    assert scripted.find_relation(caption, "house", "tree") == ("tree", "house", "To the right of")
    assert scripted.find_relation(caption, "car", "house") == ("car", "house", "is to the left of")
    assert scripted.find_relation(caption, "car", "tree") is None


# --- the source reader ---------------------------------------------------------------------------

def source(tmp_path, lines=None, *, images=True):
    """The dummy data copied, its descriptions file replaced by ``lines`` (dicts or raw strings)."""
    src = tmp_path / "src"
    shutil.copytree(DUMMY, src)
    if lines is not None:
        text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
        (src / DESCRIPTIONS).write_text(text, encoding="utf-8")
    return src


def line(n=0, **over):
    return {"example_id": f"test_{n:05d}", "split": "test", "image_file": f"test_{n:05d}.jpg",
            "description": "A red ball is on a brown table.", **over}


def read(src, **kw):
    report = BuildReport(root=src, **kw)
    captions, stats = read_captions(src, split="test", report=report)
    return captions, stats, report


@pytest.mark.parametrize("bad, message, where", [
    ('{"example_id": "test_00000", "split": ', "not valid JSON", "line 2"),
    ('["a", "list"]', "is not of type \"object\"", "line 2"),
    (json.dumps({k: v for k, v in line().items() if k != "description"}), "field 'description': missing", "line 2"),
    (json.dumps({**line(), "extra": 1}), "unexpected field", "line 2"),
    (json.dumps(line(1, split="dev")), "unknown split 'dev'", "field 'split'"),
    (json.dumps(line(1, description=42)), "field 'description'", "42 is not of type"),
    (json.dumps(line(1, image_file="test.gif")), "field 'image_file'", "line 2"),
    (json.dumps(line(1, image_file="../test_00001.jpg")), "inside the images folder", "field 'image_file'"),
    (json.dumps(line(0)), "duplicate example_id (first on line 1)", "line 2"),
])
def test_malformed_lines_are_errors_naming_file_line_and_field(tmp_path, bad, message, where):
    src = source(tmp_path, [line(0), bad])
    with pytest.raises(SourceError) as err:
        read(src)
    text = str(err.value)
    assert DESCRIPTIONS in text and message in text and where in text, text


def test_a_file_without_the_split_or_without_lines_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="no line of split 'test' \\(found: train 1\\)"):
        read(source(tmp_path, [line(split="train", example_id="train_1")]))
    with pytest.raises(SourceError, match="holds no line"):
        read(source(tmp_path / "empty", []))
    with pytest.raises(SourceError, match="cannot be built into a benchmark"):
        read_captions(source(tmp_path / "t", [line()]), split="train", report=BuildReport())


def test_unusable_lines_of_the_split_are_counted_skips_and_strict_fails(tmp_path):
    huge = "A red ball. " * 900_000  # ~10 MB: read (the line limit is 16 MiB), then skipped
    src = source(tmp_path, [line(0), line(1, description="   "), line(2, description=huge),
                            line(3), line(4), line(5, image_file="test_00005.png"),
                            line(split="train", example_id="train_9", image_file="nowhere.jpg")])
    (src / "images" / "test_00004.jpg").write_bytes(b"not a jpeg at all")  # (test_00003.jpg does not exist)
    Image.new("RGB", (8, 8)).save(src / "images" / "test_00005.png", format="JPEG")  # wrong format
    captions, stats, report = read(src)
    assert [c.example_id for c in captions] == ["test_00000"]
    assert report.skip_counts() == {"description_too_long": 1, "empty_description": 1, "image_missing": 1,
                                    "image_unreadable": 2}
    assert {s["record"] for s in report.skips} >= {"test_00001 (line 2)", "test_00003 (line 4)"}
    assert stats.to_dict() == {"split": "test", "lines_by_split": {"test": 6, "train": 1},
                               "skipped_lines_by_split": {"test": 5, "train": 1}}
    with pytest.raises(StrictModeError, match="empty_description"):
        read(src, strict=True)


def test_train_lines_are_validated_but_never_read(tmp_path):
    # the train line's image does not exist and its description is empty: neither is looked at
    src = source(tmp_path, [line(split="train", example_id="train_0", image_file="missing.jpg", description=""),
                            line(0)])
    captions, stats, report = read(src)
    assert [c.example_id for c in captions] == ["test_00000"] and report.skips == []
    assert stats.skipped == {"train": 1}
    with pytest.raises(SourceError, match="unknown split"):  # ... but it is checked against the schema
        read(source(tmp_path / "b", [line(split="Train", example_id="train_0"), line(0)]))
