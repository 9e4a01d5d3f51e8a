"""FINER-Tuning preference tuples as pure, seeded functions (paper, section 3 and appendix G).

Every random choice draws from its own stream ``random.Random(f"{seed}:{stream}:{image_id}")``
(never the global RNG), so the same inputs and seed give the same tuples on any machine, in any
order, and in any part of a build split over machines (``--part``): nothing depends on which
other images are processed, except :func:`subsample`, which is global by definition.

The steps for one image:

1. :func:`plan_phrases` -- from the objects the LLM extracted from the caption, the positive
   phrases Ψ+ (eq. 2): a few objects (Obj), a few attributes of a random object (Attr), a few
   relations of a random object (Rel), each with the instance that will be replaced (eq. 3);
2. the LLM writes the replacement of that instance (:class:`Phrase` = Ψ+ and Ψ−);
3. :func:`candidate_tuples` -- a positive and a negative query for each type (eq. 4): templated
   (:mod:`.templates`, one of five per tuple: appendix G's or ours) for Obj/Attr/Rel, LLM-written for Wh
   (:class:`WhPair`, symmetrised as in appendix G);
4. :func:`preselect` (types, query polarity, "pon"/"all") and :func:`subsample` (at most
   ``max_tuples``, uniformly) -- the tuples a release selects; :func:`split_of` -- the split.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from finer_datasets.preference.templates import DEFAULT_TEMPLATES, templates_for

__all__ = [
    "TYPES", "TEMPLATED", "QUERIES", "SAMPLINGS", "LIMITS", "SceneObject", "PhrasePlan", "Phrase", "WhPair",
    "Selection", "rng_for", "join_phrases", "render", "plan_phrases", "tuple_id", "template_tuples", "wh_tuples",
    "candidate_tuples", "preselect", "subsample", "split_of", "assign_splits", "part_index",
]

#: tuple types in record order (the FINER settings Multi-obj, Multi-attr, Multi-rel, Wh)
TYPES = ("obj", "attr", "rel", "wh")
TEMPLATED = ("obj", "attr", "rel")
QUERIES = ("positive", "negative")
#: "pon": per image and type, the positive or the negative query (seeded); "all": both
SAMPLINGS = ("pon", "all")
#: (fewest, most) instances per phrase (as many as there are, within these bounds)
LIMITS = {"obj": (2, 4), "attr": (1, 3), "rel": (1, 2)}


def rng_for(seed: int, stream: str, image_id: str) -> random.Random:
    """The random stream ``stream`` of one image (independent of every other stream and image)."""
    return random.Random(f"{seed}:{stream}:{image_id}")


@dataclass(frozen=True)
class SceneObject:
    """One object of a caption as the LLM extracted it: ``phrase`` ("a red car"), ``name``
    ("the car"), attribute phrases that follow "with", relation phrases that follow the name."""

    phrase: str
    name: str
    attributes: tuple[str, ...] = ()
    relations: tuple[str, ...] = ()


def join_phrases(items: Sequence[str]) -> str:
    """``a`` / ``a and b`` / ``a, b, and c``."""
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def render(kind: str, subject: str, items: Sequence[str]) -> str:
    """The phrase Ψ of a type: the objects; ``subject with ...``; ``subject <relations>``."""
    if kind == "obj":
        return join_phrases(items)
    if kind == "attr":
        return f"{subject} with {join_phrases(items)}"
    if kind == "rel":
        return f"{subject} {join_phrases(items)}"
    raise ValueError(f"no phrase for type {kind!r}")


@dataclass(frozen=True)
class PhrasePlan:
    """Ψ+ of one type and the index of the instance the LLM is asked to replace."""

    type: str
    subject: str
    items: tuple[str, ...]
    target: int

    @property
    def positive(self) -> str:
        return render(self.type, self.subject, self.items)


@dataclass(frozen=True)
class Phrase:
    """Ψ+ and Ψ− of one type: the plan and the replacement of its target instance."""

    plan: PhrasePlan
    replacement: str

    @property
    def type(self) -> str:
        return self.plan.type

    @property
    def negative_items(self) -> tuple[str, ...]:
        items = list(self.plan.items)
        items[self.plan.target] = self.replacement
        return tuple(items)

    @property
    def positive(self) -> str:
        return self.plan.positive

    @property
    def negative(self) -> str:
        return render(self.plan.type, self.plan.subject, self.negative_items)

    def to_record(self) -> dict[str, Any]:
        return {"type": self.type, "subject": self.plan.subject, "items": list(self.plan.items),
                "replaced": self.plan.target, "replacement": self.replacement, "positive": self.positive,
                "negative": self.negative}


@dataclass(frozen=True)
class WhPair:
    """The LLM's Wh questions (appendix G, figures 19 and 23): q+ with its answer a+, and q− (one
    premise detail changed) with its answer, which rejects the false premise."""

    statement: str
    positive_question: str
    positive_answer: str
    negative_question: str
    negative_answer: str
    changed: str

    def to_record(self) -> dict[str, Any]:
        return {"statement": self.statement, "positive_question": self.positive_question,
                "positive_answer": self.positive_answer, "negative_question": self.negative_question,
                "negative_answer": self.negative_answer, "changed": self.changed}


def _pick(n: int, bounds: tuple[int, int], rng: random.Random) -> list[int]:
    """A seeded subset of ``range(n)`` of a size within ``bounds`` (as far as ``n`` allows), in order."""
    low, high = min(bounds[0], n), min(bounds[1], n)
    return sorted(rng.sample(range(n), rng.randint(low, high)))


def plan_phrases(objects: Sequence[SceneObject], image_id: str, seed: int) -> dict[str, PhrasePlan]:
    """Ψ+ of Obj, Attr and Rel for one image (a type is absent when the caption gives nothing for it).

    Obj: 2-4 of the objects; Attr: 1-3 attributes of a random object that has some; Rel: 1-2
    relations of a random object that has some. Chosen items keep their caption order; the
    instance to replace is drawn uniformly among them (eq. 3).
    """
    plans: dict[str, PhrasePlan] = {}
    if objects:
        rng = rng_for(seed, "phrase:obj", image_id)
        items = tuple(objects[i].phrase for i in _pick(len(objects), LIMITS["obj"], rng))
        plans["obj"] = PhrasePlan("obj", "", items, rng.randrange(len(items)))
    for kind, field in (("attr", "attributes"), ("rel", "relations")):
        owners = [o for o in objects if getattr(o, field)]
        if not owners:
            continue
        rng = rng_for(seed, f"phrase:{kind}", image_id)
        owner = owners[rng.randrange(len(owners))]
        values = getattr(owner, field)
        items = tuple(values[i] for i in _pick(len(values), LIMITS[kind], rng))
        plans[kind] = PhrasePlan(kind, owner.name, items, rng.randrange(len(items)))
    return plans


def tuple_id(image_id: str, kind: str, query: str) -> str:
    return f"{image_id}_{kind}_{'pos' if query == 'positive' else 'neg'}"


def _tuple(image_id: str, kind: str, query: str, number: int, question: str, chosen: str, rejected: str) -> dict[str, Any]:
    return {"id": tuple_id(image_id, kind, query), "type": kind, "query": query, "template": number,
            "question": question, "chosen": chosen, "rejected": rejected, "selected": False}


def template_tuples(phrase: Phrase, image_id: str, seed: int, templates: str = DEFAULT_TEMPLATES) -> list[dict[str, Any]]:
    """The positive and the negative tuple of a templated type: each draws its own template of the set
    ``templates`` (``paper``: appendix G's five; ``ours``) from its own seeded stream."""
    out = []
    pos, neg = phrase.positive, phrase.negative
    pool = templates_for(phrase.type, templates)
    for query in QUERIES:
        number = rng_for(seed, f"template:{phrase.type}:{query}", image_id).randint(1, len(pool))
        t = pool[number - 1]
        if query == "positive":
            question, chosen, rejected = t.question.format(X=pos), t.yes.format(Y=pos), t.no.format(Z=neg)
        else:
            question, chosen, rejected = t.question.format(X=neg), t.no.format(Z=pos), t.yes.format(Y=neg)
        out.append(_tuple(image_id, phrase.type, query, number, question, chosen, rejected))
    return out


def wh_tuples(pair: WhPair, image_id: str) -> list[dict[str, Any]]:
    """(q+, a+, a−) and (q−, a−+, a+): each accepted answer is the other question's rejected one."""
    return [_tuple(image_id, "wh", "positive", 0, pair.positive_question, pair.positive_answer, pair.negative_answer),
            _tuple(image_id, "wh", "negative", 0, pair.negative_question, pair.negative_answer, pair.positive_answer)]


def candidate_tuples(phrases: dict[str, Phrase], wh: WhPair | None, image_id: str, seed: int,
                     templates: str = DEFAULT_TEMPLATES) -> list[dict[str, Any]]:
    """Every tuple of one image (at most 8), in type order, positive before negative; none selected."""
    out: list[dict[str, Any]] = []
    for kind in TEMPLATED:
        if kind in phrases:
            out += template_tuples(phrases[kind], image_id, seed, templates)
    if wh is not None:
        out += wh_tuples(wh, image_id)
    return out


@dataclass(frozen=True)
class Selection:
    """Which tuples a release keeps: types, query polarities, "pon"/"all", and a global cap."""

    types: tuple[str, ...] = TYPES
    queries: tuple[str, ...] = QUERIES
    sampling: str = "pon"
    max_tuples: int | None = 160_000

    def __post_init__(self) -> None:
        if not self.types or set(self.types) - set(TYPES):
            raise ValueError(f"types must be a non-empty subset of {TYPES}, got {self.types}")
        if not self.queries or set(self.queries) - set(QUERIES):
            raise ValueError(f"queries must be a non-empty subset of {QUERIES}, got {self.queries}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.max_tuples is not None and self.max_tuples < 1:
            raise ValueError(f"max_tuples must be positive, got {self.max_tuples}")

    def to_dict(self) -> dict[str, Any]:
        return {"types": list(self.types), "queries": list(self.queries), "sampling": self.sampling,
                "max_tuples": self.max_tuples}


def preselect(tuples: Iterable[dict[str, Any]], image_id: str, selection: Selection, seed: int) -> list[str]:
    """The ids of one image's tuples that pass the types and query filters and, with "pon" and both
    polarities allowed, the one query per type drawn for this image (a function of this image only)."""
    kept = [t for t in tuples if t["type"] in selection.types and t["query"] in selection.queries]
    if selection.sampling == "pon" and len(selection.queries) == 2:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for t in kept:
            by_type.setdefault(t["type"], []).append(t)
        kept = []
        for kind, group in by_type.items():
            wanted = rng_for(seed, f"pon:{kind}", image_id).choice(QUERIES)
            kept += [t for t in group if t["query"] == wanted] or group[:1]
    return [t["id"] for t in kept]


def subsample(ids: Iterable[str], max_tuples: int | None, seed: int) -> set[str]:
    """At most ``max_tuples`` of ``ids``, drawn uniformly without replacement (the whole set when
    it is small enough); the draw depends only on the set of ids and the seed, not on their order."""
    pool = sorted(set(ids))
    if max_tuples is None or len(pool) <= max_tuples:
        return set(pool)
    return set(random.Random(f"{seed}:subsample").sample(pool, max_tuples))


def split_of(image_id: str, seed: int, validation_ratio: float) -> str:
    """``validation`` for a seeded ``validation_ratio`` share of images (per image), else ``train``."""
    return "validation" if rng_for(seed, "split", image_id).random() < validation_ratio else "train"


def assign_splits(image_ids: Iterable[str], seed: int, validation_ratio: float) -> dict[str, str]:
    """:func:`split_of` for every image, except that with two or more images neither split is left
    empty (a split without rows cannot be loaded): the image with the smallest draw then joins
    ``validation``, or the one with the largest joins ``train``. At the paper's scale (57K images,
    ratio 0.005) this never applies, so the split of an image depends on that image alone."""
    draws = {i: rng_for(seed, "split", i).random() for i in image_ids}
    splits = {i: "validation" if u < validation_ratio else "train" for i, u in draws.items()}
    if len(draws) >= 2 and validation_ratio > 0:
        if "validation" not in splits.values():
            splits[min(draws, key=lambda i: (draws[i], i))] = "validation"
        elif "train" not in splits.values():
            splits[max(draws, key=lambda i: (draws[i], i))] = "train"
    return splits


def part_index(identity: str, parts: int) -> int:
    """Which of ``parts`` parts (0-based) an element belongs to: a stable hash of ``identity``."""
    return int(hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16], 16) % parts
