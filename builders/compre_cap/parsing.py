"""Rule-based rewriting of CompreCap annotation sentences (paper, section B.1).

* Attribute sentences become ``with ...`` phrases: ``The cat is black and orange.`` ->
  ``with a black and orange color``; ``The cat has a fluffy tail.`` -> ``with a fluffy tail``;
  adjectives of different families are split (``The box is small and blue.`` -> ``with a small
  size`` + ``with a blue color``). Anything else is left to the LLM path (``None`` here).
* Relation sentences become ``(predicate, object)``: ``The cat is lying on the desk.`` ->
  ``("is lying on", <desk>)``, where the object must be another annotated object of the image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from finer_datasets.core.text import article
from finer_datasets.scene_graph.lexicon import Lexicon

__all__ = ["rewrite_attribute", "parse_relation", "RelationParse", "mention_pattern"]

_DET_WORDS = r"(?:the|a|an|this|that|its|their|his|her)"
_DETERMINER = _DET_WORDS + r"\s+"
_INTENSIFIERS = {"very", "quite", "rather", "mostly", "fairly", "slightly", "light", "dark", "bright"}



def _and(values: list[str]) -> str:
    """``black`` / ``black and orange`` / ``black, white and orange``."""
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def mention_pattern(name: str) -> str:
    """Regex for a mention of an object name: word-bounded, optional plural ``s``/``es``."""
    return rf"(?<![\w-]){re.escape(name.lower())}(?:e?s)?(?![\w-])"


def rewrite_attribute(sentence: str, name: str, lexicon: Lexicon) -> list[str] | None:
    """Rewrite one attribute sentence about object ``name``; ``None`` when no rule applies."""
    text = sentence.strip().rstrip(".!").strip()
    subject = rf"^(?:{_DETERMINER})?(?:{mention_pattern(name)}|it|they)\s+"
    match = re.match(subject + r"(is|are|has|have)\s+(.+)$", text, flags=re.IGNORECASE)
    if not match:
        return None
    verb, rest = match.group(1).lower(), match.group(2).strip()
    if verb in ("has", "have"):
        return [f"with {rest}"]
    lowered = rest.lower()
    if lowered.startswith("made of "):
        material = rest[len("made of "):]
        return [f"with {article(material)} {material} material"]
    if lowered.startswith("wearing "):
        return [f"with {rest[len('wearing '):]}"]
    tokens = [t for t in re.split(r",\s*|\s+and\s+|\s+", lowered) if t and t != "and"]
    tokens = [t for t in tokens if t not in _INTENSIFIERS] or tokens
    families: dict[str, list[str]] = {}
    for token in tokens:
        family = lexicon.family_of(token)
        if family is None:
            break
        families.setdefault(family, []).append(token)
    else:
        return [
            f"with {article(values[0])} {_and(values)} {lexicon.family_nouns[family]}"
            for family, values in families.items()
        ]
    if len(tokens) == 1 and re.fullmatch(r"[a-z][a-z-]*", tokens[0]):
        return [f"with {article(tokens[0])} {tokens[0]} appearance"]
    return None


@dataclass(frozen=True)
class RelationParse:
    """A parsed relation sentence, or the reason it could not be parsed."""

    predicate: str = ""
    object_index: int = -1
    reason: str = ""
    detail: str = ""


def parse_relation(sentence: str, subject_index: int, names: list[str]) -> RelationParse:
    """Parse ``The {subject} {predicate} [the] {object}[ ...].``.

    ``names`` are the category names of the image's objects (by index); the sentence must start
    with the subject's name, and the first later mention of another object is the object.
    """
    text = sentence.strip().rstrip(".!").strip()
    lowered = text.lower()
    subject_name = names[subject_index]
    start = re.match(rf"^(?:{_DETERMINER})?{mention_pattern(subject_name)}\s+", lowered)
    if not start:
        return RelationParse(reason="relation_unparsed", detail=f"does not start with its subject {subject_name!r}")
    rest = lowered[start.end():]
    best: tuple[int, int, int] | None = None  # (position, -length, object index): leftmost, longest
    for index, name in enumerate(names):
        if index == subject_index:
            continue  # another object with the same name is a valid object
        m = re.search(mention_pattern(name), rest)
        if m and (best is None or (m.start(), m.start() - m.end(), index) < best):
            best = (m.start(), m.start() - m.end(), index)
    if best is None:
        return RelationParse(reason="relation_unknown_object", detail="names no other annotated object of the image")
    position, _, object_index = best
    predicate = re.sub(rf"\s*\b{_DET_WORDS}$", "", rest[:position].strip()).strip()
    if not re.search(r"[a-z]", predicate):
        return RelationParse(reason="relation_unparsed", detail="no relation phrase between subject and object")
    return RelationParse(predicate=predicate, object_index=object_index)
