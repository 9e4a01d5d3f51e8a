"""Captions -> positive scene graphs: the order of FINER-DOCCI's extraction stages and what the
build keeps of their answers (paper, section B.2).

1. stage 1 (``extract``): objects and attributes, verbatim; guard drops are skips ``not_in_caption``;
   an unusable answer skips the image (``extraction_failed``), as does one without any object
   (``no_objects``);
2. stage 2 (``relations``): candidate pairs (:func:`.phrases.candidate_pairs`, at most
   ``max_pairs`` per image); an unusable answer is a skip ``relation_answer_unusable``, a phrase
   not in the caption a skip ``not_in_caption``, a repeated triple ``duplicate_relation`` (policy);
3. validation (``validate``): each relation's two votes; discarded when both disagree
   (:func:`.validate.keep`). Discards are counted, not skipped: they are the filter working.

Every count lands in :class:`ExtractionStats` (the manifest's ``counts.extraction``). Pure given
the stages' answers: the same answers give the same graphs, ids and counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from finer_datasets.core.builder import BuildReport
from finer_datasets.mcq.builder import SourceImage
from finer_datasets.scene_graph.graph import (
    SceneGraph,
    SGAttribute,
    SGObject,
    SGRelation,
)
from finer_datasets.scene_graph.lexicon import Lexicon

from .extract import Extraction
from .phrases import attribute_phrase, candidate_pairs, object_name, relation_predicate
from .source import Caption
from .validate import Verdict, keep

__all__ = ["DEFAULT_MAX_PAIRS", "ExtractionStats", "build_objects", "extract_graphs"]

#: default bound on the object pairs asked about per image (stage 2)
DEFAULT_MAX_PAIRS = 24


@dataclass
class ExtractionStats:
    """Counts of the extraction pipeline (deterministic: the same on a replay)."""

    captions: int = 0
    extraction_failed: int = 0
    images_without_objects: int = 0
    objects: int = 0
    attributes: int = 0
    dropped_objects: int = 0
    dropped_attributes: int = 0
    objects_over_limit: int = 0
    duplicate_attributes: int = 0
    relation_pairs_asked: int = 0
    relation_pairs_over_bound: int = 0
    relation_answers_unusable: int = 0
    relations_none: int = 0
    relations_not_in_caption: int = 0
    relations_duplicate: int = 0
    relations_found: int = 0
    relations_validated: int = 0
    validation_llm_disagreed: int = 0
    validation_mllm_disagreed: int = 0
    validation_mllm_missing: int = 0
    relations_discarded: int = 0
    relations_kept: int = 0

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def build_objects(extraction: Extraction, lexicon: Lexicon, stats: ExtractionStats) -> tuple[SGObject, ...]:
    """Scene-graph objects of one guarded extraction: names cleaned, attributes as ``with``
    phrases (verbatim text kept as ``source_text``), repeated phrases of one object dropped."""
    objects: list[SGObject] = []
    for extracted in extraction.objects:
        name = object_name(extracted.name)
        if not name:
            continue
        oid = f"o{len(objects)}"
        attributes: list[SGAttribute] = []
        seen: set[str] = set()
        for text, kind in extracted.attributes:
            phrase = attribute_phrase(text, kind, lexicon)
            if phrase.lower() in seen:
                stats.duplicate_attributes += 1
                continue
            seen.add(phrase.lower())
            attributes.append(SGAttribute(f"{oid}_a{len(attributes)}", phrase, text))
        objects.append(SGObject(oid, name, tuple(attributes)))
    return tuple(objects)


def extract_graphs(captions: Sequence[Caption], llm: Any, *, report: BuildReport, descriptions: Path, lexicon: Lexicon,
                   max_pairs: int = DEFAULT_MAX_PAIRS) -> tuple[list[SourceImage], ExtractionStats]:
    """Run the stages over ``captions`` (all requests of a stage at once) and assemble the graphs."""
    stats = ExtractionStats(captions=len(captions))
    extractions = llm.stage("extract").prepare(captions)
    graphs: list[tuple[Caption, tuple[SGObject, ...]]] = []
    for caption, extraction in zip(captions, extractions):
        where = {"path": descriptions, "record": caption.record}
        if extraction is None:
            stats.extraction_failed += 1
            report.skip("extraction_failed", **where, field="description", detail="no usable stage-1 answer")
            continue
        for field, phrase in extraction.dropped:
            if field.endswith(".name"):
                stats.dropped_objects += 1
            else:
                stats.dropped_attributes += 1
            report.skip("not_in_caption", **where, field=f"stage1.{field}", detail=repr(phrase))
        stats.objects_over_limit += extraction.over_limit
        objects = build_objects(extraction, lexicon, stats)
        if not objects:
            stats.images_without_objects += 1
            report.skip("no_objects", **where, field="description", detail="stage 1 found no object in the caption")
            continue
        stats.objects += len(objects)
        stats.attributes += sum(len(o.attributes) for o in objects)
        graphs.append((caption, objects))

    relations = _relations(graphs, llm, report=report, descriptions=descriptions, max_pairs=max_pairs, stats=stats)
    images = []
    for caption, objects in graphs:
        rels = tuple(SGRelation(f"r{n}", s, p, o, text)
                     for n, (s, p, o, text) in enumerate(relations.get(caption.example_id, [])))
        graph = SceneGraph(image_id=caption.example_id, image_file=caption.image_file, objects=objects, relations=rels)
        images.append(SourceImage(caption.example_id, caption.key, caption.image, graph, annotation_file=descriptions))
    images.sort(key=lambda s: s.key)  # the shard writer's order
    return images, stats


def _relations(graphs: list[tuple[Caption, tuple[SGObject, ...]]], llm: Any, *, report: BuildReport, descriptions: Path,
               max_pairs: int, stats: ExtractionStats) -> dict[str, list[tuple[str, str, str, str]]]:
    """Stage 2 and the validation: ``{example_id: [(subject id, predicate, object id, verbatim phrase)]}``."""
    stage = llm.stage("relations")
    if stage is None:
        return {}
    jobs: list[tuple[Caption, list[str], int, int]] = []
    for caption, objects in graphs:
        names = [o.name for o in objects]
        pairs, over = candidate_pairs(caption.description, names, max_pairs)
        stats.relation_pairs_over_bound += over
        jobs += [(caption, names, i, j) for i, j in pairs]
    stats.relation_pairs_asked = len(jobs)
    found: list[tuple[Caption, tuple[str, str, str, str], str]] = []
    seen: set[tuple[str, str, str, str]] = set()
    for (caption, names, i, j), answer in zip(jobs, stage.prepare(jobs)):
        where = {"path": descriptions, "record": caption.record, "field": f"stage2.o{i}/o{j}"}
        if answer.status == "failed":
            stats.relation_answers_unusable += 1
            report.skip("relation_answer_unusable", **where,
                        detail=f"{names[i]!r} / {names[j]!r}: no usable stage-2 answer")
        elif answer.status == "none":
            stats.relations_none += 1
        elif answer.status == "not_in_caption":
            stats.relations_not_in_caption += 1
            report.skip("not_in_caption", **where, detail=repr(answer.phrase))
        else:
            subject, obj = names[answer.subject], names[answer.object]
            predicate = relation_predicate(answer.phrase, subject)
            signature = (caption.example_id, f"o{answer.subject}", predicate, f"o{answer.object}")
            if signature in seen:
                stats.relations_duplicate += 1
                report.skip("duplicate_relation", **where, detail=f"the {subject} {predicate} the {obj}")
                continue
            seen.add(signature)
            stats.relations_found += 1
            found.append((caption, (f"o{answer.subject}", predicate, f"o{answer.object}", answer.phrase),
                          f"the {subject} {predicate} the {obj}"))
    validator = llm.stage("validate")
    verdicts = validator.prepare([(c, statement) for c, _, statement in found]) if validator is not None else None
    kept: dict[str, list[tuple[str, str, str, str]]] = {}
    for n, (caption, relation, _) in enumerate(found):
        if verdicts is not None:
            verdict: Verdict = verdicts[n]
            stats.relations_validated += 1
            stats.validation_llm_disagreed += verdict.llm is not True
            stats.validation_mllm_disagreed += verdict.mllm is False
            stats.validation_mllm_missing += verdict.mllm is None
            if not keep(verdict):
                stats.relations_discarded += 1
                continue
        stats.relations_kept += 1
        kept.setdefault(caption.example_id, []).append(relation)
    return kept
