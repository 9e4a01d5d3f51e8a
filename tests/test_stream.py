"""``stream_finer``: the rows of the ``load_finer`` views streamed from WebDataset shards with
webdataset, split over nodes x DataLoader workers (every row exactly once per epoch), shuffled and
resampled with seeds, read from folders, paths, brace patterns and ``pipe:`` commands; every bad
input is one error naming the shard."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from finer_datasets import build, load_finer
from finer_datasets.errors import SourceError, UsageError
from finer_datasets.hub.stream import FinerStream, shard_urls, stream_finer

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory, builder, sample_dir) -> Path:
    """The sample in shards of 3 images (12 images: 4 shards), as `--shard-samples 3` writes it."""
    return build(builder, source=sample_dir, out=tmp_path_factory.mktemp("stream") / "cc", max_samples=3,
                 progress=False).out


def canonical(row: dict, image_key: str = "image") -> str:
    """A row as one comparable string; the image as the sha256 of its stored bytes."""
    def digest(cell):
        if cell is None:
            return None
        data = cell["bytes"] if cell.get("bytes") is not None else Path(cell["path"]).read_bytes()
        return hashlib.sha256(data).hexdigest()

    cell = row[image_key]
    image = [digest(c) for c in cell] if isinstance(cell, list) else digest(cell)
    return json.dumps({**row, image_key: image}, sort_keys=True)


def view_rows(folder: Path, view: str, split: str = "test") -> list[str]:
    """``load_finer``'s view with undecoded images, as canonical strings."""
    import datasets

    ds = load_finer(str(folder), view, split=split)
    key = "images" if view in ("trl", "sft") else "image"
    feature = datasets.Image(decode=False)
    ds = ds.cast_column(key, datasets.List(feature) if view in ("trl", "sft") else feature)
    return [canonical(row, key) for row in ds]


def consume(stream, rank: int, world: int, workers: int, monkeypatch) -> list[dict]:
    """What node ``rank`` of ``world`` reads through a real DataLoader with ``workers`` workers."""
    with monkeypatch.context() as env:
        env.setenv("RANK", str(rank))
        env.setenv("WORLD_SIZE", str(world))
        return list(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers))


@pytest.mark.parametrize("view", ["questions", "pairs"])
def test_two_nodes_of_two_workers_see_every_row_of_the_view_exactly_once(small_shards, view, monkeypatch):
    assert len(shard_urls(small_shards, "test")) == 4
    stream = stream_finer(small_shards, view, split="test", decode=False)
    seen = [consume(stream, rank, 2, 2, monkeypatch) for rank in (0, 1)]
    assert all(seen)  # each node reads its own shards
    got = [canonical(row) for rows in seen for row in rows]
    expected = view_rows(small_shards, view)
    assert len(got) == len(set(got)) == len(expected)
    assert Counter(got) == Counter(expected)
    assert not {canonical(r) for r in seen[0]} & {canonical(r) for r in seen[1]}


def test_sample_splitting_is_exact_with_fewer_shards_than_consumers(sample_build, monkeypatch):
    assert len(shard_urls(sample_build.out, "test")) == 1
    stream = stream_finer(sample_build.out, "questions", split="test", decode=False, split_by="samples")
    seen = [consume(stream, rank, 2, 2, monkeypatch) for rank in (0, 1)]
    got = [canonical(row) for rows in seen for row in rows]
    assert all(seen) and Counter(got) == Counter(view_rows(sample_build.out, "questions"))
    assert len(got) == len(set(got))


def test_a_consumer_without_a_shard_reads_nothing_and_says_so(small_shards, monkeypatch, caplog):
    two = shard_urls(small_shards, "test")[:2]
    per_shard = [sum(1 for _ in stream_finer(url, "questions")) for url in two]
    stream = stream_finer(two, "questions")
    for rank, worker, rows in ((0, 0, per_shard[0]), (0, 1, 0), (1, 0, per_shard[1]), (1, 1, 0)):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("WORKER", str(worker))
        monkeypatch.setenv("NUM_WORKERS", "2")
        caplog.clear()
        assert sum(1 for _ in stream) == rows
        assert ("reads none (use split_by='samples')" in caplog.text) == (rows == 0)


def test_a_seeded_shuffle_is_exact_repeatable_and_changes_with_the_epoch(small_shards, monkeypatch):
    def run(seed: int, epoch: int) -> list[str]:
        stream = stream_finer(small_shards, "questions", split="test", decode=False, shuffle=50, seed=seed)
        stream.set_epoch(epoch)
        return [canonical(row) for rank in (0, 1) for row in consume(stream, rank, 2, 2, monkeypatch)]

    plain = [canonical(r) for r in stream_finer(small_shards, "questions", split="test", decode=False)]
    first = run(0, 0)
    assert Counter(first) == Counter(plain) and first != plain
    assert run(0, 0) == first
    assert run(0, 1) != first and run(1, 0) != first


