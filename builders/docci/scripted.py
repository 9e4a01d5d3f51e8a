"""How the scripted stand-in model (``finer_datasets.testing.scripted``) answers FINER-DOCCI's
own prompts: rule-based extraction from the caption, so the whole model path can be tested and
the sample's transcript recorded offline. It is not a model; it reads captions written in the
style of ``maintenance/make_sample.py`` (nouns of the bundled lexicon, adjectives of its attribute
families, "with ..." and "has ..." parts, relation phrases between two nouns or fronted).

Like a real model it is sometimes wrong, deterministically (the rng is seeded by the prompt):
stage 1 now and then adds an attribute or an object that the caption does not contain (the
verbatim guard must drop them), and stage 2 now and then returns a relation the caption does not
state (the phrase may or may not occur elsewhere in the caption; the validation must catch it).
The yes/no of the MLLM comes from the scripted server's logprobs, not from here.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import Any

from finer_datasets.core.text import split_sentences
from finer_datasets.scene_graph.lexicon import default_lexicon, strip_copula

__all__ = ["answer", "extract_objects", "find_relation"]

_EXTRA_NOUNS = ("sky", "water", "floor", "wall", "grass", "lamp", "window", "fence", "road")
_EXTRA_PARTS = ("trunk", "string", "handle", "legs", "leaves", "roof", "door", "wheels")
_EXTRA_RELATIONS = ("to the left of", "to the right of", "in front of", "on top of", "next to", "above", "below",
                    "under", "behind", "beside", "near", "on")
_COUNT_WORDS = {"a", "an", "two", "three", "four"}
_DESCRIPTION = re.compile(r'Description: """(.*?)"""', re.DOTALL)
_PAIR = re.compile(r'two objects it mentions: (o\d+) "([^"]+)" and (o\d+) "([^"]+)"')
_STATEMENT = re.compile(r'Statement: "the (.+)"')


@lru_cache(maxsize=1)
def _vocabulary() -> tuple[tuple[str, ...], frozenset[str], frozenset[str], tuple[str, ...]]:
    lex = default_lexicon()
    parts = frozenset(_EXTRA_PARTS)
    adjectives = frozenset(w for groups in lex.families.values() for g in groups for w in g)
    nouns = {w for groups in lex.objects.values() for g in groups for w in g} | set(_EXTRA_NOUNS)
    nouns = tuple(sorted(nouns - parts - adjectives, key=lambda w: (-len(w.split()), w)))  # ("orange" is a colour)
    rels = {w for groups in lex.relation_families.values() for g in groups for w in g} | set(_EXTRA_RELATIONS)
    return nouns, adjectives, parts, tuple(sorted(rels, key=lambda w: (-len(w), w)))


def _tokens(sentence: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z'-]*", sentence)


def _mentions(tokens: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, noun)`` of every lexicon noun in a token list (longest match first)."""
    nouns = _vocabulary()[0]
    lower = [t.lower() for t in tokens]
    found, i = [], 0
    while i < len(lower):
        for noun in nouns:
            words = noun.split()
            if lower[i:i + len(words)] == words:
                found.append((i, i + len(words), noun))
                i += len(words)
                break
        else:
            i += 1
    return found


def extract_objects(description: str) -> list[dict[str, Any]]:
    """Stage 1 by rule: nouns in order of first mention; adjectives right before a mention are
    qualities, ``with [a|four] ... <part>`` after it and ``The <noun> has ... <part>`` are parts."""
    _, adjectives, parts, _ = _vocabulary()
    objects: dict[str, dict[str, Any]] = {}
    for sentence in split_sentences(description):
        tokens = _tokens(sentence)
        lower = [t.lower() for t in tokens]
        for start, end, noun in _mentions(tokens):
            obj = objects.setdefault(noun, {"name": noun, "attributes": []})
            k = start - 1
            before = []
            while k >= 0 and lower[k] in adjectives:
                before.insert(0, tokens[k])
                k -= 1
            for word in before:
                obj["attributes"].append({"text": word, "kind": "quality"})
            tail = lower[end:]
            lead = 1 if tail[:1] == ["with"] else 2 if tail[:1] == ["has"] else 0
            if lead:
                span = tail[1:]
                stop = next((n for n, w in enumerate(span) if w in parts), None)
                if stop is not None and all(w in adjectives or w in _COUNT_WORDS for w in span[:stop]):
                    text = " ".join(tokens[end + 1:end + 1 + stop + 1])
                    obj["attributes"].append({"text": text, "kind": "part"})
    out = list(objects.values())
    for obj in out:  # one of each
        seen, unique = set(), []
        for attr in obj["attributes"]:
            if attr["text"].lower() not in seen:
                seen.add(attr["text"].lower())
                unique.append(attr)
        obj["attributes"] = unique
    return out


