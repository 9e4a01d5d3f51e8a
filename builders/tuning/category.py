"""The image-category filter of FINER-Tuning (paper, appendix E.2 and Table 11), off by default.

Pixmo-cap holds screenshots, charts and documents besides natural images. The paper had its LLM
sort every caption into four classes (Table 11 on Pixmo-cap: natural_image 78.13%, screenshot_ui
16.21%, chart_graph 3.56%, document_text 2.09%), trained once on natural images only (Table 12)
and found almost no difference, so its release keeps every image. ``--image-category`` does the
same here: one prompt per caption (``prompts/tuning_category``), asked before any image is
downloaded; rows of the classes not kept are skipped by policy (``image_category`` in
``build_report.json``), the counts per class go to the manifest (``counts.image_category``) and
the card. Like every model answer, the classes go through the transcript: a killed build never
asks for a class twice, and ``--replay`` reproduces the filter with no model.
"""

from __future__ import annotations

from typing import Any, Sequence

from finer_datasets.llm.stages import gather

from .source import Row, prompt_caption
from .stage import AskingStage, Checked

__all__ = ["CATEGORIES", "DEFAULT_KEEP", "PAPER_SHARES", "ImageCategories", "check_category", "TASK"]

#: the classes of appendix E.2, in Table 11's order
CATEGORIES = ("natural_image", "screenshot_ui", "chart_graph", "document_text")
#: the classes the paper kept when it filtered (Table 12, "Filtered? Yes": natural images only)
DEFAULT_KEEP = ("natural_image",)
#: Table 11: share of Pixmo-cap captions per class (percent), for the card's comparison
PAPER_SHARES = {"natural_image": 78.13, "screenshot_ui": 16.21, "chart_graph": 3.56, "document_text": 2.09}
TASK = "tuning_category"


def check_category(value: Any) -> Checked:
    """The class of an answer ``{"category": "..."}`` (case, spaces and hyphens forgiven) or the problem."""
    raw = value.get("category") if isinstance(value, dict) else None
    if not isinstance(raw, str):
        return None, 'expected {"category": "..."}'
    name = "_".join(raw.strip().lower().replace("-", " ").split())
    name = {"natural_images": "natural_image", "natural": "natural_image"}.get(name, name)
    if name not in CATEGORIES:
        return None, f'"{raw}" is not one of {", ".join(CATEGORIES)}'
    return name, None


class ImageCategories(AskingStage):
    """The stage (``llm_stages = {..., "category": ImageCategories}``); asked only with ``--image-category``."""

    label = "image categories (appendix E.2, asked only with --image-category)"
    tasks = (TASK,)

    def run(self, rows: Sequence[Row]) -> dict[str, Checked]:
        """``(class, None)`` or ``(None, problem)`` per row key, asked concurrently."""
        self.images += len(rows)

        def ask(row: Row) -> Any:
            return self._ask(TASK, {"caption": prompt_caption(row.caption)[0]}, check_category,
                             f"category {row.rel} row {row.row}")

        results = self.client.run(gather([ask(r) for r in rows], "LLM image categories"))
        return {row.key: result for row, result in zip(rows, results)}

    def report(self) -> dict[str, Any]:
        """For the manifest's ``llm`` block (nothing when no caption was classified)."""
        if not self.images:
            return {}
        return {"tuning_category": {"images": self.images, "reasks": dict(sorted(self.reasks.items())),
                                    "unusable": dict(sorted(self.unusable.items()))}}

    def card_text(self) -> str:
        if not self.images:
            return ""
        return f"; {self.images} captions classified by image category, {sum(self.unusable.values())} without a usable answer"
