"""Malformed precomputed negatives files (``--negatives``, format finer-negatives/1): each a clean
failure naming the file (and the image and element where there is one), source and output untouched."""

from __future__ import annotations

import json

import pytest

from faultkit import leftovers, tree

IMAGE = "000000000001"  # the sample's first image: o0 "sun", o1 "tree", o0_a0 ..., r0 ...


def doc(entries: object, *, image: str = IMAGE, fmt: object = "finer-negatives/1") -> object:
    return {"format": fmt, "images": {image: entries}}


def entry(positive: object = "sun", negatives: object = ("moon", "cloud", "kite", "bird")) -> dict:
    return {"positive": positive, "negatives": list(negatives) if isinstance(negatives, tuple) else negatives}


# case -> (file content (object -> JSON, bytes as they are), culprits in the error line)
CASES = {
    "not_json": (b"{nope", ["not valid JSON"]),
    "empty_file": (b"", ["not valid JSON"]),
    "latin1": (b'{"format": "finer-negatives/1", "images": {"\xe9": {}}}', ["not UTF-8"]),
    "a_list": ([], ["not of type \"object\""]),
    "null": (None, ["not of type \"object\""]),
    "wrong_format": (doc({}, fmt="finer-negatives/2"), ["format"]),
    "format_missing": ({"images": {}}, ["format"]),
    "images_missing": ({"format": "finer-negatives/1"}, ["images"]),
    "images_a_list": ({"format": "finer-negatives/1", "images": []}, ["images"]),
    "image_entry_a_list": (doc([]), [IMAGE]),
    "element_entry_a_string": (doc({"o0": "moon"}), [IMAGE, "o0"]),
    "positive_missing": (doc({"o0": {"negatives": ["a", "b", "c", "d"]}}), [IMAGE, "o0"]),
    "negatives_missing": (doc({"o0": {"positive": "sun"}}), [IMAGE, "o0"]),
    "positive_a_number": (doc({"o0": entry(positive=3)}), [IMAGE, "o0"]),
    "negatives_a_string": (doc({"o0": entry(negatives="moon")}), [IMAGE, "o0"]),
    "three_negatives": (doc({"o0": entry(negatives=("moon", "cloud", "kite"))}), [IMAGE, "o0"]),
    "five_negatives": (doc({"o0": entry(negatives=("moon", "cloud", "kite", "bird", "boat"))}), [IMAGE, "o0"]),
    "a_negative_a_number": (doc({"o0": entry(negatives=("moon", "cloud", "kite", 4))}), [IMAGE, "o0"]),
    "an_empty_negative": (doc({"o0": entry(negatives=("moon", "cloud", "kite", ""))}), [IMAGE, "o0"]),
    "a_blank_negative": (doc({"o0": entry(negatives=("moon", "cloud", "kite", "   "))}), [IMAGE, "o0"]),
    "repeated_negatives": (doc({"o0": entry(negatives=("moon", "cloud", "kite", "Moon"))}), [IMAGE, "o0", "distinct"]),
    "negative_equals_positive": (doc({"o0": entry(negatives=("moon", "cloud", "kite", "SUN"))}), [IMAGE, "o0", "positive"]),
    "negative_in_the_image": (doc({"o0": entry(negatives=("moon", "cloud", "kite", "tree"))}), [IMAGE, "o0", "'tree'"]),
    "positive_differs": (doc({"o0": entry(positive="moon")}), [IMAGE, "o0", "does not match"]),
    "unknown_element": (doc({"o99": entry()}), [IMAGE, "o99", "not in the image"]),
    "relation_id_unknown": (doc({"r42": entry(positive="is on")}), [IMAGE, "r42"]),
    "attribute_of_another_object": (doc({"o0_a9": entry(positive="with a red color")}), [IMAGE, "o0_a9"]),
    "extra_field": (doc({"o0": {**entry(), "score": 0.9}}), [IMAGE, "o0"]),
    "top_level_extra_field": ({"format": "finer-negatives/1", "images": {}, "notes": "x"}, ["notes"]),
    "duplicate_key": (b'{"format": "finer-negatives/1", "format": "x", "images": {}}', ["'format' appears twice"]),
    "a_folder": ("FOLDER", ["negatives"]),
    "missing_file": ("MISSING", ["cannot read"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_negatives_file_fails_cleanly(case, tmp_path, finer, sample_dir, sample_build):
    content, culprits = CASES[case]
    path = tmp_path / "negatives.json"
    if content == "FOLDER":
        path.mkdir()
    elif content != "MISSING":
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    out = tmp_path / "out"
    assert finer("build", "compre_cap", "--sample", "--out", out, "--no-progress").code == 0
    before_src, before_out = tree(sample_dir), tree(out)
    run = finer("build", "compre_cap", "--sample", "--out", out, "--overwrite", "--no-progress", "--negatives", path)
    run.clean_failure(2, str(path), *culprits)
    assert tree(sample_dir) == before_src and tree(out) == before_out and leftovers(tmp_path) == []


def test_at_least_30_malformed_negatives_files():
    assert len(CASES) >= 30
