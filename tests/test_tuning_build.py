"""FINER-Tuning builds of the bundled sample: offline, byte-identical, every bad input counted.

``build_tuning`` (also used by the other test_tuning*/test_preference* modules) builds a source
with the builder's test context: a local image server over ``SOURCE/images`` and, by default,
the sample's bundled transcript replayed (no model, no network).
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from finer_datasets.core.build import build
from finer_datasets.core.manifest import verify
from finer_datasets.core.registry import get_builder
from finer_datasets.errors import LLMError, SourceError, UsageError
from finer_datasets.core.reader import iter_samples
from finer_datasets.llm import LLMConfig, LLMRun, PromptSet, TranscriptStore
from finer_datasets.testing.builder_tests import folder_files
from finer_datasets.testing.image_server import ImageServer
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

TUNING = get_builder("tuning")
SAMPLE = TUNING.sample_dir()
TRANSCRIPT = SAMPLE / "transcript.jsonl"


def replay_run(transcript: Path = TRANSCRIPT) -> LLMRun:
    return LLMRun.replay(transcript, stages=TUNING.llm_stages, prompts=PromptSet.for_builder(TUNING.prompts_dir()))


@contextmanager
def scripted_run(store: Path, **server_kwargs):
    """A recording run against the scripted model (``server_kwargs``: ScriptedServer's, e.g. ``hook``)."""
    with ScriptedServer(ScriptedLLM(handlers=TUNING.scripted_handlers()), **server_kwargs) as server:
        config = LLMConfig(base_url=server.url, model="scripted", api_key_env="", backoff=0.01, max_retries=1)
        yield LLMRun.create(TranscriptStore(store), llm=config, stages=dict(TUNING.llm_stages),
                            prompts=PromptSet.for_builder(TUNING.prompts_dir()))


def build_tuning(out: Path, *, source: Path = SAMPLE, llm=None, max_samples: int = 10_000, **options):
    with TUNING.test_context(source) as context:
        return build(TUNING, source=source, out=out, llm=llm or replay_run(), options={**context, **options},
                     progress=False, max_samples=max_samples)


def records(folder: Path) -> list[dict]:
    return [s["json"] for s in iter_samples(folder, verify(folder), images=False)]


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory):
    return build_tuning(tmp_path_factory.mktemp("tuning") / "sample")


def test_the_sample_builds_offline_and_a_rebuild_is_byte_identical(sample_build, tmp_path):
    again = build_tuning(tmp_path / "again")
    assert folder_files(sample_build.out) == folder_files(again.out)
    counts = sample_build.manifest["counts"]
    assert counts["skips"] == {"duplicate_url": 1, "image_unavailable": 3, "invalid_url": 1, "leakage_excluded": 2,
                               "llm_unusable_answer": 1, "missing_caption": 1, "no_tuples": 1}
    assert counts["samples"] == {"train": 29, "validation": 1} and counts["records"] == 120
    assert counts["fetch"]["dead_reasons"] == {"corrupt": 1, "http_404": 1, "not_an_image": 1}
    assert counts["leakage"] == {"url_pattern": 2, "sha256": 0}
    report = json.loads((sample_build.out / "build_report.json").read_text())
    reasons = {(s["reason"], s["detail"].split(":")[0]) for s in report["skipped"]}
    assert {("image_unavailable", "http_404"), ("image_unavailable", "not_an_image"),
            ("image_unavailable", "corrupt")} <= reasons
    provenance = sample_build.manifest["provenance"]
    assert [f["file"] for f in provenance["source_files"]] == ["data/train-00000-of-00002.parquet",
                                                              "data/train-00001-of-00002.parquet"]
    assert "part" not in provenance


def test_records_keep_provenance_and_the_downloaded_bytes(sample_build):
    samples = list(iter_samples(sample_build.out, verify(sample_build.out)))
    assert len(samples) == 30
    for sample in samples:
        record = sample["json"]
        src = record["source"]
        served = (SAMPLE / "images" / src["url"].rsplit("/", 1)[1]).read_bytes()
        assert src["sha256"] == hashlib.sha256(served).hexdigest() and src["bytes"] == len(served)
        stored = sample[src["stored_as"]]["bytes"]
        if src["format"] in ("JPEG", "PNG"):
            assert stored == served
        else:  # the WebP image: a lossless PNG of the same pixels
            assert src["format"] == "WEBP" and src["stored_as"] == "png"
            assert Image.open(io.BytesIO(stored)).convert("RGB").tobytes() == \
                Image.open(io.BytesIO(served)).convert("RGB").tobytes()
        assert record["image_id"] == sample["__key__"] and src["file"].endswith(".parquet")
        assert all("selected" not in t for t in record["tuples"])  # the shards hold exactly the release
        selected = record["tuples"]
        assert selected and len({t["type"] for t in selected}) == len(selected)  # pon: one per type
        for t in record["tuples"]:
            first = t["chosen"].split(",")[0]
            if t["type"] != "wh":
                assert first == ("Yes" if t["query"] == "positive" else "No")


