"""FINER-Tuning's presets and their sizes: what Tables 4 and 5 select, how many Pixmo-cap shards
reach the 160K target at the paper's yield, and what a build short of its target reports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from finer_datasets.preference.configs import (
    CANDIDATES_PER_SHARD,
    PAPER_MAX_TUPLES,
    PRESETS,
    shards_for,
    short_text,
    target_size,
)
from finer_datasets.preference.construct import (
    QUERIES,
    TYPES,
    Phrase,
    PhrasePlan,
    Selection,
    WhPair,
    candidate_tuples,
    preselect,
    subsample,
)

SCALE = 100  # a synthetic source at the paper's yield, 100 times smaller
IMAGES_PER_SHARD = 92  # x 8 candidates = 736 per shard, the paper's ~733 (440K / 6 / 100)
WH = WhPair("s", "What is left of the box?", "A ball is left of the box.", "What is right of the box?",
            "Nothing is right of the box; the ball is left of it.", "right instead of left")


def test_the_presets_select_what_tables_4_and_5_trained_on():
    assert PRESETS["paper"] == Selection(TYPES, QUERIES, "pon", PAPER_MAX_TUPLES)  # "pixmo_dpo_220k_pon", then 160K
    for kind in TYPES:  # Table 5: one subset, both queries (as FINER-Tuning), 160K
        assert PRESETS[kind] == Selection((kind,), QUERIES, "all", 160_000)
    assert PRESETS["negative-only"] == Selection(TYPES, ("negative",), "pon", 160_000)  # Table 4, Neg
    assert {s.max_tuples for s in PRESETS.values()} == {160_000}


def test_shards_at_the_papers_yield():
    assert round(CANDIDATES_PER_SHARD) == 73_333  # appendix C: about 440K candidates from 6 shards
    assert {name: shards_for(s) for name, s in PRESETS.items()} == {
        "paper": 6, "obj": 9, "attr": 9, "rel": 9, "wh": 9, "negative-only": 6, "positive-only": 6, "all-queries": 6}
    assert shards_for(Selection(("obj",), QUERIES, "pon", 160_000)) == 18  # why a subset takes both queries
    assert shards_for(replace(PRESETS["obj"], max_tuples=None)) is None


def synthetic_pool(shards: int, selection: Selection) -> list[str]:
    """The selectable tuple ids of ``shards`` synthetic shards (every image gives its 8 candidates)."""
    plan = {"obj": PhrasePlan("obj", "", ("a ball", "a box"), 0), "attr": PhrasePlan("attr", "the ball", ("a red color",), 0),
            "rel": PhrasePlan("rel", "the ball", ("left of the box",), 0)}
    phrases = {kind: Phrase(p, "a kite" if kind == "obj" else "a blue color" if kind == "attr" else "above the box")
               for kind, p in plan.items()}
    ids = []
    for n in range(shards * IMAGES_PER_SHARD):
        image = f"s{n // IMAGES_PER_SHARD}-{n}"
        ids += preselect(candidate_tuples(phrases, WH, image, 0), image, selection, 0)
    return ids


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_reaches_its_target_on_its_shards_and_says_when_short(name):
    selection = replace(PRESETS[name], max_tuples=PAPER_MAX_TUPLES // SCALE)
    shards = shards_for(selection, per_shard=IMAGES_PER_SHARD * 8)
    assert shards == shards_for(PRESETS[name])  # the same count as at full scale
    pool = synthetic_pool(shards, selection)
    chosen = subsample(pool, selection.max_tuples, 0)
    assert len(chosen) == selection.max_tuples == 1_600
    size = target_size(selection.max_tuples, len(pool), shards)
    assert size["reached"] and size["shards_needed"] <= shards
    if shards > 6:  # above the paper's 6: one shard fewer falls short, and says how many it needs
        pool = synthetic_pool(shards - 1, selection)
        size = target_size(selection.max_tuples, len(pool), shards - 1)
        assert not size["reached"] and len(subsample(pool, selection.max_tuples, 0)) == len(pool) < 1_600
        assert size["shards_needed"] == shards
        assert short_text(size) == (f"{len(pool):,} of 1,600 tuples (reached vs target) from {shards - 1} source "
                                    f"shard(s); at the yield this build measured ({IMAGES_PER_SHARD * 2:g} selectable "
                                    f"tuples per shard) it needs about {shards} shards (download_source(..., "
                                    "files=N)), or a smaller --max-tuples")


def test_target_size_without_a_cap_or_a_yield():
    assert target_size(None, 10, 1.0) is None
    empty = target_size(100, 0, 2.0)
    assert empty["reached"] is False and empty["shards_needed"] is None
    assert "it needs a source that yields tuples" in short_text(empty)
    assert target_size(100, 250, 0.5) == {"tuples": 100, "reached": True, "selectable": 250, "shards_read": 0.5,
                                          "tuples_per_shard": 500.0, "shards_needed": 1}
