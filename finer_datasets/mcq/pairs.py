"""Which MCQ pairs an image yields: the sampling policy shared by the FINER benchmark builders.

A *group* is what one yes/no question draws its k elements from: the image's distinct object
names (``multi_obj``), one object's attributes (``multi_attr``), one subject's relations
(``multi_rel``). With ``n`` the group's usable elements and ``K`` the setting's limit
(:class:`KLimits`), the ``sampling`` policy decides the k of its pairs:

* ``table9`` (:data:`TABLE9`): **one pair per group**, ``k = min(K, n)`` -- one ``multi_obj``
  pair per image, one ``multi_attr`` pair per object, one ``multi_rel`` pair per subject. This is
  how the paper's Table 9 counts FINER-DOCCI (its ``multi_obj`` pairs sum to its 5,000 images).
* ``per-k`` (:data:`PER_K`): **one pair for every k in 1..min(K, n)** -- how Table 9 counts
  FINER-CompreCap (560, 560, 560, 558, 535, 377 ``multi_obj`` pairs: images with at least k
  objects). ``multi_obj`` reports each k above ``n`` as a ``too_few_objects`` skip.

Whatever the policy, the k elements are sampled uniformly, the negated one is chosen uniformly
among them, and only elements that have 4 negatives take part. ``multi_obj`` uses distinct names
(first occurrence wins). **No two relations of one ``multi_rel`` question share an object** (by
name, as the question reads): the relations of a subject are grouped by their object's name,
``n`` is the number of distinct objects, and each chosen object contributes one of its relations
(paper, section B.4: questions whose relations "referred to the same objects" were cleaned by
hand). Each k the guard takes away from what ``n`` relations would give is a
``relations_share_object`` skip (a policy skip). ``wh``: one pair per relation whose subject or
object can serve as the answer while the other one, the context, has at least one attribute
(``wh_no_context_attribute`` otherwise).

Each pair draws from its own ``random.Random(f"{seed}:{pair_id}")`` and pair ids name the k
(``multi_obj_<image>_k3``), so a pair does not change when other images, settings or the policy
change: the ``table9`` pairs of an image are a subset of its ``per-k`` pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from finer_datasets.constants import SETTINGS
from finer_datasets.core.text import join_list
from finer_datasets.errors import UsageError
from finer_datasets.mcq.construct import NOT_DISTINCT, MCQPair, PairError, try_pair, wh_pair, yesno_pair
from finer_datasets.scene_graph.graph import (
    SceneGraph,
    SGObject,
    SGRelation,
    relation_phrase,
)
from finer_datasets.scene_graph.lexicon import strip_copula

__all__ = ["SETTINGS", "KLimits", "PER_K", "TABLE9", "SAMPLINGS", "check_sampling", "sampled_ks",
           "pairs_for_image", "pair_rng"]

#: one pair per group with k = min(K, n) (the paper's Table 9 for FINER-DOCCI)
TABLE9 = "table9"
#: one pair per group and k in 1..min(K, n) (the paper's Table 9 for FINER-CompreCap)
PER_K = "per-k"
SAMPLINGS = (TABLE9, PER_K)

Skips = list[tuple[str, str]]


@dataclass(frozen=True)
class KLimits:
    """Largest k per setting (CompreCap: 6 objects, 3 attributes, 3 relations)."""

    objects: int = 6
    attributes: int = 3
    relations: int = 3


def pair_rng(seed: int, pair_id: str) -> random.Random:
    """The RNG of one pair: seeded by a string, hence stable across processes and Python runs."""
    return random.Random(f"{seed}:{pair_id}")


def check_sampling(sampling: str) -> str:
    """``sampling`` if it names a policy; else :class:`UsageError` naming the choices."""
    if sampling not in SAMPLINGS:
        raise UsageError(f"--sampling {sampling!r}: use one of {', '.join(SAMPLINGS)}")
    return sampling


def sampled_ks(n: int, limit: int, sampling: str) -> list[int]:
    """The k of the pairs a group of ``n`` usable elements yields (``limit`` = K)."""
    top = min(limit, n)
    if top < 1:
        return []
    return [top] if check_sampling(sampling) == TABLE9 else list(range(1, top + 1))


def pairs_for_image(
    graph: SceneGraph,
    negatives: dict[str, tuple[str, ...]],
    *,
    seed: int,
    key: str,
    limits: KLimits = KLimits(),
    wh_templates: Mapping[tuple[str, str], str] | None = None,
    sampling: str = PER_K,
) -> tuple[list[MCQPair], Skips]:
    """All pairs of one image, sorted by pair id, and the skipped slots as ``(reason, detail)``.

    ``key`` is the image's id as used in pair ids (no dots). ``sampling`` is :data:`PER_K` or
    :data:`TABLE9` (module docstring). ``wh_templates`` maps ``(relation id, "subject" |
    "object")`` to a Wh question written elsewhere (an LLM) with the context object as
    ``[CONTEXT]``; without one, rule-based templates are used. Pure: depends only on the arguments.
    """
    check_sampling(sampling)
    skips: Skips = []
    pairs = [*_multi_obj(graph, negatives, seed, key, limits.objects, sampling, skips),
             *_multi_attr(graph, negatives, seed, key, limits.attributes, sampling),
             *_multi_rel(graph, negatives, seed, key, limits.relations, sampling, skips)]
    for rel in graph.relations:
        pair = _wh_for_relation(graph, rel, negatives, seed=seed, key=key, templates=wh_templates or {})
        if pair is None:
            skips.append(("wh_no_context_attribute", f"{rel.id}: no answerable target with an attributed context"))
        else:
            pairs.append(pair)
    skips += [(NOT_DISTINCT, str(p)) for p in pairs if isinstance(p, PairError)]  # one bad pair: a counted skip
    pairs = sorted((p for p in pairs if not isinstance(p, PairError)), key=lambda p: p.pair_id)
    return pairs, skips


def _multi_obj(graph: SceneGraph, negatives: dict[str, tuple[str, ...]], seed: int, key: str, limit: int,
               sampling: str, skips: Skips) -> list[MCQPair]:
    objects: dict[str, SGObject] = {}  # distinct names, first occurrence wins
    for obj in graph.objects:
        if obj.id in negatives and obj.name.lower() not in objects:
            objects[obj.name.lower()] = obj
    usable = list(objects.values())
    if sampling == PER_K:
        skips += [("too_few_objects", f"multi_obj k={k}: only {len(usable)} distinct objects")
                  for k in range(len(usable) + 1, limit + 1)]
    elif not usable:
        skips.append(("too_few_objects", "multi_obj: no object with negatives"))
    pairs = []
    for k in sampled_ks(len(usable), limit, sampling):
        pair_id = f"multi_obj_{key}_k{k}"
        rng = pair_rng(seed, pair_id)
        chosen = rng.sample(usable, k)
        i = rng.randrange(k)
        pairs.append(try_pair(yesno_pair, pair_id, "multi_obj", [o.name for o in chosen], i, negatives[chosen[i].id],
                              rng))
    return pairs


def _multi_attr(graph: SceneGraph, negatives: dict[str, tuple[str, ...]], seed: int, key: str, limit: int,
                sampling: str) -> list[MCQPair]:
    pairs = []
    for obj in graph.objects:
        attrs = [a for a in obj.attributes if a.id in negatives]
        for k in sampled_ks(len(attrs), limit, sampling):
            pair_id = f"multi_attr_{key}_{obj.id}_k{k}"
            rng = pair_rng(seed, pair_id)
            chosen = rng.sample(attrs, k)
            i = rng.randrange(k)
            pairs.append(try_pair(yesno_pair, pair_id, "multi_attr", [a.text for a in chosen], i,
                                  negatives[chosen[i].id], rng, render=_prefixed(f"the {obj.name}")))
    return pairs


def _multi_rel(graph: SceneGraph, negatives: dict[str, tuple[str, ...]], seed: int, key: str, limit: int,
               sampling: str, skips: Skips) -> list[MCQPair]:
    by_subject: dict[str, dict[str, list[SGRelation]]] = {}  # subject id -> object name -> its relations
    for rel in graph.relations:
        if rel.id in negatives:
            groups = by_subject.setdefault(rel.subject, {})
            groups.setdefault(graph.object(rel.object).name.lower(), []).append(rel)
    pairs = []
    for subject_id, groups in by_subject.items():
        subject, distinct = graph.object(subject_id), list(groups.values())
        ks = sampled_ks(len(distinct), limit, sampling)
        shared = [g for g in distinct if len(g) > 1]
        for k in sorted(set(sampled_ks(sum(map(len, distinct)), limit, sampling)) - set(ks)):
            skips.append(("relations_share_object", f"multi_rel {subject_id} k={k}: " + "; ".join(
                f"{', '.join(r.id for r in g)} share the {graph.object(g[0].object).name}" for g in shared)
                + (f" (asked with k={ks[-1]})" if sampling == TABLE9 else "")))
        for k in ks:
            pair_id = f"multi_rel_{key}_{subject_id}_k{k}"
            rng = pair_rng(seed, pair_id)
            chosen = _one_per_group(rng.sample(distinct, k), rng)
            i = rng.randrange(k)
            units = [relation_phrase(r.predicate, graph.object(r.object).name) for r in chosen]
            target_object = graph.object(chosen[i].object).name
            negs = [relation_phrase(p, target_object) for p in negatives[chosen[i].id]]
            pairs.append(try_pair(yesno_pair, pair_id, "multi_rel", units, i, negs, rng,
                                  render=_prefixed(f"the {subject.name}")))
    return pairs


def _one_per_group(groups: Sequence[list[SGRelation]], rng: random.Random) -> list[SGRelation]:
    """One relation of each group; a group of one draws nothing from ``rng`` (so graphs without
    shared objects give the pairs they gave before the guard)."""
    return [group[0] if len(group) == 1 else group[rng.randrange(len(group))] for group in groups]


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
    return try_pair(
        wh_pair,
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