def test_the_shards_hold_exactly_the_release(sample_build):
    """A plain WebDataset reader (tar members, no finer code) sees the release's tuples and no others."""
    import tarfile

    tuples = []
    for shard in sorted((sample_build.out / "data").glob("*.tar")):
        with tarfile.open(shard) as tar:
            tuples += [t for m in tar if m.name.endswith(".json") for t in json.loads(tar.extractfile(m).read())["tuples"]]
    counts = sample_build.manifest["counts"]["tuples"]
    assert len(tuples) == counts["selected"] == 120 and counts["candidates"] == 240
    assert len({t["id"] for t in tuples}) == 120


def test_the_card_records_the_leakage_guard_and_the_dead_rate(sample_build):
    card = (sample_build.out / "README.md").read_text()
    assert "2 row(s) with a COCO or DOCCI image URL were excluded" in card
    assert "no sha256 exclusion list was given" in card
    assert "3 dead (8.8%: corrupt 1, http_404 1, not_an_image 1)" in card
    assert "| all | 120 |" in card and "task_categories" in card


def test_garbage_llm_answers_are_reasked_then_counted_and_replay_identically(tmp_path):
    target = "There is a blue ball with black dots. There is a purple house"

    def hook(request, n):
        text = request["messages"][1]["content"]
        if text.startswith("Task: list the objects") and target in text:
            body = {"choices": [{"message": {"role": "assistant", "content": "I think there is a ball {"}}]}
            return 200, json.dumps(body).encode()
        return None

    with scripted_run(tmp_path / "t.sqlite", hook=hook) as llm:
        recorded = build_tuning(tmp_path / "rec", llm=llm)
    skips = [s for s in json.loads((recorded.out / "build_report.json").read_text())["skipped"]
             if s["reason"] == "llm_unusable_answer" and s["field"] == "tuning_extract"]
    assert len(skips) == 1 and "not valid JSON" in skips[0]["detail"] and skips[0]["record"] == "0"
    assert recorded.manifest["llm"]["tuning"]["reasks"]["tuning_extract"] == 2
    first = next(r for r in records(recorded.out) if r["source"]["row"] == 0 and r["source"]["file"].endswith("00002.parquet"))
    assert {t["type"] for t in first["tuples"]} == {"wh"}  # the Wh prompts still answered
    replayed = build_tuning(tmp_path / "rep", llm=replay_run(recorded.out / "transcript.jsonl"))
    assert folder_files(recorded.out) == folder_files(replayed.out)


def test_a_dead_endpoint_aborts_before_anything_is_written(tmp_path):
    with scripted_run(tmp_path / "t.sqlite", hook=lambda request, n: (500, b"down")) as llm:
        with pytest.raises(LLMError) as info:
            build_tuning(tmp_path / "out", llm=llm)
    assert info.value.exit_code == 5 and not (tmp_path / "out").exists()


def _parquet(path: Path, table) -> Path:  # noqa: ANN001
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_bad_sources_are_one_line_errors(tmp_path):
    import pyarrow as pa

    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "a.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="not a readable Parquet file") as info:
        build_tuning(tmp_path / "o1", source=broken)
    assert info.value.exit_code == 2 and "a.parquet" in str(info.value)
    cases = {
        "nocaption": (pa.table({"image_url": ["https://x.test/a.jpg"]}), "missing column", "caption"),
        "intcaption": (pa.table({"image_url": ["https://x.test/a.jpg"], "caption": [3]}), "expected a string column",
                       "caption"),
    }
    for name, (table, message, field) in cases.items():
        _parquet(tmp_path / name / "d.parquet", table)
        (tmp_path / name / "images").mkdir()
        with pytest.raises(SourceError, match=message) as info:
            build_tuning(tmp_path / f"o-{name}", source=tmp_path / name)
        assert f"field {field}" in str(info.value) or field in str(info.value)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(SourceError, match="no .parquet files"):
        build_tuning(tmp_path / "o3", source=tmp_path / "empty")


