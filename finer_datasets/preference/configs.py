"""Named selections of FINER-Tuning: the paper's training set and its ablations, with their sizes.

Every preset selects from the same candidate tuples, so a build with another preset needs no new
model call: ``finer build tuning --preset obj --replay transcript.jsonl`` rebuilds from the
transcript of the main build (and its image cache) in minutes, as long as that build read enough
Pixmo-cap shards for the preset (the ``shards`` column). The SFT ablation (Table 4, "SFT") uses the
``paper`` selection with only the chosen answers (:func:`~.records.sft_rows`), its negative-query
variant ``negative-only``.

=================  ====================================================  ======  ======================
preset             selection (every preset: at most 160K, the target)    shards  paper
=================  ====================================================  ======  ======================
``paper``          all types; per image and type the positive or the       6     FINER-Tuning (Table 10:
                   negative query ("pon")                                        160K for InternVL3.5)
``obj`` ...        one type (``obj``, ``attr``, ``rel``, ``wh``), both     9     Table 5 (subsets,
                   queries of every image ("all")                                160K each)
``negative-only``  negative queries of every type                          6     Table 4 (DPO/SFT, Neg)
``positive-only``  positive queries of every type                          6     (symmetric control)
``all-queries``    both queries of every type                              6     ("all" sampling)
=================  ====================================================  ======  ======================

Sizes. The paper's yield (appendix C): the first 6 Pixmo-cap shards give about 440K candidate
tuples (about 57K images, up to 8 tuples each), about 73K per shard (:data:`CANDIDATES_PER_SHARD`),
a quarter of them per type and half of them per query polarity. A preset's ``shards`` is the
number of shards (``download_source("pixmo-cap", files=N)``) whose candidates, at that yield,
hold its 160K target, and never fewer than the paper's 6 (:func:`shards_for`):

* ``paper``, ``negative-only``, ``positive-only``: half the candidates, about 36.7K per shard, so
  5 shards would do; the paper used 6. ``all-queries``: every candidate, 3 would do;
* a Table 5 subset: one type with both queries (FINER-Tuning trains on both, section 4.6), about
  18.3K per shard: 9 shards. With "pon" (one tuple per image and type) a subset could not pass
  about 57K tuples on the paper's 6 shards (it would need 18), and a subset taken from the
  default build holds about 40K of its 160K.

Dead image URLs and unusable model answers lower the yield. A build whose selection holds fewer
tuples than its target says so (one warning line, ``counts.tuples.target`` in the manifest and the
card), with the yield it measured and the number of shards that yield needs.
"""

from __future__ import annotations

import math
from typing import Any

from finer_datasets.preference.construct import QUERIES, TYPES, Selection

__all__ = ["PRESETS", "DEFAULT_PRESET", "PAPER_MAX_TUPLES", "VALIDATION_RATIO", "PAPER_SHARDS", "PAPER_CANDIDATES",
           "CANDIDATES_PER_SHARD", "PAPER_SIZES", "candidate_share", "shards_for", "target_size", "short_text"]

#: tuples used to train InternVL-3.5 (paper, appendix C and Table 10), the target of every preset
PAPER_MAX_TUPLES = 160_000
#: share of the data reserved for validation (Table 10, "Val. ratio")
VALIDATION_RATIO = 0.005
DEFAULT_PRESET = "paper"
#: Pixmo-cap shards of the paper's training set and their candidate tuples (appendix C)
PAPER_SHARDS = 6
PAPER_CANDIDATES = 440_000
CANDIDATES_PER_SHARD = PAPER_CANDIDATES / PAPER_SHARDS

PRESETS: dict[str, Selection] = {
    "paper": Selection(TYPES, QUERIES, "pon", PAPER_MAX_TUPLES),
    **{kind: Selection((kind,), QUERIES, "all", PAPER_MAX_TUPLES) for kind in TYPES},
    "negative-only": Selection(TYPES, ("negative",), "pon", PAPER_MAX_TUPLES),
    "positive-only": Selection(TYPES, ("positive",), "pon", PAPER_MAX_TUPLES),
    "all-queries": Selection(TYPES, QUERIES, "all", PAPER_MAX_TUPLES),
}

#: what the paper trained on with each preset's selection (for the card)
PAPER_SIZES: dict[str, str] = {
    "paper": "160K tuples for InternVL3.5-8B/14B (120K Qwen2.5-VL, 40K LLaVA-1.6: Table 10, subsampled at training)",
    **{kind: f"160K tuples of {kind} only (Table 5, total fixed at 160K)" for kind in TYPES},
    "negative-only": "160K negative-query tuples (Table 4, DPO and SFT with negative queries)",
    "positive-only": "no such run in the paper (symmetric control)",
    "all-queries": "no such run in the paper (both queries of every type)",
}


def candidate_share(selection: Selection) -> float:
    """The share of all candidate tuples the selection can keep (types x query polarities)."""
    per_type = 1.0 if selection.sampling == "all" and len(selection.queries) == 2 else 0.5
    return len(selection.types) / len(TYPES) * per_type


def shards_for(selection: Selection, per_shard: float = CANDIDATES_PER_SHARD) -> int | None:
    """Pixmo-cap shards whose candidates hold the selection's target at ``per_shard`` candidates
    per shard (default: the paper's yield), never fewer than the paper's 6; ``None`` without a cap."""
    if selection.max_tuples is None:
        return None
    return max(PAPER_SHARDS, math.ceil(selection.max_tuples / (per_shard * candidate_share(selection))))


def target_size(target: int | None, selectable: int, shards_read: float) -> dict[str, Any] | None:
    """How a build's selection compares with its ``target`` (``None`` without one): the tuples it
    could select, whether they reach the target, the source shards it read, the yield it measured
    (selectable tuples per shard) and the shards that yield needs for the target (``None`` when it
    measured no yield)."""
    if target is None:
        return None
    per_shard = selectable / shards_read if shards_read > 0 else 0.0
    return {"tuples": target, "reached": selectable >= target, "selectable": selectable,
            "shards_read": round(shards_read, 3), "tuples_per_shard": round(per_shard, 1),
            "shards_needed": math.ceil(target / per_shard) if per_shard > 0 else None}


def short_text(size: dict[str, Any]) -> str:
    """One line on a target not reached (:func:`target_size`): the build's warning, the card's line."""
    need = (f"at the yield this build measured ({size['tuples_per_shard']:,g} selectable tuples per shard) it needs "
            f"about {size['shards_needed']:,} shards (download_source(..., files=N))" if size["shards_needed"]
            else "it needs a source that yields tuples")
    return (f"{size['selectable']:,} of {size['tuples']:,} tuples (reached vs target) from {size['shards_read']:g} "
            f"source shard(s); {need}, or a smaller --max-tuples")
