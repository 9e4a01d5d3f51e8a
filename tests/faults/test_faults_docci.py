"""Malformed DOCCI sources (docci_descriptions.jsonlines + images/): each a clean failure naming
the file and the line (and field), before any model is asked; source and previous output unchanged."""

from __future__ import annotations

import json
import shutil

import pytest

from faultkit import leftovers, tree
from finer_datasets import get_builder

FILE = "docci_descriptions.jsonlines"


def good(i: int = 0, **changes: object) -> dict:
    return {"example_id": f"test_{i:05d}", "split": "test", "image_file": f"test_{i:05d}.jpg",
            "description": "A red ball on a table.", **changes}


def without(key: str) -> dict:
    return {k: v for k, v in good().items() if k != key}


def lines(*items: object) -> bytes:
    return b"".join((i if isinstance(i, bytes) else json.dumps(i).encode()) + b"\n" for i in items)


# case -> (new content of the file, or a change of the source folder; culprits in the error line)
CASES = {
    "not_json": (lines(good(), b'{"example_id": "test_00001", '), ["line 2", "not valid JSON"]),
    "truncated_last_line": (lines(good()) + b'{"example_id": "test_00001"', ["line 2", "not valid JSON"]),
    "a_list": (lines(good(), ["test_00001"]), ["line 2", "not of type \"object\""]),
    "a_number": (lines(good(), 7), ["line 2", "not of type \"object\""]),
    "a_string": (lines(good(), "test_00001"), ["line 2", "not of type \"object\""]),
    "null": (lines(good(), None), ["line 2", "not of type \"object\""]),
    "missing_example_id": (lines(good(), without("example_id")), ["line 2", "'example_id'", "missing"]),
    "missing_split": (lines(good(), without("split")), ["line 2", "'split'", "missing"]),
    "missing_image_file": (lines(good(), without("image_file")), ["line 2", "'image_file'", "missing"]),
    "missing_description": (lines(good(), without("description")), ["line 2", "'description'", "missing"]),
    "extra_field": (lines(good(), {**good(1), "caption": "x"}), ["line 2", "unexpected field"]),
    "unknown_split": (lines(good(), good(1, split="dev")), ["line 2", "unknown split 'dev'"]),
    "split_null": (lines(good(), good(1, split=None)), ["line 2", "'split'"]),
    "description_a_number": (lines(good(), good(1, description=42)), ["line 2", "'description'"]),
    "description_a_list": (lines(good(), good(1, description=["a", "b"])), ["line 2", "'description'"]),
    "example_id_a_number": (lines(good(), good(1, example_id=5)), ["line 2", "'example_id'"]),
    "example_id_empty": (lines(good(), good(1, example_id="")), ["line 2", "'example_id'"]),
    "image_file_empty": (lines(good(), good(1, image_file="")), ["line 2", "'image_file'"]),
    "image_file_gif": (lines(good(), good(1, image_file="test_00001.gif")), ["line 2", "'image_file'"]),
    "image_file_parent": (lines(good(), good(1, image_file="../test_00001.jpg")), ["line 2", "'image_file'"]),
    "image_file_absolute": (lines(good(), good(1, image_file="/etc/x.jpg")), ["line 2", "'image_file'"]),
    "duplicate_example_id": (lines(good(), good(0)), ["line 2", "duplicate example_id"]),
    "duplicate_key": (lines(good(), b'{"example_id": "a", "example_id": "b", "split": "test", "image_file": "a.jpg", '
                                    b'"description": "x"}'), ["line 2", "'example_id' appears twice"]),
    "latin1_bytes": (lines(good(), b'{"example_id": "test_\xe9", "split": "test", "image_file": "a.jpg", '
                                   b'"description": "x"}'), ["line 2", "not UTF-8"]),
    "nul_byte": (lines(good(), b'{"example_id": "t\x00", "split": "test"}'), ["line 2"]),
    "deeply_nested": (lines(good(), b"[" * 100_000 + b"]" * 100_000), ["line 2", "nested too deeply"]),
    "utf16_file": ("\n".join(json.dumps(good(i)) for i in range(2)).encode("utf-16"), ["line 1", "not UTF-8"]),
    "empty_file": (b"", ["holds no line"]),
    "only_blank_lines": (b"\n\n  \n", ["holds no line"]),
    "no_test_line": (lines(good(0, split="train", example_id="train_0")), ["no line of split 'test'"]),
    "file_missing": ("MISSING", [FILE, "not found"]),
    "file_is_a_folder": ("FOLDER", [FILE, "is a folder"]),
}


@pytest.fixture(scope="module")
def docci():
    return get_builder("docci")


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_docci_source_fails_cleanly(case, tmp_path, docci, finer):
    content, culprits = CASES[case]
    src = tmp_path / "src"
    shutil.copytree(docci.dummy_data_dir(), src)
    previous = tmp_path / "out"
    assert finer("build", "docci", "--source", src, "--out", previous, "--no-progress",
                 "--replay", docci.sample_dir() / "transcript.jsonl", "--max-skip-rate", "1").code in (0, 5)
    path = src / FILE
    if content == "MISSING":
        path.unlink()
    elif content == "FOLDER":
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes(content)
    before_src, before_out = tree(src), tree(previous) if previous.exists() else None
    run = finer("build", "docci", "--source", src, "--out", previous, "--overwrite", "--no-progress",
                "--replay", docci.sample_dir() / "transcript.jsonl")
    run.clean_failure(2, FILE, *culprits)
    assert tree(src) == before_src
    assert (tree(previous) if previous.exists() else None) == before_out and leftovers(tmp_path) == []


def test_at_least_30_malformed_docci_sources():
    assert len(CASES) >= 30
