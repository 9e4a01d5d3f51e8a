"""The scene-graph data model shared by every FINER builder.

A :class:`SceneGraph` holds the *positive* elements of one image: objects, their attributes
(``with ...`` phrases) and relations between objects. Elements have stable ids derived from
their position in the source (``o3``, ``o3_a1``, ``r7``); negatives files are keyed by them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

from finer_datasets.scene_graph.lexicon import strip_copula

__all__ = ["SGObject", "SGAttribute", "SGRelation", "SceneGraph", "ElementKind", "relation_phrase", "reading"]

ElementKind = Literal["object", "attribute", "relation"]
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_ARTICLES = frozenset({"a", "an", "the"})


@dataclass(frozen=True)
class SGAttribute:
    """An attribute of an object, as a ``with ...`` phrase."""

    id: str
    text: str
    source_text: str = ""


@dataclass(frozen=True)
class SGObject:
    """An annotated object: a category name and its attributes."""

    id: str
    name: str
    attributes: tuple[SGAttribute, ...] = ()


@dataclass(frozen=True)
class SGRelation:
    """``subject predicate object`` between two objects of the same image (ids)."""

    id: str
    subject: str
    predicate: str
    object: str
    source_text: str = ""


@dataclass(frozen=True)
class SceneGraph:
    """The positive scene graph of one image."""

    image_id: str
    image_file: str
    objects: tuple[SGObject, ...] = ()
    relations: tuple[SGRelation, ...] = ()
    _by_id: dict[str, SGObject] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({o.id: o for o in self.objects})

    def object(self, object_id: str) -> SGObject:
        """Return the object with id ``object_id``."""
        return self._by_id[object_id]

    def elements(self) -> Iterator[tuple[ElementKind, str, str]]:
        """Yield ``(kind, element_id, positive_text)`` for every element, in id order."""
        for obj in self.objects:
            yield "object", obj.id, obj.name
            for attr in obj.attributes:
                yield "attribute", attr.id, attr.text
        for rel in self.relations:
            yield "relation", rel.id, rel.predicate

    def to_dict(self, negatives: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
        """JSON form (``scene_graph.schema.json``); ``negatives`` maps element id to its 4 negatives."""
        negs = negatives or {}

        def neg(element_id: str) -> list[str]:
            return list(negs.get(element_id, ()))

        return {
            "image_id": self.image_id,
            "image_file": self.image_file,
            "objects": [
                {
                    "id": o.id,
                    "name": o.name,
                    "attributes": [
                        {"id": a.id, "text": a.text, "source_text": a.source_text, "negatives": neg(a.id)}
                        for a in o.attributes
                    ],
                    "negatives": neg(o.id),
                }
                for o in self.objects
            ],
            "relations": [
                {
                    "id": r.id,
                    "subject": r.subject,
                    "predicate": r.predicate,
                    "object": r.object,
                    "source_text": r.source_text,
                    "negatives": neg(r.id),
                }
                for r in self.relations
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneGraph:
        """Inverse of :meth:`to_dict` (negatives are dropped)."""
        return cls(
            image_id=data["image_id"],
            image_file=data["image_file"],
            objects=tuple(
                SGObject(
                    id=o["id"],
                    name=o["name"],
                    attributes=tuple(SGAttribute(a["id"], a["text"], a.get("source_text", "")) for a in o["attributes"]),
                )
                for o in data["objects"]
            ),
            relations=tuple(
                SGRelation(r["id"], r["subject"], r["predicate"], r["object"], r.get("source_text", ""))
                for r in data["relations"]
            ),
        )


def relation_phrase(predicate: str, object_name: str) -> str:
    """``is lying on`` + ``desk`` -> ``lying on the desk``; ``holds`` -> ``that holds the desk``."""
    copula, core = strip_copula(predicate)
    return f"{core} the {object_name}" if copula else f"that {core} the {object_name}"


def reading(kind: str, text: str) -> str:
    """What an element's phrase says once it is put in a question, for telling phrases apart: the
    words of the phrase as the question shows it (a relation through :func:`relation_phrase`),
    lower case, without punctuation, articles or -- for a relation -- the leading copula or
    ``that`` (``is looking at``, ``are looking at`` and ``Looking  at`` all read ``looking at``).

    A function of the rendered words, so two phrases that render alike (ignoring case and
    spacing) always read alike: negatives whose readings differ give distinct options.
    """
    if not _WORD.search(text):
        return ""
    words = _WORD.findall((relation_phrase(text, "") if kind == "relation" else text).lower())
    if kind == "relation":
        while words[:1] in (["that"], ["is"], ["are"]):
            words = words[1:]
    return " ".join([w for w in words if w not in _ARTICLES] or words)
