"""End to end on the bundled sample: per-image shards, determinism, manifest, card, load_dataset, views."""

import json
import tarfile
from pathlib import Path

import datasets
import jsonschema
import pytest
import yaml

from finer_datasets import LETTERS, SETTINGS, build, load_finer, verify
from finer_datasets.cli import main
from finer_datasets.core.card import sample_features
from finer_datasets.core.validation import load_schema
from finer_datasets.mcq.records import SCHEMA

datasets.disable_progress_bars()


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_output_is_a_hub_repo_folder(sample_build):
    files = set(all_files(sample_build.out))
    assert files == {"README.md", "manifest.json", "build_report.json", "data/test-00000.tar"}
    assert sample_build.out.stat().st_mode & 0o777 == 0o755


def test_two_builds_are_byte_identical_and_seed_matters(tmp_path, builder, sample_dir, sample_build):
    again = build(builder, source=sample_dir, out=tmp_path / "again", seed=0, progress=False)
    assert all_files(again.out) == all_files(sample_build.out)
    other = build(builder, source=sample_dir, out=tmp_path / "seed1", seed=1, progress=False)
    a, b = all_files(other.out), all_files(sample_build.out)
    assert a["data/test-00000.tar"] != b["data/test-00000.tar"]
    assert json.loads(a["manifest.json"])["seed"] == 1


def test_one_sample_per_image_with_sorted_members_and_fixed_metadata(sample_build, sample_dir):
    with tarfile.open(sample_build.out / "data/test-00000.tar") as tar:
        members = tar.getmembers()
        data = {m.name: tar.extractfile(m).read() for m in members}
    names = [m.name for m in members]
    assert names == sorted(names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.mode == 0o644 for m in members)
    keys = [n.split(".", 1)[0] for n in names]
    assert len(set(keys)) == 12 == len(names) // 2  # one sample (jpg + json) per image
    for key in set(keys):
        record = json.loads(data[f"{key}.json"])
        assert data[f"{key}.jpg"] == (sample_dir / "images" / record["image_file"]).read_bytes()  # never re-encoded
        assert [p["pair_id"] for p in record["pairs"]] == sorted(p["pair_id"] for p in record["pairs"])


