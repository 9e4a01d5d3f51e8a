"""What the paper reports about a FINER benchmark, and the card tables that set a build beside it.

A builder declares a :class:`PaperStats` (``SceneGraphMCQBuilder.paper``); the build copies it into
``manifest.json`` (``counts.paper``) and the card shows, from the manifest alone, three tables:
pairs and MCQs per setting, pairs per setting and k (with each k's share of its setting, so that a
small build's *shape* compares with the paper's), and scene-graph sizes (total and per image).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from finer_datasets.constants import SETTINGS

__all__ = ["PaperStats", "element_rows", "k_rows", "setting_rows"]

_ELEMENTS = ("objects", "attributes", "relations")


@dataclass(frozen=True)
class PaperStats:
    """The paper's numbers for one benchmark: Table 9 (pairs per k, in k order from 1; ``wh`` one
    number), section 2.1 (MCQs per setting) and Table 7 (scene-graph elements) on ``images``."""

    images: int
    pairs_by_k: Mapping[str, tuple[int, ...]]
    mcqs: Mapping[str, int]
    scene_graph: Mapping[str, int] = field(default_factory=dict)

    def to_counts(self) -> dict[str, Any]:
        """The ``counts.paper`` block of a manifest (JSON: k as strings, ``-`` for ``wh``)."""
        return {"images": self.images, "mcqs": dict(self.mcqs),
                "pairs_by_k": {s: {str(k + 1): n for k, n in enumerate(v)} if s != "wh" else {"-": v[0]}
                               for s, v in self.pairs_by_k.items()},
                "scene_graph": dict(self.scene_graph)}


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def setting_rows(counts: dict[str, Any]) -> str:
    """``| setting | pairs | MCQs | pairs (paper) | MCQs (paper) |`` rows."""
    paper = counts["paper"]
    rows = []
    for setting in SETTINGS:
        ours = counts["pairs"][setting]
        theirs = sum(paper["pairs_by_k"][setting].values())
        rows.append(f"| `{setting}` | {_n(ours)} | {_n(2 * ours)} | {_n(theirs)} | {_n(paper['mcqs'][setting])} |")
    return "\n".join(rows)


def k_rows(counts: dict[str, Any]) -> str:
    """``| setting | k | pairs | share | pairs (paper) | share (paper) |`` rows, one per k either
    side has (``wh``: one row, ``-``)."""
    paper = counts["paper"]["pairs_by_k"]
    rows = []
    for setting in SETTINGS:
        ours, theirs = counts["pairs_by_k"][setting], paper[setting]
        our_total, their_total = counts["pairs"][setting], sum(theirs.values())
        if setting == "wh":
            rows.append(f"| `wh` | - | {_n(our_total)} | - | {_n(their_total)} | - |")
            continue
        for k in sorted({int(k) for k in (*ours, *theirs)}):
            mine, paper_k = ours.get(str(k), 0), theirs.get(str(k), 0)
            rows.append(f"| `{setting}` | {k} | {_n(mine)} | {_share(mine, our_total)} | {_n(paper_k)} | "
                        f"{_share(paper_k, their_total)} |")
    return "\n".join(rows)


def element_rows(counts: dict[str, Any]) -> str:
    """``| element | count | per image | count (paper) | per image (paper) |`` rows."""
    paper, images = counts["paper"], counts["images"]
    rows = []
    for element in _ELEMENTS:
        ours, theirs = counts[element], paper["scene_graph"].get(element)
        rows.append(f"| {element} | {_n(ours)} | {ours / images if images else 0:.2f} | {_n(theirs)} | "
                    f"{theirs / paper['images']:.2f} |")
    return "\n".join(rows)
