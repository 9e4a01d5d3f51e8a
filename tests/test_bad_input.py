"""Bad input: structural errors fail cleanly; odd but valid content is skipped and counted."""

import base64
import json
import random
import zlib

import pytest

from finer_datasets import SourceError, StrictModeError, build
from finer_datasets.cli import main
from finer_datasets.core.reader import iter_records


def no_leftovers(parent):
    return not any(p.name.startswith((".out.finer-build", ".out.finer-old", "out")) for p in parent.iterdir())


STRUCTURAL = [
    # case, record, field, message
    ("not_json", None, None, "not valid JSON"),
    ("not_list", None, None, "expected a JSON list"),
    ("missing_image", 1, "image", "missing"),
    ("missing_category", 1, "info[2].category", "missing"),
    ("wrong_type_info", 2, "info", "expected a list"),
    ("wrong_type_relation", 1, "info[3].relation", "expected a string or a list"),
    ("wrong_type_category", 0, "info[1].category", "expected a string"),
    ("duplicate_image", 2, "image", "duplicate image"),
    ("missing_image_file", "000000000999", "image", "image file not found"),
    ("corrupt_image", "000000000102", "image", "pixel data does not decode"),
    ("not_an_image", "000000000103", "image", "not a readable image"),
]


@pytest.mark.parametrize("case,record,field,message", STRUCTURAL)
def test_structural_errors_name_file_record_field(tmp_path, builder, make_source, case, record, field, message):
    src = make_source(case)
    with pytest.raises(SourceError) as info:
        build(builder, source=src, out=tmp_path / "out", progress=False)
    err = info.value
    assert err.path == str(src / "anno.json")
    assert (err.record, err.field) == (record, field)
    assert message in str(err) and "anno.json" in str(err)
    assert not (tmp_path / "out").exists() and no_leftovers(tmp_path)


@pytest.mark.parametrize("case", [c[0] for c in STRUCTURAL])
def test_cli_exits_2_and_leaves_no_output(tmp_path, make_source, capsys, case):
    src = make_source(case)
    code = main(["build", "compre_cap", "--source", str(src), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: file ")
    assert not (tmp_path / "out").exists() and no_leftovers(tmp_path)


def test_missing_source_folder(tmp_path, builder):
    with pytest.raises(SourceError, match="source folder not found"):
        build(builder, source=tmp_path / "nope", out=tmp_path / "out", progress=False)


def test_dummy_data_builds_with_too_few_objects_skipped(tmp_path, builder, make_source):
    result = build(builder, source=make_source(), out=tmp_path / "out", progress=False)
    # images with 3, 4 and 2 objects miss k=4..6, 5..6 and 3..6
    assert result.manifest["counts"]["skips"] == {"too_few_objects": 9}


EXPECTED_SKIPS = {
    "relation_unknown_object": 1,
    "relation_unparsed": 1,
    "duplicate_relation": 1,
    "attribute_unparsed": 1,
    "object_without_attributes": 1,
    "invalid_text": 1,
    "too_few_objects": 9,
}


def test_odd_content_is_skipped_counted_and_reported(tmp_path, builder, make_source):
    result = build(builder, source=make_source("odd_content"), out=tmp_path / "out", progress=False)
    counts = result.manifest["counts"]
    skips = dict(counts["skips"])
    skips.pop("wh_no_context_attribute", None)  # the tree lost its attributes: its wh pair may go too
    assert skips == EXPECTED_SKIPS
    assert counts["fixes"]["text_normalized"] >= 3
    report = json.loads((result.out / "build_report.json").read_text())
    assert report["skips"] == counts["skips"]
    listed = {(s["reason"], s["record"], s["field"]) for s in report["skipped"]}
    assert ("relation_unknown_object", "1 (000000000102.jpg)", "info[1].relation[1]") in listed
    assert ("object_without_attributes", "0 (000000000101.jpg)", "info[2]") in listed
    assert all(s["file"] == "anno.json" for s in report["skipped"] if s["reason"] != "too_few_objects")
    graphs = [r["scene_graph"] for r in iter_records(result.out, result.manifest)]
    table = next(o for g in graphs for o in g["objects"] if o["name"] == "table")
    assert table["attributes"][0]["text"] == "with a white color"  # cleaned, not skipped
    chair_rels = [r for g in graphs for r in g["relations"] if r["source_text"].startswith("The chair is beside")]
    assert chair_rels and chair_rels[0]["predicate"] == "is beside"


def test_strict_turns_the_first_skip_into_an_error(tmp_path, builder, make_source, capsys):
    with pytest.raises(StrictModeError):
        build(builder, source=make_source("odd_content"), out=tmp_path / "out", strict=True, progress=False)
    src = make_source("odd_content")
    code = main(["build", "compre_cap", "--source", str(src), "--out", str(tmp_path / "out"), "--strict", "--no-progress"])
    assert code == 2 and "--strict" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and no_leftovers(tmp_path)


def test_huge_mask_is_accepted_and_changes_nothing(tmp_path, builder, make_source):
    src = make_source()
    reference = build(builder, source=src, out=tmp_path / "ref", progress=False)
    anno = json.loads((src / "anno.json").read_text())
    noise = random.Random(0).randbytes(3000 * 3000)  # a 3000x3000 uint8 mask that does not compress
    anno[0]["info"][0]["mask_out"] = base64.b64encode(zlib.compress(noise, 1)).decode()
    (src / "anno.json").write_text(json.dumps(anno))
    assert (src / "anno.json").stat().st_size > 10_000_000
    result = build(builder, source=src, out=tmp_path / "huge", progress=False)
    shards = lambda m: {f["path"]: f["sha256"] for f in m["files"] if f["path"].startswith("data/")}
    assert shards(result.manifest) == shards(reference.manifest)
    assert result.manifest["sources"][0]["sha256"] != reference.manifest["sources"][0]["sha256"]