@pytest.mark.parametrize("options, message", [
    ({"preset": "everything"}, "--preset"), ({"part": "4/3"}, "--part"), ({"part": "x"}, "--part"),
    ({"validation_ratio": 0}, "--validation-ratio"), ({"validation_ratio": 1.0}, "--validation-ratio"),
    ({"types": "obj,color"}, "--types"), ({"queries": "maybe"}, "--queries"), ({"sampling": "half"}, "--sampling"),
    ({"max_tuples": -1}, "--max-tuples"), ({"max_images": 0}, "--max-images"), ({"image_cache": None}, "image cache"),
])
def test_bad_options_are_usage_errors(tmp_path, options, message):
    with pytest.raises(UsageError, match=message) as info:
        build_tuning(tmp_path / "out", **options)
    assert info.value.exit_code == 2 and not (tmp_path / "out").exists()


def test_presets_select_the_papers_ablations(tmp_path):
    def selected(**options):
        result = build_tuning(tmp_path / "-".join(map(str, options.values())), **options)
        return result, [t for r in records(result.out) for t in r["tuples"]]

    _, obj = selected(preset="obj")  # Table 5: one type, both queries of every image
    assert len(obj) == 60 and {t["type"] for t in obj} == {"obj"} and sum(t["query"] == "negative" for t in obj) == 30
    _, negative = selected(preset="negative-only")
    assert len(negative) == 120 and {t["query"] for t in negative} == {"negative"}
    result, everything = selected(preset="all-queries")
    assert len(everything) == result.manifest["counts"]["tuples"]["candidates"] == 240
    result, capped = selected(max_tuples=20)
    assert len(capped) == result.manifest["counts"]["records"] == 20
    assert result.manifest["counts"]["skips"]["not_selected"] == 30 - result.manifest["counts"]["images"]
    assert result.manifest["builder"]["options"]["max_tuples"] == 20


def test_the_image_cache_resumes_without_downloading_again(tmp_path):
    cache = tmp_path / "cache"
    with ImageServer(SAMPLE / "images") as server:
        options = {"url_rewrite": (r"^https://pixmo-sample\.test/", server.url("/")), "image_cache": cache,
                   "allow_servers": [f"127.0.0.1:{server.port}"]}
        first = build(TUNING, source=SAMPLE, out=tmp_path / "a", llm=replay_run(), options=options, progress=False)
        fetched = sum(n for path, n in server.requests.items() if path.startswith("/files/"))
        server.reset()
        second = build(TUNING, source=SAMPLE, out=tmp_path / "b", llm=replay_run(), options=options, progress=False)
        assert fetched == 31 and not any(p.startswith("/files/") for p in server.requests)
    assert folder_files(first.out) == folder_files(second.out)
    with pytest.raises(Exception, match="contains the input|is or contains"):
        build(TUNING, source=SAMPLE, out=cache.parent, llm=replay_run(), options=options, progress=False)


def test_an_exclusion_list_removes_leaked_images(tmp_path):
    digest = hashlib.sha256((SAMPLE / "images" / "img001.jpg").read_bytes()).hexdigest()
    listing = tmp_path / "coco-docci.sha256"
    listing.write_text(f"# leaked images\n{digest.upper()}  \n\n")
    result = build_tuning(tmp_path / "out", exclude_sha256=listing)
    assert result.manifest["counts"]["leakage"] == {"url_pattern": 2, "sha256": 1}
    assert all(r["source"]["sha256"] != digest for r in records(result.out))
    assert "an exclusion list of 1 sha256 hashes" in (result.out / "README.md").read_text()
    assert result.manifest["builder"]["options"]["exclude_sha256"] == "coco-docci.sha256"
    listing.write_text("abc\n")
    with pytest.raises(SourceError, match="line 1"):
        build_tuning(tmp_path / "out2", exclude_sha256=listing)


def test_out_dot_in_an_empty_folder_builds(tmp_path):
    """`--out .` has no name of its own (the default image cache, OUT.images, is named from the resolved
    folder): it builds instead of raising ValueError."""
    import subprocess
    import sys

    here = tmp_path / "here"
    here.mkdir()
    run = subprocess.run([sys.executable, "-m", "finer_datasets.cli", "build", "tuning", "--sample", "--replay", "sample",
                          "--out", ".", "--no-progress"], cwd=here, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (here / "manifest.json").is_file() and "Traceback" not in run.stderr