def find_relation(description: str, first: str, second: str) -> tuple[str, str, str] | None:
    """Stage 2 by rule: ``(subject, object, phrase)`` stated in the first sentence naming both, or None.

    ``A ... is <rel> the B`` gives (A, B, "is <rel>"); ``<Rel> the A is a ... B`` gives (B, A, "<Rel>").
    """
    relations = _vocabulary()[3]
    for sentence in split_sentences(description):
        tokens = _tokens(sentence)
        spots = {noun: (s, e) for s, e, noun in reversed(_mentions(tokens))}
        if first not in spots or second not in spots:
            continue
        (a, (sa, ea)), (b, (sb, _)) = sorted([(first, spots[first]), (second, spots[second])], key=lambda x: x[1][0])
        between = " ".join(tokens[ea:sb])
        for rel in relations:
            m = re.search(rf"(?:\b(is|are)\s+)?\b{re.escape(rel)}\b", between, re.IGNORECASE)
            if m:
                return a, b, m.group(0)
        before = " ".join(tokens[:sa])
        for rel in relations:
            m = re.match(rf"{re.escape(rel)}\b", before, re.IGNORECASE)
            if m and re.search(r"\b(is|are)\b", between):
                return b, a, m.group(0)
        return None
    return None


def _stage1(text: str, rng: random.Random) -> dict[str, Any]:
    description = _DESCRIPTION.search(text).group(1)
    objects = extract_objects(description)
    roll = rng.random()
    if objects and roll < 0.15 and "shiny" not in description.lower():  # an invented attribute
        objects[0]["attributes"].append({"text": "shiny", "kind": "quality"})
    elif roll > 0.92 and "person" not in description.lower():  # an invented object
        objects.append({"name": "person", "attributes": [{"text": "smiling", "kind": "quality"}]})
    return {"objects": objects}


def _stage2(text: str, rng: random.Random) -> dict[str, Any]:
    description = _DESCRIPTION.search(text).group(1)
    first_id, first, second_id, second = _PAIR.search(text).groups()
    ids = {first: first_id, second: second_id}
    found = find_relation(description, first, second)
    if found is not None:
        subject, obj, phrase = found
        return {"relation": {"subject": ids[subject], "object": ids[obj], "phrase": phrase}}
    if rng.random() < 0.5:  # a relation the caption does not state
        phrase = "next to" if "next to" in description.lower() else "near"
        return {"relation": {"subject": first_id, "object": second_id, "phrase": phrase}}
    return {"relation": None}


def _validation(text: str) -> dict[str, Any]:
    description = _DESCRIPTION.search(text).group(1)
    statement = _STATEMENT.search(text).group(1)
    subject, rest = next(((n, statement[len(n) + 1:]) for n in _vocabulary()[0] if statement.startswith(n + " ")),
                         ("", statement))
    predicate, _, obj = rest.rpartition(" the ")
    found = find_relation(description, subject, obj) if subject else None
    supported = (found is not None and found[0] == subject
                 and strip_copula(found[2].lower())[1] == strip_copula(predicate.lower())[1])
    return {"supported": supported}


def answer(text: str, rng: random.Random) -> dict[str, Any] | None:
    """The answer to one of FINER-DOCCI's prompts, or ``None`` for any other prompt."""
    if "List the objects the description mentions" in text:
        return _stage1(text, rng)
    if "explicitly state a spatial or semantic relation" in text:
        return _stage2(text, rng)
    if "explicitly support the statement" in text:
        return _validation(text)
    return None
