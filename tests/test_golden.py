"""The redesigned core gives exactly the pair records of builder 1.0.0 (captured before the
redesign, tests/golden/README.md): same source + seed => the same pairs, only stored per image."""

import gzip
import hashlib
import json
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
    data = canonical_pairs(out)
    assert data.count(b"\n") == 4700
    assert hashlib.sha256(data).hexdigest() == "5270030aa8229696dbc2a31f857178a5d51fd6c1aaf417d5b42ace2bc837e03f"
