"""Was a phrase copied from a text? The cheap, deterministic guard against an LLM that invents.

An extraction prompt asks the model to copy phrases *verbatim* from a source text (a caption);
:class:`VerbatimGuard` accepts a phrase only when it occurs in that text as whole words, after
both are normalised the same way (Unicode clean-up, case, whitespace, typographic quotes).
Whatever fails is dropped and counted by the caller, never silently repaired.
"""

from __future__ import annotations

import re
from functools import lru_cache

from finer_datasets.core.text import clean_text

__all__ = ["VerbatimGuard", "normalize_phrase"]


def normalize_phrase(text: str) -> str:
    """``clean_text`` (NFC, quotes, control characters, one space), lower case."""
    return clean_text(text).lower()


@lru_cache(maxsize=4096)
def _pattern(phrase: str) -> re.Pattern[str]:
    # whole words: no letter or digit may touch either end of the phrase
    return re.compile(r"(?<![^\W_])" + re.escape(phrase) + r"(?![^\W_])")


class VerbatimGuard:
    """``phrase in VerbatimGuard(text)``: ``phrase`` occurs in ``text`` as whole words, ignoring
    case and whitespace differences. An empty phrase is never contained."""

    def __init__(self, text: str):
        self.text = normalize_phrase(text)

    def __contains__(self, phrase: object) -> bool:
        if not isinstance(phrase, str):
            return False
        needle = normalize_phrase(phrase)
        return bool(needle) and _pattern(needle).search(self.text) is not None

    def find(self, phrase: str) -> int:
        """Offset of the first whole-word occurrence of ``phrase`` in the normalised text, or -1."""
        needle = normalize_phrase(phrase)
        match = _pattern(needle).search(self.text) if needle else None
        return match.start() if match else -1
