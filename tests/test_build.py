"""End to end on the bundled sample: shards, determinism, manifest, card, load_dataset."""

import io
import json
import tarfile
from pathlib import Path

import datasets
import jsonschema
import pytest
import yaml

from finer_datasets import SETTINGS, build, load_finer, verify
from finer_datasets._schemas import load_schema, record_features
from finer_datasets.cli import main

datasets.disable_progress_bars()


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_output_is_a_hub_repo_folder(sample_build):
    files = set(all_files(sample_build.out))
    assert {"README.md", "manifest.json", "build_report.json", "scene_graphs.jsonl"} <= files
    assert {f"data/{s}-00000.tar" for s in SETTINGS} <= files
    assert sample_build.out.stat().st_mode & 0o777 == 0o755


def test_two_builds_are_byte_identical_and_seed_matters(tmp_path, builder, sample_dir, sample_build):
    again = build(builder, source=sample_dir, out=tmp_path / "again", seed=0, progress=False)
    assert all_files(again.out) == all_files(sample_build.out)
    other = build(builder, source=sample_dir, out=tmp_path / "seed1", seed=1, progress=False)
    a, b = all_files(other.out), all_files(sample_build.out)
    assert a["data/multi_obj-00000.tar"] != b["data/multi_obj-00000.tar"]
    assert json.loads(a["manifest.json"])["seed"] == 1


def test_tar_members_are_sorted_with_fixed_metadata(sample_build):
    for setting in SETTINGS:
        with tarfile.open(sample_build.out / f"data/{setting}-00000.tar") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            assert names == sorted(names)
            assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.mode == 0o644 for m in members)
            keys = [n.split(".", 1)[0] for n in names]
            assert all("." not in n.split(".", 1)[1] for n in names)  # no dots in keys
            assert all(keys[i] == keys[i + 1] for i in range(0, len(keys), 2))  # jpg + json per sample


