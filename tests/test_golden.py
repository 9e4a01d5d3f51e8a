"""The redesigned core gives exactly the pair records of builder 1.0.0 (captured before the
redesign, tests/golden/README.md): same source + seed => the same pairs, only stored per image.

Since 1.0.0 one rule changed the pairs: the relations of a `multi_rel` question never share an
object (`relations_share_object`). It touches no pair of the sources below (no subject of theirs
has two relations about one object name; checked here), so they still equal the golden records
pair for pair; a sample edited to hold such a subject differs from them exactly in that subject's
`multi_rel` pairs (and the edited relation's Wh pair)."""

import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from finer_datasets import build
from finer_datasets.core.manifest import verify
from finer_datasets.core.reader import iter_records
from finer_datasets.llm import LLMRun, PromptSet
from finer_datasets.mcq.records import pair_rows

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[1]


def canonical_pairs(folder: Path) -> bytes:
    manifest = verify(folder)
    pairs = sorted((p for r in iter_records(folder, manifest) for p in pair_rows(r)), key=lambda p: p["pair_id"])
    return b"".join(json.dumps(p, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                    for p in pairs)


def golden(name: str) -> dict[str, bytes]:
    lines = gzip.decompress((GOLDEN / name).read_bytes()).splitlines()
    return {json.loads(line)["pair_id"]: line for line in lines}


def subjects_sharing_an_object(folder: Path) -> list[str]:
    """``<image key>_<subject id>`` of every subject with two relations about one object name."""
    found = []
    for record in iter_records(folder, verify(folder)):
        graph = record["scene_graph"]
        names = {o["id"]: o["name"].lower() for o in graph["objects"]}
        seen: dict[str, set[str]] = {}
        for rel in graph["relations"]:
            objects = seen.setdefault(rel["subject"], set())
            if names[rel["object"]] in objects:
                found.append(f"{record['image_id']}_{rel['subject']}")
            objects.add(names[rel["object"]])
    return found


def test_the_relation_guard_touches_no_pair_of_the_sample(sample_build):
    assert subjects_sharing_an_object(sample_build.out) == []
    assert "relations_share_object" not in sample_build.manifest["counts"]["skips"]


def test_a_subject_with_two_relations_about_one_object_changes_only_its_multi_rel_pairs(tmp_path, builder,
                                                                                        sample_dir):
    src = tmp_path / "src"
    shutil.copytree(sample_dir, src)
    anno = json.loads((src / "anno.json").read_text())
    cup = anno[1]["info"][2]  # image 000000000002: the cup is on the table, beside the book, left of the chair
    assert cup["relation"][2] == "The cup is to the left of the chair."
    cup["relation"][2] = "The cup is to the left of the table."  # a second relation about the table
    (src / "anno.json").write_text(json.dumps(anno))
    out = build(builder, source=src, out=tmp_path / "out", progress=False)
    assert subjects_sharing_an_object(out.out) == ["000000000002_o2"]
    got = {json.loads(line)["pair_id"]: line for line in canonical_pairs(out.out).splitlines()}
    expected = golden("compre_cap_sample_v1_pairs.jsonl.gz")
    touched = {"multi_rel_000000000002_o2_k1", "multi_rel_000000000002_o2_k2", "multi_rel_000000000002_o2_k3",
               "wh_000000000002_r4"}  # the cup's multi_rel pairs; the Wh pair of the edited relation
    assert {k: v for k, v in got.items() if k not in touched} == {k: v for k, v in expected.items() if k not in touched}
    assert "multi_rel_000000000002_o2_k3" in expected and "multi_rel_000000000002_o2_k3" not in got
    for pair_id in ("multi_rel_000000000002_o2_k1", "multi_rel_000000000002_o2_k2"):
        assert sum("the table" in unit for unit in json.loads(got[pair_id])["elements"]) <= 1
    (skip,) = [s for s in out.report.skips if s["reason"] == "relations_share_object"]
    assert skip["record"] == "000000000002" and skip["detail"] == "multi_rel o2 k=3: r2, r4 share the table"


def test_sample_pairs_equal_the_1_0_0_records(sample_build):
    expected = gzip.decompress((GOLDEN / "compre_cap_sample_v1_pairs.jsonl.gz").read_bytes())
    got = canonical_pairs(sample_build.out)
    if got != expected:  # show the first differing record, not two 370 KB blobs
        for a, b in zip(got.splitlines(), expected.splitlines()):
            assert a == b
    assert got == expected


def test_replayed_llm_sample_pairs_equal_the_1_0_0_records(tmp_path, builder, sample_dir):
    llm = LLMRun.replay(sample_dir / "transcript.jsonl", stages=builder.llm_stages,
                        prompts=PromptSet.for_builder(builder.prompts_dir()))
    out = build(builder, source=sample_dir, out=tmp_path / "llm", llm=llm, progress=False).out
    expected = gzip.decompress((GOLDEN / "compre_cap_sample_llm_v1_pairs.jsonl.gz").read_bytes())
    assert subjects_sharing_an_object(out) == []
    assert canonical_pairs(out) == expected


@pytest.mark.slow
def test_synthetic_bench_source_pairs_equal_the_1_0_0_records(tmp_path, builder):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from build import make_source  # bench/build.py's synthetic CompreCap source
    finally:
        sys.path.pop(0)
    make_source(tmp_path / "src", 300, (64, 48))
    out = build(builder, source=tmp_path / "src", out=tmp_path / "out", progress=False).out
    assert subjects_sharing_an_object(out) == []
    data = canonical_pairs(out)
    assert data.count(b"\n") == 4700
    assert hashlib.sha256(data).hexdigest() == "5270030aa8229696dbc2a31f857178a5d51fd6c1aaf417d5b42ace2bc837e03f"