def test_records_validate_with_an_independent_validator(sample_build):
    schema = load_schema(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(schema)
    check = jsonschema.Draft202012Validator(schema)
    with tarfile.open(sample_build.out / "data/test-00000.tar") as tar:
        for member in tar.getmembers():
            if member.name.endswith(".json"):
                check.validate(json.loads(tar.extractfile(member).read()))


def test_manifest_counts_hashes_sources_and_digest(sample_build):
    m = verify(sample_build.out)
    assert m["version"] == "2.1.0" and m["seed"] == 0 and m["dataset"] == "compre_cap"
    assert m["format"] == "finer-manifest/2" and m["layout"] == "per-image/1" and len(m["digest"]) == 64
    shards = [f for f in m["files"] if f["path"].startswith("data/")]
    assert sum(f["samples"] for f in shards) == m["counts"]["samples"]["test"] == m["counts"]["images"] == 12
    for setting in SETTINGS:
        assert sum(m["counts"]["pairs_by_k"][setting].values()) == m["counts"]["pairs"][setting]
    assert m["counts"]["records"] == sum(m["counts"]["pairs"].values()) == 289
    assert [s["name"] for s in m["sources"]] == ["annotations", "images"]
    assert m["sources"][1]["files"] == 12
    assert m["counts"]["skips"] == {"too_few_objects": 17}
    assert set(m["counts"]["pairs_by_k"]["multi_obj"]) == {"1", "2", "3", "4", "5", "6"}
    assert m["provenance"]["negatives"]["kind"] == "lexical"


def card(root):
    text = (root / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def test_card_yaml_declares_typed_per_image_features_from_the_schema(sample_build):
    meta, body = card(sample_build.out)
    assert meta["license"] == "cc-by-4.0"
    assert [c["config_name"] for c in meta["configs"]] == ["default"]
    assert meta["configs"][0]["data_files"] == [{"split": "test", "path": "data/test-*.tar"}]
    info = meta["dataset_info"][0]
    assert datasets.Features._from_yaml_list(info["features"]) == sample_features(SCHEMA, ("jpg",))
    assert info["splits"] == [{"name": "test", "num_bytes": (sample_build.out / "data/test-00000.tar").stat().st_size,
                               "num_examples": 12}]
    by_k = sample_build.manifest["counts"]["pairs_by_k"]["multi_obj"]
    assert f"| `multi_obj` | (1,6) | {', '.join(str(by_k[str(k)]) for k in range(1, 7))} |" in body
    assert "2.1.0" in body and "@inproceedings{xiao2026finer" in body and "Flickr" in body
    assert "finer build compre_cap" in body and "for q in (p[\"positive\"], p[\"negative\"])" in body


def test_load_dataset_without_a_config_gives_one_typed_row_per_image(sample_build):
    ds = datasets.load_dataset(str(sample_build.out))
    assert list(ds) == ["test"] and ds["test"].num_rows == 12
    assert ds["test"].features == sample_features(SCHEMA, ("jpg",))
    row = ds["test"][0]
    assert row["jpg"].size == (320, 240) and row["__key__"] == row["json"]["image_id"]
    assert sum(len(r["pairs"]) for r in ds["test"]["json"]) == 289


def test_streaming_matches(sample_build):
    stream = datasets.load_dataset(str(sample_build.out), split="test", streaming=True)
    eager = datasets.load_dataset(str(sample_build.out), split="test")
    assert [r["json"]["image_id"] for r in stream] == [r["image_id"] for r in eager["json"]]


@pytest.mark.parametrize("setting", SETTINGS)
def test_pairs_view_per_setting(sample_build, setting):
    pairs = load_finer(str(sample_build.out), "pairs", split="test", setting=setting)
    assert pairs.num_rows == sample_build.manifest["counts"]["pairs"][setting] > 0
    row = pairs[0]
    assert row["setting"] == setting and row["image"].size == (320, 240)
    assert row["positive"]["question_id"] == row["pair_id"] + "_pos"


def test_questions_view_is_consecutive_pos_neg_with_the_official_columns(sample_build):
    pairs = load_finer(str(sample_build.out), "pairs", split="test", setting="multi_relation")  # official name
    rows = load_finer(str(sample_build.out), "questions", split="test", setting="multi_rel")
    assert rows.num_rows == 2 * pairs.num_rows
    for i in range(pairs.num_rows):
        record, pos, neg = pairs[i], rows[2 * i], rows[2 * i + 1]
        assert (pos["qtype"], neg["qtype"]) == ("multi_rel_pos", "multi_rel_neg")
        assert pos["question_id"] == record["positive"]["question_id"]
        assert neg["answer"] == record["negative"]["answer"] == LETTERS[neg["gt_index"]]
        assert pos["image_filename"] == record["image_file"] and pos["subset"] == "multi_relation"
        assert pos["image"].size == (320, 240)


def test_flat_views_do_not_copy_image_bytes(sample_build):
    questions = load_finer(str(sample_build.out), "questions", split="test")
    assert questions.num_rows == 2 * 289
    assert questions.features["image"] == datasets.Image()  # a declared column holding paths, not bytes
    assert questions.data.column("image").nbytes < 200 * questions.num_rows  # a path per row, never the bytes
    assert questions.data.nbytes < 500_000  # 12 JPEGs of ~20 KB would not fit ~48 times


def test_small_shards_split_and_still_load(tmp_path, builder, sample_dir, sample_build):
    result = build(builder, source=sample_dir, out=tmp_path / "small", max_samples=5, progress=False)
    shards = [f for f in result.manifest["files"] if f["path"].startswith("data/")]
    assert len(shards) == 3 and all(f["samples"] <= 5 for f in shards)
    ds = datasets.load_dataset(str(result.out), split="test")
    ref = datasets.load_dataset(str(sample_build.out), split="test")
    assert ds["json"] == ref["json"]


def test_verify_detects_changes(tmp_path, builder, sample_dir, capsys):
    out = build(builder, source=sample_dir, out=tmp_path / "v", progress=False).out
    assert main(["verify", str(out)]) == 0
    shard = out / "data/test-00000.tar"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 1
    shard.write_bytes(bytes(data))
    (out / "extra.txt").write_text("x")
    (out / "build_report.json").unlink()
    assert main(["verify", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "data/test-00000.tar: sha256" in err and "extra.txt: not in the manifest" in err
    assert "build_report.json: missing" in err


def test_overwrite_is_required_to_replace(tmp_path, builder, sample_dir):
    out = tmp_path / "o"
    build(builder, source=sample_dir, out=out, progress=False)
    with pytest.raises(Exception, match="already exists"):
        build(builder, source=sample_dir, out=out, progress=False)
    build(builder, source=sample_dir, out=out, seed=2, overwrite=True, progress=False)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.finer-lock", "o"]


def test_cli_sample_build(tmp_path, capsys):
    assert main(["build", "compre_cap", "--sample", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    assert "built FINER-CompreCap 2.1.0" in capsys.readouterr().out
    assert verify(tmp_path / "cli")["counts"]["images"] == 12
