"""Position rotation (paper, appendix E.1): every k = 3 yes/no pair with its negative at position 1, 2
and 3 -- the same three elements, each negated once -- derived from the per-image records.

A FINER pair negates one element chosen at random; whether a model's answer depends on *where* the
wrong element sits is the positional-bias study of E.1. For every ``multi_obj``, ``multi_attr`` and
``multi_rel`` pair with exactly three elements, :func:`rotated_pairs` gives three pairs (pair id
``<pair_id>_p<position>``, questions ``<pair_id>_p<position>_pos`` / ``_neg``, position counted from 1):

* at the pair's own negated position, the pair itself (its questions and options unchanged);
* at each other position, a pair built exactly as the builders build one
  (:func:`~finer_datasets.mcq.construct.yesno_pair`) from the same three elements and the 4 negatives
  the record's scene graph stores for the element at that position, drawing from
  ``random.Random("positions:<pair id>:<position>")`` (no build seed needed: the ids and the
  questions are functions of the record alone, so a view and ``finer score --view positions`` agree).

So the three negatives of a pair differ from its positive only at the rotated element. A pair whose
elements the scene graph does not give back (a build imported from the authors' release, which has
no scene graph), or whose rotation would repeat an option, yields no rotation (all or nothing).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, Iterable, Mapping, Sequence

from finer_datasets.core.text import join_list
from finer_datasets.mcq.construct import QUESTION_TEMPLATE, yesno_pair
from finer_datasets.mcq.ladder import _attributes, _full
from finer_datasets.mcq.pairs import _prefixed
from finer_datasets.mcq.records import QUESTION_COLUMNS, pair_rows, question_rows
from finer_datasets.scene_graph.graph import relation_phrase

__all__ = ["ROTATED_SETTINGS", "ROTATED_K", "POSITION_COLUMNS", "rotated_pairs", "position_rows", "position_pair_records"]

logger = logging.getLogger(__name__)

#: the settings whose k = 3 pairs are rotated (E.1), and that k
ROTATED_SETTINGS = ("multi_obj", "multi_attr", "multi_rel")
ROTATED_K = 3
#: the columns of ``load_finer(..., "positions")``: a question row and the pair it was rotated from
POSITION_COLUMNS = (*QUESTION_COLUMNS, "rotated_from")

Negatives = list[tuple[str, ...]]
Render = Callable[[list[str]], str]


def _candidates(graph: Mapping[str, Any], setting: str, elements: Sequence[str]) -> Iterable[tuple[Render, Negatives]]:
    """Ways the scene graph can render the pair's elements, each with their negatives."""
    objects = graph.get("objects") or []
    by_id = {o["id"]: o for o in objects}
    if setting == "multi_obj":
        first: dict[str, Mapping[str, Any]] = {}
        for obj in objects:
            if _full(obj):
                first.setdefault(obj["name"].lower(), obj)
        found = [first.get(e.lower()) for e in elements]
        if all(found):
            yield join_list, [tuple(o["negatives"]) for o in found]
        return
    for obj in objects:
        if setting == "multi_attr":
            texts = {a["text"]: tuple(a["negatives"]) for a in _attributes(obj)}
            if all(e in texts for e in elements):
                yield _prefixed(f"the {obj['name']}"), [texts[e] for e in elements]
        else:  # multi_rel: the subject's relations, as the question phrases them
            phrases = {}
            for rel in graph.get("relations") or []:
                if rel["subject"] == obj["id"] and _full(rel) and rel["object"] in by_id:
                    target = by_id[rel["object"]]["name"]
                    phrases.setdefault(relation_phrase(rel["predicate"], target),
                                       tuple(relation_phrase(p, target) for p in rel["negatives"]))
            if all(e in phrases for e in elements):
                yield _prefixed(f"the {obj['name']}"), [phrases[e] for e in elements]


def _renamed(question: Mapping[str, Any], question_id: str) -> dict[str, Any]:
    return {**question, "question_id": question_id}


def _rotations(record: Mapping[str, Any], pair: Mapping[str, Any]) -> list[dict[str, Any]]:
    elements = list(pair["elements"])
    if len(elements) != ROTATED_K or pair.get("negated_index") is None:
        return []
    positive = pair["positive"]["question"]
    for render, negatives in _candidates(record.get("scene_graph") or {}, pair["setting"], elements):
        if QUESTION_TEMPLATE.format(X=render(elements)) != positive:
            continue  # not the rendering the question was asked with
        rotated = []
        for index in range(ROTATED_K):
            pair_id = f"{pair['pair_id']}_p{index + 1}"
            if index == pair["negated_index"]:
                built = {**pair, "positive": _renamed(pair["positive"], f"{pair_id}_pos"),
                         "negative": _renamed(pair["negative"], f"{pair_id}_neg")}
            else:
                try:
                    made = yesno_pair(pair_id, pair["setting"], elements, index, negatives[index],
                                      random.Random(f"positions:{pair['pair_id']}:{index + 1}"), render=render)
                except ValueError as exc:
                    logger.info("%s: no rotation (%s)", pair["pair_id"], exc)
                    return []
                built = {**pair, **made.to_dict()}
            rotated.append({**built, "pair_id": pair_id, "rotated_from": pair["pair_id"]})
        return rotated
    return []


def rotated_pairs(record: Mapping[str, Any], settings: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The rotated pairs of one per-image record (pair records as
    :func:`~finer_datasets.mcq.records.pair_rows` gives them, plus ``rotated_from``), three per
    k = 3 pair of :data:`ROTATED_SETTINGS` (or of ``settings`` among them), in pair-id order."""
    chosen = [s for s in ROTATED_SETTINGS if settings is None or s in set(settings)]
    if "pairs" not in record:  # builder 1.x: one pair per sample, no scene graph
        return []
    return [rotation for pair in pair_rows(record, chosen) for rotation in _rotations(record, pair)]


def position_rows(record: Mapping[str, Any], settings: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The rows of ``load_finer(..., "positions")``: the questions of the rotated pairs
    (:data:`POSITION_COLUMNS`), positive then negative of each."""
    return [{**row, "rotated_from": pair["rotated_from"]} for pair in rotated_pairs(record, settings)
            for row in question_rows(pair)]


def position_pair_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rotated pairs of every per-image record (what ``finer score --view positions`` scores)."""
    return [pair for record in records for pair in rotated_pairs(record)]
