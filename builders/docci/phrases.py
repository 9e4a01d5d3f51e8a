"""Deterministic wording rules of FINER-DOCCI: verbatim caption phrases -> scene-graph phrases.

The LLM copies phrases from the caption (checked by :class:`~finer_datasets.llm.verbatim.VerbatimGuard`);
these pure functions turn them into the forms the MCQ templates need, keeping the verbatim text
as ``source_text``:

* :func:`attribute_phrase` -- an attribute as a ``with ...`` phrase (the record schema requires
  ``^with ``): a *quality* ("dark brown") becomes ``with a dark brown color`` (the noun of its
  attribute family in the bundled lexicon, else ``appearance``); a *part* ("a red collar",
  "four legs") becomes ``with a red collar`` / ``with four legs``;
* :func:`relation_predicate` -- a relation phrase as a predicate that reads after the subject:
  a preposition or participle gets a copula ("to the left of" -> ``is to the left of``), a
  finite verb stays ("holds");
* :func:`candidate_pairs` -- which object pairs are asked about in stage 2 (bounded per image).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from finer_datasets.core.text import article, clean_text, split_sentences
from finer_datasets.llm.verbatim import VerbatimGuard
from finer_datasets.scene_graph.lexicon import Lexicon

__all__ = [
    "ATTRIBUTE_KINDS",
    "PART",
    "QUALITY",
    "attribute_phrase",
    "candidate_pairs",
    "is_plural",
    "object_name",
    "relation_predicate",
]

QUALITY, PART = "quality", "part"
ATTRIBUTE_KINDS = (QUALITY, PART)
_EDGE = " \t,.;:!?\"'()[]"
_DETERMINERS = ("the ", "its ", "his ", "her ", "their ", "this ", "that ")
_COUNTING = {"a", "an", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "some",
             "many", "several", "few", "multiple", "numerous", "both", "no"}
_NON_PLURAL_ENDINGS = ("ss", "us", "is", "ous")
_PREPOSITIONS = {"on", "in", "under", "above", "below", "behind", "beside", "besides", "near", "next", "inside",
                 "over", "against", "at", "along", "across", "between", "by", "around", "beneath", "atop",
                 "underneath", "within", "outside", "to", "into", "onto", "through", "toward", "towards", "upon",
                 "among", "alongside", "off", "from", "past", "beyond", "opposite", "amid", "like", "with",
                 "facing", "covering", "surrounding", "up", "down", "out"}
_PAST = {"was": "is", "were": "are"}


def _tidy(text: str) -> str:
    return " ".join(clean_text(text).lower().split()).strip(_EDGE)


def is_plural(word: str) -> bool:
    """A crude English plural test for the last word of a noun phrase (``legs``, not ``glass``)."""
    word = word.lower()
    return len(word) > 2 and word.endswith("s") and not word.endswith(_NON_PLURAL_ENDINGS)


def object_name(name: str) -> str:
    """The object's name as used in questions: cleaned, lower case, without a leading article."""
    text = _tidy(name)
    for det in ("a ", "an ", *_DETERMINERS):
        if text.startswith(det):
            return text[len(det):]
    return text


def attribute_phrase(text: str, kind: str, lexicon: Lexicon) -> str:
    """The ``with ...`` phrase of a verbatim attribute (``kind`` is ``quality`` or ``part``).

    Pure and total: every non-empty ``text`` gives a phrase starting with ``with `` (the caller
    drops empty texts before).
    """
    phrase = _tidy(text)
    if phrase.startswith("with "):
        return phrase
    tokens = phrase.split()
    if kind == QUALITY:
        nouns = set(lexicon.family_nouns.values())
        if tokens and tokens[-1] in nouns:  # "red color", "oval shape"
            return f"with {article(phrase)} {phrase}"
        family = next((f for f in map(lexicon.family_of, reversed(tokens)) if f), None)
        noun = lexicon.family_nouns[family] if family else "appearance"
        return f"with {article(phrase)} {phrase} {noun}"
    for det in _DETERMINERS:
        if phrase.startswith(det):
            phrase = phrase[len(det):]
            tokens = phrase.split()
            break
    if tokens and (tokens[0] in _COUNTING or tokens[0].isdigit() or is_plural(tokens[-1])):
        return f"with {phrase}"
    return f"with {article(phrase)} {phrase}"


def relation_predicate(phrase: str, subject: str) -> str:
    """The predicate of a verbatim relation phrase, read after its subject ``subject``.

    ``is``/``are`` phrases stay (``was``/``were`` become present tense); a phrase starting with
    a preposition, an ``-ing`` or an ``-ed`` form gets ``is`` (``are`` after a plural subject);
    any other phrase is taken as a finite verb (``holds``, ``casts``) and stays as it is.
    """
    text = _tidy(phrase)
    tokens = text.split()
    if not tokens:
        return text
    first = tokens[0]
    if first in ("is", "are"):
        return text
    if first in _PAST:
        return " ".join([_PAST[first], *tokens[1:]])
    if first in _PREPOSITIONS or (len(first) > 4 and first.endswith(("ing", "ed"))):
        copula = "are" if is_plural(subject.split()[-1] if subject.split() else "") else "is"
        return f"{copula} {text}"
    return text


_WORD = re.compile(r"\S+")


def candidate_pairs(description: str, names: Sequence[str], limit: int) -> tuple[list[tuple[int, int]], int]:
    """Object pairs to ask stage 2 about, and how many co-mentioned pairs the bound left out.

    A pair is a candidate when both names occur (as whole words) in one sentence of the
    description -- a relation stated in a caption links two things named in the same sentence.
    Of objects sharing a name only the first takes part (the caption cannot tell them apart by
    name). Candidates are ordered by the first sentence that names both, then by object index;
    the first ``limit`` are kept. Pure: depends only on the arguments.
    """
    sentences = [VerbatimGuard(s) for s in split_sentences(clean_text(description))]
    first_of: dict[str, int] = {}
    for index, name in enumerate(names):
        first_of.setdefault(name.lower(), index)
    usable = [i for i in range(len(names)) if first_of[names[i].lower()] == i]
    found: list[tuple[int, int, int]] = []
    for n, i in enumerate(usable):
        for j in usable[n + 1:]:
            first = next((n for n, s in enumerate(sentences) if names[i] in s and names[j] in s), None)
            if first is not None:
                found.append((first, i, j))
    found.sort()
    return [(i, j) for _, i, j in found[:limit]], max(0, len(found) - limit)
