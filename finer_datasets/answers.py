"""Reading the chosen option letter out of a model's raw answer to a FINER MCQ.

FINER prompts end with "Please answer with a single capital letter (A, B, C, D, or E)." (paper,
section D), but models still answer "(B)", "Answer: B", "**B**", "B: No, but I can see ..." or
repeat the text of an option. :func:`parse_answer` reads all of these in its default ``strict``
mode and returns ``None`` -- scored as wrong -- whenever the answer is empty or ambiguous: it
never guesses. ``mode="official"`` reproduces the parser released with FINER so that scores can
be compared with the published numbers (see :func:`parse_answer` for its flaw).
"""

from __future__ import annotations

import re
from typing import Sequence

__all__ = ["LETTERS", "PARSER_MODES", "parse_answer", "normalize_option_text"]

LETTERS = "ABCDE"
PARSER_MODES = ("strict", "official")

# Markdown emphasis and code marks: "**B**", "`B`", "__B__".
_MARKUP = re.compile(r"[*`]+|(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])")
_SPACE = re.compile(r"\s+")

# The whole answer is a letter: "B", "b", "(B)", "[b]", "B.", "B)", "B:", "(B).".
_BARE = re.compile(r"^[(\[{<]?\s*([A-Ea-e])\s*[)\]}>]?\s*[.:)\],;!]?$")
# A letter opening the answer, followed by text: "B) text", "B. text", "B: text", "(B) text", "(b) text".
_LEADING = re.compile(r"^(?:[(\[]\s*([A-Ea-e])\s*[)\]]\s*[.:\-–—]?|([A-E])\s*(?:[.:)]|\s[-–—]))(?:\s+|$)")
# A letter named by a lead-in phrase: "Answer: B", "The answer is (B)", "option C", "I'd choose D".
# The phrase is matched case-insensitively, the letter is not.
_LEAD_IN = (
    r"(?i:\banswer\s*(?:is|:|=|-)?|\b(?:option|choice)\s*(?:is|:)?|"
    r"\bi(?:\s+would|\s+will|['’]d|['’]ll)?\s+(?:choose|pick|select|go\s+with))\s*[:\-]?\s*[(\[]?\s*"
)
# Uppercase after a lead-in: any continuation ("Option A is correct"). Lowercase only when nothing
# but punctuation follows, so that "the answer is a cat" is not read as A.
_LEAD_IN_UPPER = re.compile(_LEAD_IN + r"([A-E])(?![A-Za-z0-9'’]|\.[A-Za-z])")
_LEAD_IN_LOWER = re.compile(_LEAD_IN + r"([a-e])\s*[)\]]?\s*(?=$|[.,;:!?)\]])")
# Any standalone capital A-E ("A or B", "B, not C", "I think C").
# "E.g." is an abbreviation, not a letter.
_TOKEN = re.compile(r"(?<![A-Za-z0-9'’])([A-E])(?![A-Za-z0-9'’]|\.[A-Za-z])")
# "A" followed by a lowercase word is an article ("A cat is ..."), unless the word links letters.
_ARTICLE_NEXT = re.compile(r"\s+([a-z][a-z'’-]*)")
_LINKING_WORDS = frozenset({"or", "and", "nor", "vs", "versus", "then", "but", "not", "is", "are", "was", "seems",
                            "would", "could", "might", "should", "because", "since", "as", "to", "from", "through"})


def normalize_option_text(text: str) -> str:
    """Option text as compared by :func:`parse_answer`: case-folded, whitespace collapsed,
    surrounding quotes/markup and final periods removed."""
    text = _MARKUP.sub("", text)
    text = _SPACE.sub(" ", text).strip().strip("\"'“”‘’").strip()
    return text.rstrip(".").strip().casefold()


def _article_a(text: str, end: int) -> bool:
    """Whether the capital ``A`` ending at ``end`` reads as the English article."""
    match = _ARTICLE_NEXT.match(text, end)
    return bool(match) and match.group(1) not in _LINKING_WORDS


