"""The granularity ladder (paper, section 1 with Fig. 1; appendix E.7 with Fig. 12): seven negative
queries about one image, each finer than the one before, each with exactly one contradiction.

The paper gives the principle -- "starting with a single object, adding attributes, and then
relations", seven levels, each injecting one NEG_OBJ, NEG_ATTR or NEG_REL while the rest of the
description stays true -- but not the levels themselves. These are ours. A *chain* is drawn from
the scene graph stored in a built FINER benchmark record (every element with its 4 negatives):

* a subject ``S`` (an object) with two attributes ``A1``, ``A2``;
* a relation ``R1`` from ``S`` to an object ``O1`` that has an attribute ``B1``;
* a relation ``R2`` from ``S`` or from ``O1`` to an object ``O2`` that has an attribute ``C1``;

``S``, ``O1`` and ``O2`` named differently. Level n describes the first n elements of ``[S, A1, A2,
R1, B1, R2, C1]`` and replaces the n-th -- the one the level adds -- by one of its negatives
(:data:`LEVELS`), so level n's query is level n-1's true description plus one false detail::

    1 S   NEG_OBJ   the dog
    2 A1  NEG_ATTR  the cat with grey fur
    3 A2  NEG_ATTR  the cat with black fur and with a short tail
    4 R1  NEG_REL   the cat with black fur and with a long tail sitting on the sofa
    5 B1  NEG_ATTR  ... lying on the sofa with blue cushions
    6 R2  NEG_REL   ... lying on the sofa with red cushions and behind the lamp
    7 C1  NEG_ATTR  ... and next to the lamp with a black shade

(``R2`` from ``O1`` reads "... the sofa with red cushions that is next to the lamp ...".) Each level
is asked in two forms: ``mcq`` -- FINER's five-option pair (paper, B.4; E.7), built by
:func:`~finer_datasets.mcq.construct.yesno_pair` -- and ``yesno`` -- the same positive and negative
query with the options "Yes" / "No" (Fig. 1; the negative's answer is always "No"). Both forms of a
level ask the same negative. Everything is a pure function of the record, the seed and the
``random.Random`` it is given.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from finer_datasets.constants import NEGATIVES_PER_ELEMENT
from finer_datasets.core.text import join_list
from finer_datasets.mcq.construct import QUESTION_TEMPLATE, yesno_pair
from finer_datasets.mcq.pairs import pair_rng
from finer_datasets.scene_graph.graph import relation_phrase

__all__ = ["LEVELS", "FORMS", "YESNO_OPTIONS", "ChainElement", "Chain", "find_chain", "ladder_phrase", "ladder_pairs",
           "ladder_setting", "NO_CHAIN"]

#: (level, the element it adds, its kind, the contradiction it injects)
LEVELS = (
    (1, "S", "object", "NEG_OBJ"),
    (2, "A1", "attribute", "NEG_ATTR"),
    (3, "A2", "attribute", "NEG_ATTR"),
    (4, "R1", "relation", "NEG_REL"),
    (5, "B1", "attribute", "NEG_ATTR"),
    (6, "R2", "relation", "NEG_REL"),
    (7, "C1", "attribute", "NEG_ATTR"),
)
#: the two forms every level is asked in: FINER's five-option MCQ pair (E.7) and Yes / No (Fig. 1)
FORMS = ("mcq", "yesno")
YESNO_OPTIONS = ("Yes", "No")
#: why an image has no ladder (a skip by design)
NO_CHAIN = "no_full_ladder"


@dataclass(frozen=True)
class ChainElement:
    """One element of a chain: its kind, id in the source scene graph, the text it has in a query
    and the 4 texts that replace it (relations as phrases with their object)."""

    kind: str
    id: str
    text: str
    negatives: tuple[str, ...]


@dataclass(frozen=True)
class Chain:
    """The seven elements of a ladder, in level order; ``nested``: ``R2`` starts at ``O1``."""

    elements: tuple[ChainElement, ...]
    nested: bool

    def to_list(self) -> list[dict[str, Any]]:
        return [{"level": level, "kind": e.kind, "id": e.id, "text": e.text, "negatives": list(e.negatives),
                 "contradiction": contradiction}
                for (level, _, _, contradiction), e in zip(LEVELS, self.elements)]


def _full(element: Mapping[str, Any]) -> bool:
    return len(element.get("negatives") or ()) == NEGATIVES_PER_ELEMENT


def _attributes(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The attributes of ``obj`` that have 4 negatives, one per text (first occurrence)."""
    seen: dict[str, Mapping[str, Any]] = {}
    for attribute in obj["attributes"]:
        if _full(attribute):
            seen.setdefault(attribute["text"], attribute)
    return list(seen.values())


