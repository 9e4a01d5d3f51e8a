"""Named selections of FINER-Tuning: the paper's training set and its ablations.

Every preset selects from the same candidate tuples, so a build with another preset needs no new
model call: ``finer build tuning --preset obj --replay transcript.jsonl`` rebuilds from the
transcript of the main build (and its image cache) in minutes. The SFT ablation (Table 4, "SFT")
uses the ``paper`` selection with only the chosen answers (:func:`~.records.sft_rows`).

=================  =========================================================  ====================
preset             selection                                                   paper
=================  =========================================================  ====================
``paper``          all types, per image and type the positive or the          FINER-Tuning
                   negative query ("pon"), at most 160K tuples
``obj`` ...        one type only (``obj``, ``attr``, ``rel``, ``wh``),        Table 5 (subsets)
                   "pon", at most 160K
``negative-only``  negative queries only, at most 160K                        Table 4 (DPO, Neg)
``positive-only``  positive queries only, at most 160K                        (symmetric control)
``all-queries``    both queries of every type, at most 160K                   ("all" sampling)
=================  =========================================================  ====================
"""

from __future__ import annotations

from finer_datasets.preference.construct import TYPES, Selection

__all__ = ["PRESETS", "DEFAULT_PRESET", "PAPER_MAX_TUPLES", "VALIDATION_RATIO"]

#: tuples used to train InternVL-3.5 (paper, appendix C and Table 10)
PAPER_MAX_TUPLES = 160_000
#: share of the data reserved for validation (Table 10, "Val. ratio")
VALIDATION_RATIO = 0.005
DEFAULT_PRESET = "paper"

PRESETS: dict[str, Selection] = {
    "paper": Selection(TYPES, ("positive", "negative"), "pon", PAPER_MAX_TUPLES),
    **{kind: Selection((kind,), ("positive", "negative"), "pon", PAPER_MAX_TUPLES) for kind in TYPES},
    "negative-only": Selection(TYPES, ("negative",), "pon", PAPER_MAX_TUPLES),
    "positive-only": Selection(TYPES, ("positive",), "pon", PAPER_MAX_TUPLES),
    "all-queries": Selection(TYPES, ("positive", "negative"), "all", PAPER_MAX_TUPLES),
}
