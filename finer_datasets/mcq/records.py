"""Per-image MCQ records and the one flatten: per-image -> pairs -> questions.

A FINER benchmark stores one WebDataset sample per image (``mcq_image.schema.json``): the image
once, its scene graph, and every pair about it. Readers want flat rows; these pure functions give
them, and every other place (loaders, scoring, exports, lmms-eval tasks) goes through them:

* :func:`pair_rows` -- a per-image record -> the pair records of builder 1.x (``pair_id``,
  ``dataset``, ``image_id``, ``image_file``, ``setting``, ``k``, ..., ``positive``, ``negative``);
* :func:`question_rows` -- a pair record -> its two questions, positive then negative
  (:data:`QUESTION_COLUMNS`; ``image_filename`` / ``subset`` / ``qtype`` follow FINER's release).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from finer_datasets.constants import LETTERS
from finer_datasets.core.validation import schema_path

__all__ = ["SCHEMA", "image_record", "pair_rows", "question_rows", "QUESTION_COLUMNS", "OFFICIAL_SUBSETS",
           "POLARITIES"]

SCHEMA = schema_path("mcq_image")

#: per-question columns, in order
QUESTION_COLUMNS = (
    "image_id", "image_file", "image_filename", "pair_id", "question_id", "setting", "subset", "qtype", "polarity", "k",
    "negated_index", "question", "options", "option_types", "answer", "gt_index",
)
#: our setting name -> the split name of FINER's official release
OFFICIAL_SUBSETS = {"multi_obj": "multi_object", "multi_attr": "multi_attribute", "multi_rel": "multi_relation",
                    "wh": "wh"}
POLARITIES = (("positive", "pos"), ("negative", "neg"))
_IMAGE_FIELDS = ("dataset", "image_id", "image_file")


def image_record(*, dataset: str, image_id: str, image_file: str, scene_graph: Mapping[str, Any],
                 pairs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``json`` member of one image's sample (pairs without the image fields, sorted by id)."""
    return {
        "dataset": dataset,
        "image_id": image_id,
        "image_file": image_file,
        "scene_graph": {"objects": list(scene_graph["objects"]), "relations": list(scene_graph["relations"])},
        "pairs": sorted((dict(p) for p in pairs), key=lambda p: p["pair_id"]),
    }


def pair_rows(record: Mapping[str, Any], settings: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The pair records of one per-image record (optionally only ``settings``), each carrying
    ``dataset``, ``image_id`` and ``image_file``. A 1.x pair record is returned as it is."""
    if "pairs" not in record:  # builder 1.x: one sample per pair
        rows = [dict(record)]
    else:
        image = {k: record[k] for k in _IMAGE_FIELDS}
        rows = [{**image, **pair} for pair in record["pairs"]]
    if settings is not None:
        wanted = set(settings)
        rows = [r for r in rows if r["setting"] in wanted]
    return rows


def question_rows(pair: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The two questions of a pair record as flat rows (:data:`QUESTION_COLUMNS`), positive first."""
    rows = []
    for polarity, short in POLARITIES:
        q = pair[polarity]
        rows.append({
            "image_id": pair["image_id"],
            "image_file": pair["image_file"],
            "image_filename": pair["image_file"],
            "pair_id": pair["pair_id"],
            "question_id": q["question_id"],
            "setting": pair["setting"],
            "subset": OFFICIAL_SUBSETS.get(pair["setting"], pair["setting"]),
            "qtype": f"{pair['setting']}_{short}",
            "polarity": short,
            "k": pair["k"],
            "negated_index": pair["negated_index"],
            "question": q["question"],
            "options": list(q["options"]),
            "option_types": list(q["option_types"]),
            "answer": q["answer"],
            "gt_index": LETTERS.index(q["answer"]),
        })
    return rows