def test_resampling_is_endless_seeded_and_bounded_by_with_epoch(small_shards):
    expected = set(view_rows(small_shards, "pairs"))
    stream = stream_finer(small_shards, "pairs", split="test", decode=False, resample=True, seed=3).with_epoch(400)
    rows = [canonical(r) for r in stream]
    assert len(rows) == 400 > len(expected)  # more than one pass over 289 pairs
    assert set(rows) <= expected
    assert [canonical(r) for r in stream] == rows  # the same seed and epoch draw the same shards


def test_images_are_decoded_by_default_and_the_view_matches_load_finer(small_shards):
    rows = list(stream_finer(small_shards, "questions", split="test", setting="multi_object"))
    view = load_finer(str(small_shards), "questions", split="test", setting="multi_obj")
    assert [r["question_id"] for r in rows] == list(view["question_id"]) and rows
    assert {r["setting"] for r in rows} == {"multi_obj"}
    assert rows[0]["image"].format == "JPEG" and rows[0]["image"].size == view[0]["image"].size
    sample = next(iter(stream_finer(small_shards, split="test")))  # "images": the sample as stored
    assert set(sample) == {"__key__", "__url__", "json", "jpg"} and sample["json"]["pairs"]
    assert sample["__url__"] == str(small_shards / "data" / "test-00000.tar")


def test_brace_patterns_paths_and_pipe_commands_read_the_same_rows(small_shards):
    data = small_shards / "data"
    expected = [canonical(r) for r in stream_finer(small_shards, "questions", split="test", decode=False)]
    for source in (f"{data}/test-{{00000..00003}}.tar", sorted(data.glob("*.tar")),
                   [f"pipe:cat {p}" for p in sorted(data.glob("*.tar"))]):
        assert [canonical(r) for r in stream_finer(source, "questions", decode=False)] == expected


def test_the_stream_is_a_torch_iterable_dataset_that_pickles(small_shards):
    import pickle

    stream = stream_finer(small_shards, "questions", split="test", shuffle=10)
    assert isinstance(stream, torch.utils.data.IterableDataset) and isinstance(stream, FinerStream)
    again = pickle.loads(pickle.dumps(stream))
    assert [r["question_id"] for r in again] == [r["question_id"] for r in stream]
    batches = list(stream.map(lambda r: r["question_id"]).batched(100, collation_fn=list))
    assert sum(map(len, batches)) == 578


def test_a_folder_with_two_splits_needs_split(tmp_path, small_shards):
    folder = tmp_path / "two"
    shutil.copytree(small_shards, folder)
    shutil.copy(folder / "data" / "test-00000.tar", folder / "data" / "train-00000.tar")
    with pytest.raises(UsageError, match="has the splits test, train: pass split="):
        stream_finer(folder, "questions")
    assert len(shard_urls(folder, "train")) == 1
    with pytest.raises(UsageError, match="has no shards data/validation-"):
        stream_finer(folder, "questions", split="validation")


@pytest.mark.parametrize("kwargs, message", [
    ({"view": "rows"}, "unknown view 'rows'"),
    ({"split_by": "nodes"}, "split_by='nodes'"),
    ({"shuffle": -1}, "cannot be negative"),
    ({"setting": "colour"}, "colour"),
])
def test_bad_options_are_one_usage_error(small_shards, kwargs, message):
    with pytest.raises(UsageError, match=message):
        stream_finer(small_shards, **{"view": "questions", "split": "test", **kwargs})


def test_a_view_of_another_kind_names_the_shard_and_the_views(small_shards):
    with pytest.raises(UsageError, match=r"test-00000.tar \(sample 000000000001\) is a FINER benchmark of MCQ pairs "
                                         r"\(views: images, pairs, questions, positions\); stream_finer\(\.\.\., 'trl'\)"):
        next(iter(stream_finer(small_shards, "trl", split="test")))


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    import io

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_unreadable_shards_are_one_source_error_naming_them(tmp_path, small_shards):
    shard = small_shards / "data" / "test-00001.tar"
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard.read_bytes()[:5000])
    bad_json = _tar(tmp_path / "bad.tar", {"a.json": b"{not json", "a.jpg": b"x"})
    no_json = _tar(tmp_path / "nojson.tar", {"a.jpg": b"x"})
    cases = [
        (str(tmp_path / "missing.tar"), f"file {tmp_path / 'missing.tar'}: cannot open the shard: No such file"),
        (str(cut), f"file {cut}: cannot read the shard"),
        (f"pipe:cat {tmp_path / 'missing.tar'}", "cannot read the shard: .*exit 1"),
        (str(bad_json), f"file {bad_json}, record a, field 'json': bad JSON"),
        (str(no_json), f"file {no_json}, record a: the sample has no json member"),
    ]
    for url, message in cases:
        with pytest.raises(SourceError, match=message) as info:
            list(stream_finer(url, "questions"))
        assert "\n" not in str(info.value)