def _option_matches(text: str, options: Sequence[str]) -> set[str]:
    norm = normalize_option_text(text)
    if not norm:
        return set()
    return {LETTERS[i] for i, option in enumerate(options[: len(LETTERS)]) if normalize_option_text(option) == norm}


def _without_options(text: str, options: Sequence[str]) -> str:
    """``text`` with every verbatim occurrence of an option blanked out, so that letters inside
    a repeated option ("B: No, but I can see ...") are not taken as extra answers."""
    for option in sorted(options, key=len, reverse=True):
        core = option.strip().rstrip(".").strip()
        if len(core) > 1:
            # A lowercase placeholder word keeps "A <option>" reading as an article.
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(core)}(?![A-Za-z0-9])", "zzz", text, flags=re.IGNORECASE)
    return text


def _parse_official(text: str) -> str | None:
    for char in text:
        if char in "ABCDEabcde":
            return char.upper()
    return None


def _parse_strict(text: str, options: Sequence[str] | None) -> str | None:
    text = _SPACE.sub(" ", _MARKUP.sub("", text)).strip().strip("\"'“”‘’").strip()
    if not text:
        return None
    bare = _BARE.match(text)
    if bare:
        return bare.group(1).upper()

    letters: set[str] = set()
    lead = _LEADING.match(text)
    if lead:
        letters.add((lead.group(1) or lead.group(2)).upper())
    scan = text
    if options:
        # The answer is an option's text, alone or after its letter ("B. No, but I can see ...").
        letters |= _option_matches(text, options)
        if lead:
            letters |= _option_matches(text[lead.end():], options)
        scan = _without_options(text, options)
    for pattern in (_LEAD_IN_UPPER, _LEAD_IN_LOWER):
        letters.update(m.group(1).upper() for m in pattern.finditer(scan))
    # Every other standalone capital letter is a mention: "A or B" names two letters.
    for m in _TOKEN.finditer(scan):
        if m.group(1) == "A" and _article_a(scan, m.end()):
            continue
        letters.add(m.group(1))
    return letters.pop() if len(letters) == 1 else None


def parse_answer(text: str, options: Sequence[str] | None = None, mode: str = "strict") -> str | None:
    """The option letter (``"A"`` to ``"E"``) a model's raw answer chooses, or ``None``.

    ``mode="strict"`` (the default) accepts the forms models actually produce::

        "B"  "b"  "(B)"  "B."  "B) text"  "Answer: B"  "The answer is B."  "**B**"
        "B: No, but I can see ..."  "Option C is correct"  "I think D"

    and, when ``options`` (the five option texts in A-E order) are given, the full text of
    exactly one option (case-, whitespace- and final-period-insensitive), alone or after its
    letter. It returns ``None`` -- never a guess -- when the answer is empty, names two different
    letters ("A or B", "A and C", "B, not C"), or gives a letter and the text of another option.
    A capital "A" followed by an ordinary word is the article ("A cat is on the desk" -> ``None``)
    and "I" is never an option letter.

    ``mode="official"`` reproduces the parser released with FINER, kept **only** so that scores
    can be compared with the published numbers: it returns the first character in ``[A-Ea-e]``
    anywhere in the answer, upper-cased, or ``None`` if there is none. It is compatible but
    flawed: "The answer is B" gives ``"E"`` (the "e" of "The") and "Yes" gives ``"E"``. With the
    paper's 3-token, single-letter protocol most answers are a bare letter and both modes agree.
    """
    if mode not in PARSER_MODES:
        raise ValueError(f"unknown parser mode {mode!r}; expected one of {', '.join(PARSER_MODES)}")
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"answer must be a string, got {type(text).__name__}")
    if mode == "official":
        return _parse_official(text)
    return _parse_strict(text, options)
