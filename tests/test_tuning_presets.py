"""``finer build tuning`` as a user runs it: the paper's templates by default (``--templates ours``
as an option), and presets that reach their target or say, in one warning line, that they do not."""

from __future__ import annotations

import json

import pytest

from finer_datasets.preference.templates import PAPER_TEMPLATES, TEMPLATES
from test_tuning_build import records
from test_tuning_category import finer


def built(out, *options):
    run = finer("build", "tuning", "--sample", "--out", out, "--no-progress", *options)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING")]
    return json.loads((out / "manifest.json").read_text()), (out / "README.md").read_text(), warnings


def questions(folder, texts):
    """Every templated tuple's question, checked against one of ``texts`` (Template tuples)."""
    found = 0
    for record in records(folder):
        phrases = {p["type"]: p for p in record["phrases"]}
        for t in record["tuples"]:
            if t["type"] == "wh":
                continue
            wording = texts[t["type"]][t["template"] - 1]
            x = phrases[t["type"]]["positive" if t["query"] == "positive" else "negative"]
            assert t["question"] == wording.question.format(X=x)
            found += 1
    return found


def differences_of(card):
    return card.split("## Differences from the paper\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "tuning-sample"
    return out, *built(out)


def test_the_default_build_uses_appendix_g_and_warns_once_that_it_is_small(default):
    out, manifest, card, warnings = default
    assert manifest["provenance"]["selection"]["templates"] == "paper"
    assert manifest["builder"]["options"]["templates"] == "paper"
    assert questions(out, TEMPLATES["paper"]) == 90
    assert {t["template"] for r in records(out) for t in r["tuples"] if t["type"] != "wh"} == {1, 2, 3, 4, 5}
    assert warnings == ["WARNING finer_datasets.builders.tuning.builder: preset paper is short of its target: 120 of "
                        "160,000 tuples (reached vs target) from 2 source shard(s); at the yield this build measured "
                        "(60 selectable tuples per shard) it needs about 2,667 shards (download_source(..., files=N)), "
                        "or a smaller --max-tuples"]
    assert manifest["counts"]["tuples"]["target"] == {"tuples": 160_000, "reached": False, "selectable": 120,
                                                      "shards_read": 2, "tuples_per_shard": 60.0, "shards_needed": 2667}
    assert manifest["provenance"]["selection"]["shards_at_paper_yield"] == 6
    assert "- Size: **short of the target**: 120 of 160,000 tuples" in card
    assert "this selection needs 6 shards" in card and '"Can {X} be seen in this image?"' in card
    differences = differences_of(card)
    assert "the paper used Phi-4-14B" in differences and "**Image categories**" not in differences
    assert "**Size**: 120 tuples, short of the 160,000" in differences and "**Templates**" not in differences


def test_a_preset_that_reaches_its_target_says_so_and_does_not_warn(tmp_path):
    manifest, card, warnings = built(tmp_path / "tuning-obj", "--preset", "obj", "--max-tuples", "50")
    assert warnings == []
    tuples = [t for r in records(tmp_path / "tuning-obj") for t in r["tuples"]]
    assert len(tuples) == 50 and {t["type"] for t in tuples} == {"obj"} and {t["query"] for t in tuples} == {
        "positive", "negative"}
    assert manifest["counts"]["tuples"]["target"] == {"tuples": 50, "reached": True, "selectable": 60,
                                                      "shards_read": 2, "tuples_per_shard": 30.0, "shards_needed": 2}
    assert "- Size: the 50-tuple target is reached (60 selectable tuples from 2 source shard(s)" in card
    assert "a custom selection" in card  # the preset's cap was overridden
    manifest, card, _ = built(tmp_path / "tuning-wh", "--preset", "wh")
    assert manifest["provenance"]["selection"]["shards_at_paper_yield"] == 9
    assert "160K tuples of wh only (Table 5" in card and "this selection needs 9 shards" in card


def test_our_templates_are_an_option_recorded_in_the_manifest_and_card(default, tmp_path):
    manifest, card, _ = built(tmp_path / "tuning-ours", "--templates", "ours")
    assert manifest["builder"]["options"]["templates"] == manifest["provenance"]["selection"]["templates"] == "ours"
    assert questions(tmp_path / "tuning-ours", TEMPLATES["ours"]) == 90
    for record in records(tmp_path / "tuning-ours"):
        for t in record["tuples"]:
            paper = {p.question.format(X=ph[side]) for p in PAPER_TEMPLATES for ph in record["phrases"]
                     for side in ("positive", "negative")}
            assert t["question"] not in paper and not t["chosen"].startswith(("Yes, this image", "No, but this image"))
    assert "**our own fifteen**" in card and "- **Templates**: `ours`, not the paper's five" in differences_of(card)
    assert "--templates ours" in card  # the recorded command
    out, *_ = default  # the same phrases and draws, only the wording differs
    assert [t["template"] for r in records(out) for t in r["tuples"]] == \
        [t["template"] for r in records(tmp_path / "tuning-ours") for t in r["tuples"]]
