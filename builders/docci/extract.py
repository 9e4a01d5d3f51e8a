"""The two extraction stages of FINER-DOCCI (paper, section B.2), as model stages.

* :class:`ObjectExtractor` (stage 1, task ``extract_objects``): one request per caption; the LLM
  copies object names and their attributes verbatim from the caption, grouped per object.
* :class:`RelationExtractor` (stage 2, task ``extract_relation``): one request per candidate
  object pair (see :func:`.phrases.candidate_pairs`); the LLM returns the exact relation phrase
  of the caption, with which object is its subject, or nothing.

Every phrase passes :class:`~finer_datasets.llm.verbatim.VerbatimGuard` against its caption; a
phrase that does not occur there is dropped and returned as such, so the builder counts it. An
answer that is not JSON, has the wrong shape, is truncated or names an object id it was not
given is re-asked (bounded, by the client); when the re-asks run out the element is marked
failed and the builder skips it. All requests of a stage go out concurrently through the
transcript (deduplicated, resumable) before the build reads the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finer_datasets.llm.client import LLMAnswerError, json_parser
from finer_datasets.llm.stages import Stage, gather
from finer_datasets.llm.verbatim import VerbatimGuard

from .phrases import ATTRIBUTE_KINDS

__all__ = ["MAX_OBJECTS", "ExtractedObject", "Extraction", "ObjectExtractor", "RelationAnswer", "RelationExtractor"]

#: most objects asked for (and kept) per caption
MAX_OBJECTS = 12
#: answer budget of one extraction (a long caption's objects and attributes)
EXTRACT_MAX_TOKENS = 2048
_OBJECTS_SCHEMA = {
    "type": "object", "required": ["objects"],
    "properties": {"objects": {"type": "array", "items": {
        "type": "object", "required": ["name", "attributes"],
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 120},
                       "attributes": {"type": "array", "items": {
                           "type": "object", "required": ["text", "kind"],
                           "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 200},
                                          "kind": {"enum": list(ATTRIBUTE_KINDS)}}}}}}}}}
_RELATION_SCHEMA = {
    "type": "object", "required": ["relation"],
    "properties": {"relation": {"oneOf": [
        {"type": "null"},
        {"type": "object", "required": ["subject", "object", "phrase"],
         "properties": {"subject": {"type": "string"}, "object": {"type": "string"},
                        "phrase": {"type": "string", "minLength": 1, "maxLength": 120}}}]}}}


@dataclass(frozen=True)
class ExtractedObject:
    """An object of stage 1 that passed the guard: its verbatim name and verbatim attributes."""

    name: str
    attributes: tuple[tuple[str, str], ...]  # (verbatim text, kind)


@dataclass(frozen=True)
class Extraction:
    """Stage 1's answer for one caption after the guard.

    ``dropped`` lists ``(field, phrase)`` of every phrase not found in the caption (an object's
    attributes go with it); ``over_limit`` counts objects beyond :data:`MAX_OBJECTS`.
    """

    objects: tuple[ExtractedObject, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    over_limit: int = 0


@dataclass(frozen=True)
class RelationAnswer:
    """Stage 2's answer for one pair: ``status`` is ``found``, ``none`` (the caption states no
    relation), ``not_in_caption`` (the phrase failed the guard) or ``failed`` (no usable answer)."""

    status: str
    subject: int = -1  # index into the image's objects
    object: int = -1
    phrase: str = ""


class ObjectExtractor(Stage):
    """Stage 1: objects and their attributes, copied verbatim from the caption."""

    label = "object and attribute extraction"
    tasks = ("extract_objects",)

    def prepare(self, captions: Sequence[Any]) -> list[Extraction | None]:
        """One :class:`Extraction` per caption (``None``: no usable answer), in order."""
        return self.client.run(gather([self._one(c) for c in captions], "LLM stage 1: objects"))

    async def _one(self, caption: Any) -> Extraction | None:
        messages = self.prompts.render("extract_objects", description=caption.description, max_objects=MAX_OBJECTS)
        try:
            answer = await self.client.ask(messages, json_parser(_OBJECTS_SCHEMA),
                                           purpose=f"{caption.example_id} objects", max_tokens=EXTRACT_MAX_TOKENS)
        except LLMAnswerError:
            return None
        return guard_objects(answer["objects"], VerbatimGuard(caption.description))


def guard_objects(objects: list[dict[str, Any]], guard: VerbatimGuard) -> Extraction:
    """Keep the names and attributes that occur in the caption (pure; the stage-1 guard)."""
    kept: list[ExtractedObject] = []
    dropped: list[tuple[str, str]] = []
    over = 0
    for i, obj in enumerate(objects):
        if obj["name"] not in guard:
            dropped.append((f"objects[{i}].name", obj["name"]))
            continue
        if len(kept) == MAX_OBJECTS:
            over += 1
            continue
        attributes = []
        for j, attr in enumerate(obj["attributes"]):
            if attr["text"] in guard:
                attributes.append((attr["text"], attr["kind"]))
            else:
                dropped.append((f"objects[{i}].attributes[{j}]", attr["text"]))
        kept.append(ExtractedObject(obj["name"], tuple(attributes)))
    return Extraction(tuple(kept), tuple(dropped), over)


class RelationExtractor(Stage):
    """Stage 2: for a candidate object pair, the caption's exact relation phrase, or nothing."""

    label = "relation extraction"
    tasks = ("extract_relation",)

    def prepare(self, jobs: Sequence[tuple[Any, Sequence[str], int, int]]) -> list[RelationAnswer]:
        """``jobs``: ``(caption, object names, i, j)``; one :class:`RelationAnswer` per job, in order."""
        return self.client.run(gather([self._one(*job) for job in jobs], "LLM stage 2: relations"))

    async def _one(self, caption: Any, names: Sequence[str], i: int, j: int) -> RelationAnswer:
        ids = {f"o{i}": i, f"o{j}": j}

        def check(value: dict) -> str | None:
            rel = value["relation"]
            if rel is None:
                return None
            unknown = [x for x in (rel["subject"], rel["object"]) if x not in ids]
            if unknown:
                return f"unknown object id {unknown[0]!r}: use o{i} and o{j}"
            if rel["subject"] == rel["object"]:
                return "subject and object must be the two different ids"
            return None

        messages = self.prompts.render("extract_relation", description=caption.description, first=names[i],
                                       first_id=f"o{i}", second=names[j], second_id=f"o{j}")
        try:
            answer = await self.client.ask(messages, json_parser(_RELATION_SCHEMA, check),
                                           purpose=f"{caption.example_id} relation o{i}/o{j}")
        except LLMAnswerError:
            return RelationAnswer("failed")
        rel = answer["relation"]
        if rel is None:
            return RelationAnswer("none")
        status = "found" if rel["phrase"] in VerbatimGuard(caption.description) else "not_in_caption"
        return RelationAnswer(status, ids[rel["subject"]], ids[rel["object"]], rel["phrase"])
