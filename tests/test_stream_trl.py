"""A ``trl`` stream of FINER-Tuning shards: the rows of ``load_finer(..., "trl")`` over 2 nodes x 2
workers exactly once, and what ``trl.DPOTrainer`` trains on for two steps of a tiny offline LLaVA
(as tests/test_tuning_trl.py does with the ``load_finer`` view)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from test_stream import canonical, consume, view_rows
from test_tuning_build import build_tuning
from test_tuning_trl import check_two_dpo_steps

from finer_datasets import load_finer, stream_finer
from finer_datasets.hub.stream import shard_urls

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The FINER-Tuning sample in shards of 3 images (29 train images: 10 shards)."""
    return build_tuning(tmp_path_factory.mktemp("trl-stream") / "sample", max_samples=3).out


def without_nones(value):
    """A row as ``datasets`` would store it, less the ``None`` keys an Arrow struct adds to dicts
    that lack them (``{"type": "image"}`` becomes ``{"type": "image", "text": None}`` in the view)."""
    if isinstance(value, dict):
        return {k: without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nones(v) for v in value]
    return value


@pytest.mark.parametrize("view", ["trl", "sft"])
def test_two_nodes_of_two_workers_see_every_preference_row_once(built, view, monkeypatch):
    assert len(shard_urls(built, "train")) == 10
    stream = stream_finer(built, view, split="train", decode=False, shuffle=20, seed=1)
    got = [canonical(row, "images") for rank in (0, 1) for row in consume(stream, rank, 2, 2, monkeypatch)]
    expected = view_rows(built, view, split="train")
    assert len(got) == len(set(got)) == len(expected) == 116
    assert Counter(json.dumps(without_nones(json.loads(r)), sort_keys=True) for r in got) == \
        Counter(json.dumps(without_nones(json.loads(r)), sort_keys=True) for r in expected)
    streamed = load_finer(str(built), view, split="train", streaming=True)  # datasets' streaming view: no Arrow structs
    plain = {row["id"]: {k: v for k, v in row.items() if k != "images"} for row in stream_finer(built, view, split="train")}
    assert {row["id"]: {k: v for k, v in row.items() if k != "images"} for row in streamed} == plain


def test_two_dpo_steps_of_a_tiny_vlm_run_on_the_trl_stream(built, tmp_path):
    import datasets

    stream = stream_finer(built, "trl", split="train", shuffle=16, seed=0)
    train = stream.to_iterable_dataset()
    assert isinstance(train, datasets.IterableDataset) and train.n_shards == 10
    row = next(iter(train))
    assert {"images", "prompt", "chosen", "rejected", "subset", "query_type", "id"} <= set(row)
    assert row["images"][0].format in ("JPEG", "PNG")
    check_two_dpo_steps(train, tmp_path)