def _links(graph: Mapping[str, Any], subject: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Every ``(R1, R2)`` a chain of ``subject`` can take, in scene-graph order."""
    objects = {o["id"]: o for o in graph["objects"]}
    usable = [r for r in graph["relations"] if _full(r) and r["object"] in objects and r["subject"] in objects]
    name = subject["name"].lower()
    links = []
    for r1 in usable:
        o1 = objects[r1["object"]]
        if r1["subject"] != subject["id"] or o1["name"].lower() == name or not _attributes(o1):
            continue
        for r2 in usable:
            o2 = objects[r2["object"]]
            if r2["id"] == r1["id"] or r2["subject"] not in (subject["id"], o1["id"]) or not _attributes(o2):
                continue
            if o2["name"].lower() not in (name, o1["name"].lower()):
                links.append((r1, r2))
    return links


def find_chain(graph: Mapping[str, Any], rng: random.Random) -> Chain | None:
    """A chain of the scene graph ``graph`` (a record's ``scene_graph``) drawn with ``rng``, or
    ``None`` when it has none. The subject is drawn uniformly among the objects that have a chain,
    then its two attributes, then ``(R1, R2)`` among its links, then ``B1`` and ``C1``."""
    subjects = []
    for obj in graph["objects"]:
        if _full(obj) and len(_attributes(obj)) >= 2:
            links = _links(graph, obj)
            if links:
                subjects.append((obj, links))
    if not subjects:
        return None
    subject, links = subjects[rng.randrange(len(subjects))]
    a1, a2 = rng.sample(_attributes(subject), 2)
    r1, r2 = links[rng.randrange(len(links))]
    objects = {o["id"]: o for o in graph["objects"]}
    o1, o2 = objects[r1["object"]], objects[r2["object"]]
    b1, c1 = rng.choice(_attributes(o1)), rng.choice(_attributes(o2))
    nested = r2["subject"] == o1["id"]

    def attribute(a: Mapping[str, Any]) -> ChainElement:
        return ChainElement("attribute", a["id"], a["text"], tuple(a["negatives"]))

    def relation(r: Mapping[str, Any], target: str, clause: bool) -> ChainElement:
        def phrase(predicate: str) -> str:
            return f"that {predicate} the {target}" if clause else relation_phrase(predicate, target)

        return ChainElement("relation", r["id"], phrase(r["predicate"]), tuple(phrase(p) for p in r["negatives"]))

    elements = (ChainElement("object", subject["id"], subject["name"], tuple(subject["negatives"])), attribute(a1),
                attribute(a2), relation(r1, o1["name"], False), attribute(b1), relation(r2, o2["name"], nested),
                attribute(c1))
    return Chain(elements, nested)


def ladder_phrase(units: Sequence[str], nested: bool = False) -> str:
    """The description of the first ``len(units)`` chain elements (X of "Can you see X in this
    image?"): ``the S A1 and A2 R1 B1 and R2 C1`` (``R2`` right after ``B1`` when ``nested``)."""
    if not 1 <= len(units) <= len(LEVELS):
        raise ValueError(f"a ladder query describes 1 to {len(LEVELS)} elements, got {len(units)}")
    phrase = f"the {units[0]}"
    if len(units) >= 2:
        phrase += " " + join_list(list(units[1:3]))
    relations = [" ".join(units[start:start + 2]) for start in (3, 5) if len(units) > start]
    if relations:
        phrase += " " + (" ".join(relations) if nested else join_list(relations))
    return phrase


def ladder_setting(form: str, source: str) -> str:
    """The setting of a ladder pair: its form and the benchmark its image comes from (``mcq_docci``)."""
    return f"{form}_{source}"


def _yesno_question(question_id: str, phrase: str, answer: str) -> dict[str, Any]:
    return {"question_id": question_id, "question": QUESTION_TEMPLATE.format(X=phrase), "options": list(YESNO_OPTIONS),
            "option_types": ["affirm", "deny"], "answer": answer}


def ladder_pairs(chain: Chain, *, key: str, source: str, seed: int) -> list[dict[str, Any]]:
    """The 14 pairs of a chain (7 levels x 2 forms), sorted by ``pair_id`` (``<form>_<key>_l<level>``).

    Each level's MCQ pair draws from ``pair_rng(seed, pair_id)`` as FINER's pairs do; its yes/no
    pair asks the same two queries. ``ValueError`` when a level's options are not distinct (its
    negatives repeat what the query says)."""
    units = [e.text for e in chain.elements]
    out = []
    for (level, _, _, contradiction), element in zip(LEVELS, chain.elements):
        part = units[:level]
        mcq_id, yesno_id = f"mcq_{key}_l{level}", f"yesno_{key}_l{level}"

        def render(described: list[str]) -> str:
            return ladder_phrase(described, chain.nested)

        pair = yesno_pair(mcq_id, ladder_setting("mcq", source), part, level - 1, element.negatives,
                          pair_rng(seed, mcq_id), render=render).to_dict()
        extra = {"form": "mcq", "level": level, "contradiction": contradiction}
        out.append({**pair, **extra})
        wrong = render([*part[:-1], pair["negated"]["negative"]])
        out.append({**pair, **extra, "pair_id": yesno_id, "setting": ladder_setting("yesno", source), "form": "yesno",
                    "positive": _yesno_question(f"{yesno_id}_pos", render(part), "A"),
                    "negative": _yesno_question(f"{yesno_id}_neg", wrong, "B")})
    return sorted(out, key=lambda p: p["pair_id"])
