"""Small, dependency-free text helpers: unicode clean-up, sentence splitting, list joining."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean_text", "split_sentences", "join_list", "words", "article", "norm"]

# Zero-width characters and the byte-order mark are removed; other format/control characters too.
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACES = re.compile(r"\s+")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def clean_text(text: str) -> str:
    """NFC-normalise, drop zero-width and control characters, unify quotes and collapse spaces."""
    text = unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH).translate(_QUOTES)
    text = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    return _SPACES.sub(" ", text).strip()


def norm(text: str) -> str:
    """Case- and whitespace-insensitive form of a phrase (for comparisons: how a reader tells two
    phrases apart)."""
    return " ".join(text.lower().split())


def split_sentences(text: str) -> list[str]:
    """Split a (cleaned) paragraph into sentences, keeping their final punctuation."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def join_list(items: list[str] | tuple[str, ...]) -> str:
    """``a`` / ``a and b`` / ``a, b, and c`` (serial comma, as in the FINER questions)."""
    if not items:
        raise ValueError("cannot join an empty list")
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, apostrophes and hyphens)."""
    return re.findall(r"[a-z0-9'-]+", text.lower())


def article(word: str) -> str:
    """``a`` or ``an`` before ``word`` (by its first letter)."""
    return "an" if word[:1].lower() in "aeiou" else "a"
