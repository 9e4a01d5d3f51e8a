"""Which MCQ pairs an image yields: the sampling policy shared by the FINER builders.

Policy (per image; each pair draws from its own ``random.Random(f"{seed}:{pair_id}")``, so a
pair does not change when other images or settings change):

* ``multi_obj``: one pair for every k in 1..``max_objects`` — k distinct object names sampled
  from the image; an image with fewer than k distinct objects skips that k (``too_few_objects``).
* ``multi_attr``: for every object and every k in 1..min(``max_attributes``, its attributes), one
  pair about k of its attributes: ``the cat with a black color and with a long tail``.
* ``multi_rel``: for every subject and every k in 1..min(``max_relations``, its relations), one
  pair about k of its relations: ``the cat lying on the desk and next to the lamp``.
* ``wh``: one pair per relation whose subject or object can serve as the answer while the other
  one, the context, has at least one attribute (``wh_no_context_attribute`` otherwise).

In every yes/no pair the negated element is chosen uniformly among the k. Only elements that
have 4 negatives take part.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Mapping

from finer_datasets.constants import SETTINGS
from finer_datasets.core.text import join_list
from finer_datasets.mcq.construct import MCQPair, wh_pair, yesno_pair
from finer_datasets.scene_graph.graph import (
    SceneGraph,
    SGObject,
    SGRelation,
    relation_phrase,
)
from finer_datasets.scene_graph.lexicon import strip_copula

__all__ = ["SETTINGS", "KLimits", "pairs_for_image", "pair_rng"]


@dataclass(frozen=True)
class KLimits:
    """Largest k per setting (CompreCap: 6 objects, 3 attributes, 3 relations)."""

    objects: int = 6
    attributes: int = 3
    relations: int = 3


def pair_rng(seed: int, pair_id: str) -> random.Random:
    """The RNG of one pair: seeded by a string, hence stable across processes and Python runs."""
    return random.Random(f"{seed}:{pair_id}")


def pairs_for_image(
    graph: SceneGraph,
    negatives: dict[str, tuple[str, ...]],
    *,
    seed: int,
    key: str,
    limits: KLimits = KLimits(),
    wh_templates: Mapping[tuple[str, str], str] | None = None,
) -> tuple[list[MCQPair], list[tuple[str, str]]]:
    """All pairs of one image, sorted by pair id, and the skipped slots as ``(reason, detail)``.

    ``key`` is the image's id as used in pair ids (no dots). ``wh_templates`` maps
    ``(relation id, "subject" | "object")`` to a Wh question written elsewhere (an LLM) with the
    context object as ``[CONTEXT]``; without one, rule-based templates are used. Pure: depends
    only on the arguments.
    """
    skips: list[tuple[str, str]] = []
    pairs: list[MCQPair] = []
    has = negatives.__contains__

    # multi_obj: distinct names, first occurrence wins
    objects: dict[str, SGObject] = {}
    for obj in graph.objects:
        if has(obj.id) and obj.name.lower() not in objects:
            objects[obj.name.lower()] = obj
    usable_objects = list(objects.values())
    for k in range(1, limits.objects + 1):
        if k > len(usable_objects):
            skips.append(("too_few_objects", f"multi_obj k={k}: only {len(usable_objects)} distinct objects"))
            continue
        pair_id = f"multi_obj_{key}_k{k}"
        rng = pair_rng(seed, pair_id)
        chosen = rng.sample(usable_objects, k)
        i = rng.randrange(k)
        pairs.append(
            yesno_pair(pair_id, "multi_obj", [o.name for o in chosen], i, negatives[chosen[i].id], rng)
        )

    # multi_attr
    for obj in graph.objects:
        attrs = [a for a in obj.attributes if has(a.id)]
        for k in range(1, min(limits.attributes, len(attrs)) + 1):
            pair_id = f"multi_attr_{key}_{obj.id}_k{k}"
            rng = pair_rng(seed, pair_id)
            chosen = rng.sample(attrs, k)
            i = rng.randrange(k)
            render = _prefixed(f"the {obj.name}")
            pairs.append(
                yesno_pair(pair_id, "multi_attr", [a.text for a in chosen], i, negatives[chosen[i].id], rng, render=render)
            )

    # multi_rel
    by_subject: dict[str, list[SGRelation]] = {}
    for rel in graph.relations:
        if has(rel.id):
            by_subject.setdefault(rel.subject, []).append(rel)
    for subject_id, rels in by_subject.items():
        subject = graph.object(subject_id)
        for k in range(1, min(limits.relations, len(rels)) + 1):
            pair_id = f"multi_rel_{key}_{subject_id}_k{k}"
            rng = pair_rng(seed, pair_id)
            chosen = rng.sample(rels, k)
            i = rng.randrange(k)
            units = [relation_phrase(r.predicate, graph.object(r.object).name) for r in chosen]
            target_object = graph.object(chosen[i].object).name
            negs = [relation_phrase(p, target_object) for p in negatives[chosen[i].id]]
            pair = yesno_pair(pair_id, "multi_rel", units, i, negs, rng, render=_prefixed(f"the {subject.name}"))
            pairs.append(pair)

    # wh
    for rel in graph.relations:
        pair = _wh_for_relation(graph, rel, negatives, seed=seed, key=key, templates=wh_templates or {})
        if pair is None:
            skips.append(("wh_no_context_attribute", f"{rel.id}: no answerable target with an attributed context"))
        else:
            pairs.append(pair)

    pairs.sort(key=lambda p: p.pair_id)
    return pairs, skips


def _prefixed(prefix: str) -> Callable[[list[str]], str]:
    def render(units: list[str]) -> str:
        return f"{prefix} {join_list(units)}"

    return render


def _wh_for_relation(
    graph: SceneGraph, rel: SGRelation, negatives: dict[str, tuple[str, ...]], *, seed: int, key: str,
    templates: Mapping[tuple[str, str], str],
) -> MCQPair | None:
    subject, obj = graph.object(rel.subject), graph.object(rel.object)
    if subject.name.lower() == obj.name.lower():
        return None
    copula, core = strip_copula(rel.predicate)

    def attrs(o: SGObject) -> list[str]:
        return [a.id for a in o.attributes if a.id in negatives]

    def written(side: str) -> Callable[[str], str] | None:
        template = templates.get((rel.id, side))
        return (lambda d, t=template: t.replace("[CONTEXT]", d)) if template else None

    options: list[tuple[SGObject, SGObject, Callable[[str], str]]] = []
    # ask about the subject; the object (with its attributes) is the context
    if subject.id in negatives and attrs(obj):
        options.append((subject, obj, written("subject") or (lambda d, p=rel.predicate: f"What {p} the {d}?")))
    # ask about the object; the rule-based form needs a copula ("What is the cat ... lying on?")
    question = written("object") or (
        (lambda d, c=copula.strip(), core=core: f"What {c} the {d} {core}?") if copula else None)
    if question and obj.id in negatives and attrs(subject):
        options.append((obj, subject, question))
    if not options:
        return None
    pair_id = f"wh_{key}_{rel.id}"
    rng = pair_rng(seed, pair_id)
    target, context, question = options[rng.randrange(len(options))]
    usable = [a for a in context.attributes if a.id in negatives]
    index = rng.randrange(len(usable))
    return wh_pair(
        pair_id,
        question=question,
        context=context.name,
        attributes=[a.text for a in usable],
        attribute_index=index,
        attribute_negatives=negatives[usable[index].id],
        target=target.name,
        target_negatives=negatives[target.id],
        rng=rng,
    )
