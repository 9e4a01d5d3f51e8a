"""Negatives: four wrong-but-plausible replacements for every scene-graph element.

A *negatives provider* maps a :class:`~finer_datasets.scene_graph.graph.SceneGraph` (and a seeded
``random.Random``) to ``{element_id: (n1, n2, n3, n4)}``. Elements it has nothing for are left
out and skipped by the builder (counted as ``no_negatives``). Two providers ship here:

* :class:`PrecomputedNegatives` reads a JSON file (``schemas/negatives.schema.json``), e.g.
  written by an LLM pipeline, keyed by image id and element id;
* :class:`LexicalNegatives` is an offline generator over the bundled vocabularies.

Later providers (LLM generation, MLLM entropy filtering) implement the same protocol.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Callable, Mapping, Protocol, runtime_checkable

from finer_datasets.constants import NEGATIVES_PER_ELEMENT
from finer_datasets.core.source import parse_json, read_regular
from finer_datasets.core.text import article, words
from finer_datasets.core.validation import schema_path, validate
from finer_datasets.errors import NegativesError, RecordValidationError, SourceError
from finer_datasets.scene_graph.graph import SceneGraph, reading
from finer_datasets.scene_graph.lexicon import Lexicon, default_lexicon, strip_copula

__all__ = [
    "NEGATIVES_PER_ELEMENT",
    "NegativesProvider",
    "LexicalNegatives",
    "PrecomputedNegatives",
    "check_negatives",
    "present_in",
    "present_phrases",
    "negatives_file_dict",
]

NegativeMap = dict[str, tuple[str, ...]]
SCHEMA = schema_path("negatives")


@runtime_checkable
class NegativesProvider(Protocol):
    """What a builder needs from a source of negatives."""

    kind: str

    def fingerprint(self) -> str:
        """sha256 (hex) identifying the provider and its data, recorded in the manifest."""
        ...

    def negatives_for(self, graph: SceneGraph, rng: random.Random) -> NegativeMap:
        """Return 4 negatives per element id; ids with nothing are left out."""
        ...


def present_phrases(graph: SceneGraph, kind: str) -> list[str]:
    """The phrases of one kind that the image's scene graph holds, sorted: object names,
    attribute phrases or relation predicates (a negative must name none of them)."""
    if kind == "object":
        return sorted({o.name for o in graph.objects})
    if kind == "attribute":
        return sorted({a.text for o in graph.objects for a in o.attributes})
    return sorted({r.predicate for r in graph.relations})


def present_in(graph: SceneGraph, kind: str) -> set[str]:
    """:func:`present_phrases` as they read in a question (:func:`~.graph.reading`, as
    :func:`check_negatives` compares them)."""
    return {reading(kind, p) for p in present_phrases(graph, kind)}


def check_negatives(element_id: str, positive: str, negatives: tuple[str, ...] | list[str],
                    present: set[str] = frozenset(), *, kind: str = "object") -> str | None:
    """Return why ``negatives`` are unusable for ``positive`` (``None`` when they are fine):
    not 4, empty, two that read the same in a question, one that reads as the positive, or one
    naming an element of the image (``present``, as :func:`present_in` gives it). Phrases are
    compared as they read in a question (:func:`~.graph.reading` of ``kind``: case, spacing,
    articles and a relation's copula ignored), so distinct negatives stay distinct options."""
    if len(negatives) != NEGATIVES_PER_ELEMENT:
        return f"{element_id}: expected {NEGATIVES_PER_ELEMENT} negatives, got {len(negatives)}"
    folded = [reading(kind, n) for n in negatives]
    if any(not n for n in folded):
        return f"{element_id}: empty negative"
    if len(set(folded)) != len(folded):
        return f"{element_id}: negatives are not distinct (as they read in a question): {list(negatives)}"
    if reading(kind, positive) in folded:
        return f"{element_id}: a negative equals the positive {positive!r}"
    clash = [n for n, f in zip(negatives, folded) if f in present]
    if clash:
        return f"{element_id}: negative {clash[0]!r} names an element present in the same image"
    return None


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("es") and word[:-2].endswith(("s", "x", "ch", "sh")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


class LexicalNegatives:
    """Offline negatives from the bundled vocabularies; deterministic given the ``rng``.

    * objects: nouns of the same super-category first, then of the other categories;
    * attributes: other values of the family (colour, size, dimension, pattern, material, shape,
      texture, state) of the first family word in the phrase, else ``with a ... <noun>``
      phrases of other families;
    * relations: contrasting phrases first (``on`` / ``under``), then the same family, then any.

    Candidates come in groups of near-synonyms; one word per group is taken before any group
    gives a second, and a group is never used when it holds the positive or any word naming an
    element of the image: an object name or a word of any attribute phrase (for objects), a
    value used by any attribute (for attributes), a relation phrase of any relation (for
    relations). So the 4 negatives are distinct, differ from the positive and name nothing in
    the image's scene graph.
    """

    kind = "lexical"

    def __init__(self, lexicon: Lexicon | None = None):
        self.lexicon = lexicon or default_lexicon()

    def fingerprint(self) -> str:
        payload = json.dumps(
            {
                "kind": self.kind,
                "objects": self.lexicon.objects,
                "families": self.lexicon.families,
                "nouns": self.lexicon.family_nouns,
                "relations": self.lexicon.relation_families,
                "contrasts": self.lexicon.contrasts,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def negatives_for(self, graph: SceneGraph, rng: random.Random) -> NegativeMap:
        object_words = {w for o in graph.objects for w in words(o.name)}
        attr_words = {w for o in graph.objects for a in o.attributes for w in words(a.text)}
        image_words = {_singular(w) for w in object_words | attr_words} | object_words | attr_words
        attr_texts = {a.text.lower() for o in graph.objects for a in o.attributes}
        predicates = {strip_copula(r.predicate)[1].lower() for r in graph.relations}

        out: NegativeMap = {}
        for obj in graph.objects:
            out[obj.id] = self._objects(obj.name, image_words, rng)
            for attr in obj.attributes:
                out[attr.id] = self._attribute(attr.text, attr_words, attr_texts, rng)
        for rel in graph.relations:
            out[rel.id] = self._relation(rel.predicate, predicates, rng)
        texts = {element_id: (kind, text) for kind, element_id, text in graph.elements()}
        for element_id, negs in out.items():
            kind, text = texts[element_id]
            problem = check_negatives(element_id, text, negs, kind=kind)
            if problem:  # the vocabularies ran out: not expected with the bundled lexicon
                raise NegativesError(problem, path="<lexical generator>", record=graph.image_id, field=element_id)
        return out

    @staticmethod
    def _shuffled(items: tuple | list, rng: random.Random) -> list:
        items = sorted(items)
        rng.shuffle(items)
        return items

    @staticmethod
    def _pick(groups: list[tuple[str, ...]], allowed: Callable[[str], bool], n: int = NEGATIVES_PER_ELEMENT) -> list[str]:
        """The first word of each usable group (in order), then second words, until ``n`` are picked."""
        usable: list[tuple[str, ...]] = []
        seen: set[tuple[str, ...]] = set()
        picked: list[str] = []
        for group in groups:  # lazily: usually the first few groups are enough
            if group in seen:
                continue
            seen.add(group)
            if all(allowed(w) for w in group):
                usable.append(group)
                picked.append(group[0])
                if len(picked) == n:
                    return picked
        for depth in range(1, max((len(g) for g in usable), default=1)):
            for group in usable:
                if depth < len(group) and group[depth] not in picked:
                    picked.append(group[depth])
                    if len(picked) == n:
                        return picked
        return picked

    def _objects(self, name: str, image_words: set[str], rng: random.Random) -> tuple[str, ...]:
        lex = self.lexicon
        category = lex.super_category(name)
        same = self._shuffled(lex.objects.get(category, ()), rng) if category else []
        others = self._shuffled([g for c, gs in lex.objects.items() if c != category for g in gs], rng)
        banned = image_words | set(lex.synonyms(name)) | {name.lower()}

        def allowed(word: str) -> bool:
            return not any(w in banned or _singular(w) in banned for w in words(word))

        return tuple(self._pick(same + others, allowed))

    def _attribute(self, text: str, image_words: set[str], image_texts: set[str], rng: random.Random) -> tuple[str, ...]:
        lex = self.lexicon
        tokens = text.split(" ")
        lowered = [t.lower().strip(",") for t in tokens]
        family = next((f for f in map(lex.family_of, lowered) if f), None)
        picked: list[str] = []

        def allowed(word: str) -> bool:
            return word not in image_words

        if family is not None:
            start = next(i for i, t in enumerate(lowered) if lex.family_of(t) == family)
            end = start + 1
            while end < len(lowered) and (lowered[end] in ("and", "or") or lex.family_of(lowered[end]) == family):
                end += 1  # "black and orange", "black, white and orange"
            while end > start + 1 and lowered[end - 1] in ("and", "or"):
                end -= 1
            for value in self._pick(self._shuffled(lex.families[family], rng), allowed, n=len(lex.families[family])):
                new = tokens[:start] + [value] + tokens[end:]
                if start >= 1 and lowered[start - 1] in ("a", "an"):
                    new[start - 1] = article(value)
                candidate = " ".join(new)
                if candidate.lower() not in image_texts:
                    picked.append(candidate)
                if len(picked) == NEGATIVES_PER_ELEMENT:
                    return tuple(picked)
        # No family word, or too few unused values: phrases of the other attribute families.
        for other in self._shuffled([f for f in lex.families if f != family], rng):
            values = self._pick(self._shuffled(lex.families[other], rng), allowed, n=1)
            if values:
                candidate = f"with {article(values[0])} {values[0]} {lex.family_nouns[other]}"
                if candidate.lower() not in image_texts:
                    picked.append(candidate)
            if len(picked) == NEGATIVES_PER_ELEMENT:
                break
        return tuple(picked)

    def _relation(self, predicate: str, image_predicates: set[str], rng: random.Random) -> tuple[str, ...]:
        lex = self.lexicon
        copula, core = strip_copula(predicate)
        core = core.lower()
        family = lex.relation_family(core)
        contrasts = [lex.synonyms(c) for c in self._shuffled(lex.contrasts_of(core), rng)]
        same = self._shuffled(lex.relation_families.get(family, ()), rng) if family else []
        everything = self._shuffled([g for f, gs in lex.relation_families.items() if f != family for g in gs], rng)
        banned = set(image_predicates) | {core} | set(lex.synonyms(core))
        picked = self._pick(contrasts + same + everything, lambda w: w not in banned)
        return tuple(copula + p for p in picked)


class PrecomputedNegatives:
    """Negatives read from a JSON file in the ``finer-negatives/1`` format.

    ``{"format": "finer-negatives/1", "images": {"<image_id>": {"<element_id>":
    {"positive": "<text>", "negatives": [4 strings]}}}}``. The ``positive`` must equal the
    element's text in the scene graph (so a file made for another build is refused); each entry
    must hold 4 distinct negatives, none equal to the positive.
    """

    kind = "file"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            raw = read_regular(self.path)  # a FIFO or device is refused, never opened
        except SourceError as exc:
            raise NegativesError(exc.reason, path=self.path) from exc
        except OSError as exc:
            raise NegativesError(f"cannot read negatives file: {exc.strerror}", path=self.path) from exc
        self._sha = hashlib.sha256(raw).hexdigest()
        try:
            data = parse_json(raw, self.path)
        except SourceError as exc:
            raise NegativesError(exc.reason, path=self.path, line=exc.line, field=exc.field) from exc
        try:
            validate(SCHEMA, data)
        except RecordValidationError as exc:
            raise self._locate(data, exc) from exc
        self._images: Mapping[str, Mapping[str, Mapping]] = data["images"]

    def _locate(self, data: dict, exc: RecordValidationError) -> NegativesError:
        """Name the image and element of a schema error (image ids are re-found by key)."""
        images = data.get("images") if isinstance(data, dict) else None
        if isinstance(images, dict) and exc.instance_path.startswith("/images/"):
            for image_id, entries in images.items():
                try:
                    validate(SCHEMA, {"format": data.get("format"), "images": {image_id: entries}})
                except RecordValidationError as inner:
                    parts = inner.instance_path.split("/")[3:]
                    return NegativesError(inner.message, path=self.path, record=image_id, field="/".join(parts) or None)
        field = exc.instance_path.strip("/") or None
        return NegativesError(exc.message, path=self.path, field=field)

    def fingerprint(self) -> str:
        return self._sha

    def negatives_for(self, graph: SceneGraph, rng: random.Random) -> NegativeMap:
        entries = self._images.get(graph.image_id, {})
        texts = {element_id: text for _, element_id, text in graph.elements()}
        kinds = {element_id: kind for kind, element_id, _ in graph.elements()}
        phrases = {kind: present_in(graph, kind) for kind in set(kinds.values())}  # once per image, not per element
        out: NegativeMap = {}
        for element_id, entry in entries.items():
            if element_id not in texts:
                raise NegativesError(
                    "element id not in the image's scene graph", path=self.path, record=graph.image_id, field=element_id
                )
            if entry["positive"].strip().lower() != texts[element_id].strip().lower():
                raise NegativesError(
                    f"positive {entry['positive']!r} does not match the scene graph's {texts[element_id]!r}",
                    path=self.path,
                    record=graph.image_id,
                    field=element_id,
                )
            kind = kinds[element_id]
            present = phrases[kind] - {reading(kind, texts[element_id])}
            problem = check_negatives(element_id, texts[element_id], entry["negatives"], present, kind=kind)
            if problem:
                raise NegativesError(problem, path=self.path, record=graph.image_id, field=element_id)
            out[element_id] = tuple(entry["negatives"])
        return out


def negatives_file_dict(graphs_with_negatives: Mapping[str, tuple[SceneGraph, NegativeMap]]) -> dict:
    """Build a ``finer-negatives/1`` document from ``{image_id: (graph, negatives)}``."""
    images: dict[str, dict] = {}
    for image_id in sorted(graphs_with_negatives):
        graph, negs = graphs_with_negatives[image_id]
        images[image_id] = {
            element_id: {"positive": text, "negatives": list(negs[element_id])}
            for _, element_id, text in graph.elements()
            if element_id in negs
        }
    return {"format": "finer-negatives/1", "images": images}