def test_images_are_original_bytes_and_records_validate(sample_build, sample_dir):
    schema = load_schema("mcq_pair")
    jsonschema.Draft202012Validator.check_schema(schema)
    check = jsonschema.Draft202012Validator(schema)  # an independent validator
    with tarfile.open(sample_build.out / "data/wh-00000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    for name, data in members.items():
        if name.endswith(".json"):
            record = json.loads(data)
            check.validate(record)
            assert record["pair_id"] == name[:-5]
            image = members[name[:-5] + ".jpg"]
            assert image == (sample_dir / "images" / record["image_file"]).read_bytes()


def test_manifest_counts_hashes_and_sources(sample_build):
    m = verify(sample_build.out)
    assert m["version"] == "1.0.0" and m["seed"] == 0 and m["dataset"] == "compre_cap"
    shards = [f for f in m["files"] if f["path"].startswith("data/")]
    for setting in SETTINGS:
        assert sum(f["samples"] for f in shards if f["setting"] == setting) == m["counts"]["pairs"][setting]
        assert sum(m["counts"]["pairs_by_k"][setting].values()) == m["counts"]["pairs"][setting]
    assert [s["name"] for s in m["sources"]] == ["annotations", "images"]
    assert m["sources"][1]["files"] == 12
    assert m["counts"]["images"] == 12
    assert m["counts"]["skips"] == {"too_few_objects": 17}
    assert set(m["counts"]["pairs_by_k"]["multi_obj"]) == {"1", "2", "3", "4", "5", "6"}


def card(root):
    text = (root / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def test_card_yaml_configs_features_and_statistics(sample_build):
    meta, body = card(sample_build.out)
    assert meta["license"] == "cc-by-4.0"
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert set(configs) == {"default", *SETTINGS}
    assert [d["split"] for d in configs["default"]["data_files"]] == list(SETTINGS)
    info = {i["config_name"]: i for i in meta["dataset_info"]}
    assert datasets.Features._from_yaml_list(info["default"]["features"]) == record_features(("jpg",))
    pairs = sample_build.manifest["counts"]["pairs"]
    assert {s["name"]: s["num_examples"] for s in info["default"]["splits"]} == pairs
    by_k = sample_build.manifest["counts"]["pairs_by_k"]["multi_obj"]
    assert f"| `multi_obj` | (1,6) | {', '.join(str(by_k[str(k)]) for k in range(1, 7))} |" in body
    assert "1.0.0" in body and "@inproceedings{xiao2026finer" in body and "Flickr" in body
    assert "finer build compre_cap" in body


@pytest.mark.parametrize("setting", SETTINGS)
def test_load_dataset_split_and_config(sample_build, setting):
    root = str(sample_build.out)
    split = datasets.load_dataset(root, split=setting)
    config = datasets.load_dataset(root, setting, split="test")
    assert split.num_rows == config.num_rows == sample_build.manifest["counts"]["pairs"][setting] > 0
    assert split.features == record_features(("jpg",))
    row = split[0]
    assert row["json"]["setting"] == setting and row["__key__"] == row["json"]["pair_id"]
    assert row["jpg"].size == (320, 240)
    assert [r["pair_id"] for r in split["json"]] == [r["pair_id"] for r in config["json"]]


def test_streaming_matches(sample_build):
    stream = datasets.load_dataset(str(sample_build.out), split="wh", streaming=True)
    eager = datasets.load_dataset(str(sample_build.out), split="wh")
    assert [r["json"]["pair_id"] for r in stream] == [r["pair_id"] for r in eager["json"]]


def test_flattened_rows_are_consecutive_pos_neg(sample_build):
    pairs = load_finer(str(sample_build.out), "multi_rel")
    rows = load_finer(str(sample_build.out), "multi_rel", flatten=True)
    assert rows.num_rows == 2 * pairs.num_rows
    for i, record in enumerate(pairs["json"]):
        pos, neg = rows[2 * i], rows[2 * i + 1]
        assert (pos["qtype"], neg["qtype"]) == ("multi_rel_pos", "multi_rel_neg")
        assert pos["question_id"] == record["positive"]["question_id"]
        assert neg["answer"] == record["negative"]["answer"] == "ABCDE"[neg["gt_index"]]
        assert pos["image"].size == (320, 240)
    everything = load_finer(str(sample_build.out), flatten=True)
    assert set(everything) == set(SETTINGS)


def test_small_shards_split_and_still_load(tmp_path, builder, sample_dir, sample_build):
    result = build(builder, source=sample_dir, out=tmp_path / "small", max_samples=10, progress=False)
    shards = [f for f in result.manifest["files"] if f.get("setting") == "multi_attr"]
    assert len(shards) > 1 and all(f["samples"] <= 10 for f in shards)
    ds = datasets.load_dataset(str(result.out), split="multi_attr")
    ref = datasets.load_dataset(str(sample_build.out), split="multi_attr")
    assert ds["json"] == ref["json"]


def test_verify_detects_changes(tmp_path, builder, sample_dir, capsys):
    out = build(builder, source=sample_dir, out=tmp_path / "v", progress=False).out
    assert main(["verify", str(out)]) == 0
    shard = out / "data/wh-00000.tar"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 1
    shard.write_bytes(bytes(data))
    (out / "extra.txt").write_text("x")
    (out / "scene_graphs.jsonl").unlink()
    assert main(["verify", str(out)]) == 3
    err = capsys.readouterr().err
    assert "data/wh-00000.tar: sha256" in err and "extra.txt: not in the manifest" in err
    assert "scene_graphs.jsonl: missing" in err


def test_overwrite_is_required_to_replace(tmp_path, builder, sample_dir):
    out = tmp_path / "o"
    build(builder, source=sample_dir, out=out, progress=False)
    with pytest.raises(Exception, match="already exists"):
        build(builder, source=sample_dir, out=out, progress=False)
    build(builder, source=sample_dir, out=out, seed=2, overwrite=True, progress=False)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_cli_sample_build(tmp_path, capsys):
    assert main(["build", "compre_cap", "--sample", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    assert "built FINER-CompreCap 1.0.0" in capsys.readouterr().out
    assert verify(tmp_path / "cli")["counts"]["images"] == 12
