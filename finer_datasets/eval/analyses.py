"""The report's parts for the paper's analyses beyond Table 1, added only when a result has them
(every other report stays byte for byte what it was):

* the **granularity ladder** (section 1 with Fig. 1; appendix E.7 with Fig. 12): a result whose
  blocks have ``by_level`` (pairs of a FINER-Ladder build) gets, per setting, a table of paired,
  positive and negative accuracy and FP / FN rate per level, and the plots ``accuracy_by_level.png``
  and ``fp_fn_by_level.png``;
* **position rotation** (appendix E.1): a result of ``finer score --view positions`` (``view``:
  ``positions``) gets paired accuracy per position of the negated element with 95% intervals and
  ``accuracy_by_position.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from finer_datasets.eval.intervals import WILSON
from finer_datasets.eval.plots import int_keys, plot_accuracy_by_level, plot_accuracy_by_position, plot_fp_fn_by_level

__all__ = ["has_levels", "is_positions", "analysis_intervals", "analysis_sections", "analysis_plots", "LEVEL_FILES",
           "POSITION_FILES", "POSITIONS_VIEW"]

LEVEL_FILES = ("accuracy_by_level.png", "fp_fn_by_level.png")
POSITION_FILES = ("accuracy_by_position.png",)
#: the ``view`` of a result scored on the rotated pairs (``finer score --view positions``)
POSITIONS_VIEW = "positions"


def has_levels(result: Mapping[str, Any]) -> bool:
    return any(block.get("by_level") for block in (result.get("settings") or {}).values())


def is_positions(result: Mapping[str, Any]) -> bool:
    return result.get("view") == POSITIONS_VIEW


def analysis_intervals(result: Mapping[str, Any]) -> dict[str, str]:
    return {"by_level.ci95": WILSON} if has_levels(result) else {}


def _level_lines(result: Mapping[str, Any]) -> list[str]:
    from finer_datasets.eval.report import _ci, _fmt, _table

    lines = ["", "## Granularity ladder: accuracy by level (paper, Fig. 1 and 12)", "",
             "Level n adds one element to level n-1's true description and replaces it by a negative (the dataset "
             "card defines the seven levels). Negative acc. is the share of negative questions answered right, the "
             "accuracy of Fig. 1 (`yesno`: the answer is always No) and of Fig. 12, left (`mcq`); FP and FN rates per "
             f"level are Fig. 12, right. 95% CI: {WILSON}. The random baselines above come from each pair's own options: "
             "25% for a `yesno` pair (two options each)."]
    for name, block in (result.get("settings") or {}).items():
        groups = int_keys(block.get("by_level"))
        if not groups:
            continue
        lines += ["", f"### `{name}`", ""]
        lines += _table(["Level", "Pairs", "Paired acc.", "95% CI", "Positive acc.", "Negative acc.", "FP rate", "FN rate"],
                        ["---:", "---:", "---:", "---", "---:", "---:", "---:", "---:"],
                        [[str(level), str(g["n_pairs"]), _fmt(g["paired_accuracy"]), _ci(g), _fmt(g["positive_accuracy"]),
                          _fmt(g["negative_accuracy"]), _fmt(g["false_positive_rate"], none="n/a"),
                          _fmt(g["false_negative_rate"], none="n/a")] for level, g in groups])
    return lines


def _position_lines(result: Mapping[str, Any]) -> list[str]:
    from finer_datasets.eval.report import _ci, _fmt, _positions, _table

    settings = result.get("settings") or {}
    positions = sorted({p for block in settings.values() for p in _positions(block)})
    rows = [[str(p), *(f"{_fmt(g['paired_accuracy'])} [{_ci(g)}] (n={g['n_pairs']})" if g else "–"
                       for g in (_positions(block).get(p) for block in settings.values()))] for p in positions]
    return ["", "## Positional bias: paired accuracy by position of the negative (paper, E.1)", "",
            "Every k = 3 pair of `multi_obj`, `multi_attr` and `multi_rel` asked three times, its negative rotated "
            "through positions 1, 2 and 3 (`load_finer(..., \"positions\")`); the same three elements each time, so "
            f"a curve that is not flat is positional bias. Cells: paired accuracy [95% {WILSON}] (n = pairs).", "",
            *_table(["Position", *settings], ["---:", *("---:" for _ in settings)], rows)]


def analysis_sections(result: Mapping[str, Any], *, plots: bool = True) -> list[str]:
    """The Markdown lines of the analyses ``result`` has (none for an ordinary result)."""
    lines = _level_lines(result) if has_levels(result) else []
    if is_positions(result):
        lines += _position_lines(result)
    if plots and lines:
        images = ([("Accuracy by level", LEVEL_FILES[0]), ("FP and FN rates by level", LEVEL_FILES[1])]
                  if has_levels(result) else []) + ([("Paired accuracy by position", POSITION_FILES[0])]
                                                    if is_positions(result) else [])
        for alt, name in images:
            lines += ["", f"![{alt}]({name})"]
    return lines


def analysis_plots(result: Mapping[str, Any], out: Path) -> list[Path]:
    """Draw the analyses' plots into ``out``; their paths (none for an ordinary result)."""
    written = []
    if has_levels(result):
        written += [plot_accuracy_by_level(result, out / LEVEL_FILES[0]), plot_fp_fn_by_level(result, out / LEVEL_FILES[1])]
    if is_positions(result):
        written.append(plot_accuracy_by_position(result, out / POSITION_FILES[0]))
    return written
