"""``--part I/N`` + ``finer merge``: three parts of the sample merge into the one-machine build, byte for byte."""

from __future__ import annotations

import json
import shutil

import pytest

from finer_datasets.core.merge import merge, union_transcripts
from finer_datasets.core.registry import get_builder
from finer_datasets.errors import UsageError
from finer_datasets.testing.builder_tests import folder_files
from test_tuning_build import SAMPLE, TUNING, build_tuning, replay_run, scripted_run

SHARD = 7  # several shards per split, so shard boundaries are part of the comparison


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A one-machine build and its three parts, each recorded against the scripted model."""
    root = tmp_path_factory.mktemp("parts")
    with scripted_run(root / "single.sqlite") as llm:
        single = build_tuning(root / "single", llm=llm, max_samples=SHARD)
    folders = []
    for i in (1, 2, 3):
        with scripted_run(root / f"part{i}.sqlite") as llm:
            folders.append(build_tuning(root / f"part{i}", llm=llm, part=(i, 3), max_samples=SHARD).out)
    return root, single, folders


def test_three_parts_merge_into_the_one_machine_build_byte_for_byte(parts):
    root, single, folders = parts
    manifests = [json.loads((f / "manifest.json").read_text()) for f in folders]
    assert [m["provenance"]["part"] for m in manifests] == ["1/3", "2/3", "3/3"]
    images = [m["counts"]["images"] for m in manifests]
    assert all(images) and sum(images) == single.manifest["counts"]["images"]
    keys = [set(json.loads(line)["key"] for line in (f / "transcript.jsonl").read_text().splitlines()) for f in folders]
    assert len(keys[0] & keys[1] - {"config"}) == 0  # disjoint work: no prompt asked twice
    assert "part 1/3 of a build split over machines" in (folders[0] / "README.md").read_text()
    merged = merge(TUNING, folders, source=SAMPLE, out=root / "merged", replay=replay_run, progress=False,
                   max_samples=SHARD)
    assert folder_files(merged.out) == folder_files(single.out)
    assert not list(root.glob(".merged.finer-merge*"))


def test_the_merge_checks_that_the_parts_belong_together(parts, tmp_path):
    root, single, folders = parts
    with pytest.raises(UsageError, match=r"missing \[3\]"):
        merge(TUNING, folders[:2], source=SAMPLE, out=tmp_path / "a")
    with pytest.raises(UsageError, match=r"repeated \[1\]"):
        merge(TUNING, [folders[0], folders[0], folders[1]], source=SAMPLE, out=tmp_path / "b")
    with pytest.raises(UsageError, match="is a whole build"):
        merge(TUNING, [single.out, *folders[1:]], source=SAMPLE, out=tmp_path / "c")
    with pytest.raises(UsageError, match="options"):
        merge(TUNING, folders, source=SAMPLE, out=tmp_path / "d", options={"preset": "obj"})
    with pytest.raises(UsageError, match="another source"):
        merge(TUNING, folders, source=TUNING.dummy_data_dir(), out=tmp_path / "e")
    with pytest.raises(UsageError, match="needs the part folders"):
        merge(TUNING, [], source=SAMPLE, out=tmp_path / "f")
    with pytest.raises(UsageError, match="needs replay"):
        merge(TUNING, folders, source=SAMPLE, out=tmp_path / "g")
    with pytest.raises(UsageError, match="cannot be built in parts"):
        get_builder("compre_cap").merge_options(folders, {}, tmp_path)
    assert get_builder("compre_cap").part_of(single.manifest) is None
    assert not any((tmp_path / x).exists() for x in "abcdefg")


def test_a_tampered_or_conflicting_part_is_refused(parts, tmp_path):
    _, _, folders = parts
    copy = tmp_path / "part2"
    shutil.copytree(folders[1], copy)
    lines = (copy / "transcript.jsonl").read_text().splitlines()
    entry = json.loads(lines[1])
    entry["usage"]["prompt_tokens"] += 1
    conflicting = tmp_path / "other.jsonl"
    conflicting.write_text(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
    (tmp_path / "x").mkdir()
    shutil.copy(conflicting, tmp_path / "x" / "transcript.jsonl")
    with pytest.raises(UsageError, match="differs from another part"):
        union_transcripts([folders[1], tmp_path / "x"], tmp_path / "union.jsonl")
    (copy / "transcript.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    from finer_datasets.errors import VerificationError

    with pytest.raises(VerificationError, match="transcript.jsonl"):
        merge(TUNING, [folders[0], copy, folders[2]], source=SAMPLE, out=tmp_path / "m", replay=replay_run)
