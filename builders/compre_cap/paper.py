"""The paper's numbers for FINER-CompreCap, shown beside a build's in its card.

Table 9 (pairs per k), section 2.1 (6,300 / 3,338 / 4,280 / 3,166 MCQs: exactly twice Table 9's
pairs) and Table 7 (C-SG: 3,505 objects, 4,509 attributes, 3,494 relations) on CompreCap's 560
images. Table 9's ``multi_obj`` row (560, 560, 560, 558, 535, 377: images with at least k objects)
is the ``per-k`` sampling this builder uses by default.
"""

from __future__ import annotations

from finer_datasets.mcq.paper import PaperStats

__all__ = ["PAPER"]

PAPER = PaperStats(
    images=560,
    pairs_by_k={"multi_obj": (560, 560, 560, 558, 535, 377), "multi_attr": (966, 472, 231),
                "multi_rel": (1217, 616, 307), "wh": (1583,)},
    mcqs={"multi_obj": 6_300, "multi_attr": 3_338, "multi_rel": 4_280, "wh": 3_166},
    scene_graph={"objects": 3_505, "attributes": 4_509, "relations": 3_494},
)
