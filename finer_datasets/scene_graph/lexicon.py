"""The bundled offline vocabularies (``finer_datasets/vocab/lexicon.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["Lexicon", "Group", "default_lexicon", "strip_copula"]

_COPULAS = ("is ", "are ")


def strip_copula(predicate: str) -> tuple[str, str]:
    """Split ``"is lying on"`` into ``("is ", "lying on")``; predicates without a copula give ``("", p)``."""
    for copula in _COPULAS:
        if predicate.startswith(copula):
            return copula, predicate[len(copula):]
    return "", predicate


Group = tuple[str, ...]


def _groups(entries: list) -> tuple[Group, ...]:
    return tuple((e,) if isinstance(e, str) else tuple(e) for e in entries)


@dataclass(frozen=True)
class Lexicon:
    """Object taxonomy, attribute families and relation phrases, as groups of near-synonyms.

    Every vocabulary is a list of *groups*: words in one group mean (nearly) the same thing, so a
    negative is never drawn from the group of the positive or of any word of the image.
    """

    objects: dict[str, tuple[Group, ...]]
    families: dict[str, tuple[Group, ...]]
    family_nouns: dict[str, str]
    relation_families: dict[str, tuple[Group, ...]]
    contrasts: tuple[tuple[str, str], ...]

    @classmethod
    def from_json(cls, data: dict) -> Lexicon:
        return cls(
            objects={k: _groups(v) for k, v in data["objects"].items()},
            families={k: _groups(v["values"]) for k, v in data["attribute_families"].items()},
            family_nouns={k: v["noun"] for k, v in data["attribute_families"].items()},
            relation_families={k: _groups(v) for k, v in data["relations"]["families"].items()},
            contrasts=tuple((a, b) for a, b in data["relations"]["contrasts"]),
        )

    @staticmethod
    def _find(vocab: dict[str, tuple[Group, ...]], word: str) -> tuple[str, Group] | None:
        for name, groups in vocab.items():
            for group in groups:
                if word in group:
                    return name, group
        return None

    def super_category(self, name: str) -> str | None:
        """Super-category of an object name (by full name, then by its last word)."""
        name = name.lower().strip()
        for candidate in (name, name.split()[-1] if name else ""):
            found = self._find(self.objects, candidate)
            if found:
                return found[0]
        return None

    def family_of(self, word: str) -> str | None:
        """Attribute family of a single word (``"red"`` -> ``"color"``)."""
        found = self._find(self.families, word.lower())
        return found[0] if found else None

    def relation_family(self, core: str) -> str | None:
        found = self._find(self.relation_families, core)
        return found[0] if found else None

    def synonyms(self, word: str) -> Group:
        """The group of ``word`` in any vocabulary (``(word,)`` when it is in none)."""
        word = word.lower()
        for vocab in (self.objects, self.families, self.relation_families):
            found = self._find(vocab, word)
            if found:
                return found[1]
        return (word,)

    def contrasts_of(self, core: str) -> list[str]:
        out = []
        for a, b in self.contrasts:
            if core == a:
                out.append(b)
            elif core == b:
                out.append(a)
        return out


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """The lexicon shipped with the package."""
    text = (Path(__file__).parent / "vocab" / "lexicon.json").read_text("utf-8")
    return Lexicon.from_json(json.loads(text))
