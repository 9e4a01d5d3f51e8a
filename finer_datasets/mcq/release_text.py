"""What the text of a released FINER pair says about its structure: k, the negated position, the
elements and the option types -- recovered, never guessed (pure functions, no I/O).

The authors' released tables (:mod:`finer_datasets.mcq.release_import`) give only the questions,
the five options and the answer; the record schema also has ``k``, ``negated_index``,
``elements``, ``negated`` and ``option_types``. They are read back from the text of the pair's
two questions, using the templates of the paper (section B.4) that
:mod:`finer_datasets.mcq.construct` renders, and left empty (``None`` / ``[]``) wherever the text
does not determine them -- e.g. a human-corrected item that no longer follows a template.

**Yes/no settings** (``multi_obj``, ``multi_attr``, ``multi_rel``). The phrase ``X`` of
"Can you see {X} in this image?" is read from the positive and the negative question, and from
the four "No, but I can see {Z} in this image." options of the positive question when all four
follow the template. ``X`` lists the k elements as :func:`~finer_datasets.core.text.join_list`
writes them (``a`` / ``a and b`` / ``a, b, and c``). A split of the positive phrase fits when
every other phrase splits into as many items and differs from it in exactly one item, the same one
for all (the negated element): ``k`` is the number of items, ``negated_index`` that item's
position. A phrase with ", and " splits only at its commas; otherwise at any one " and ", and
when no such split fits it is one item (``cat and dog`` is 2 items; ``salt and pepper shaker``
against the negatives ``bowl``, ... is 1). When two splits fit (``salt and pepper shaker and cat``
with the cat negated) and agree on k and the position, those are kept and the elements left
unknown; when they disagree, nothing is. ``multi_attr`` phrases are
``the {object} with ..., and with ...``: only separators before ``with `` count, and the object
(the text before the first ``with ``) must be the same in every phrase. ``multi_rel`` phrases
are ``the {subject} {relation}, and {relation}``: ``k`` and ``negated_index`` are recovered the
same way, but the text does not say where the subject ends, so ``elements`` stay ``[]`` and
``negated`` ``None``.

**Wh.** The correction option "The {C} is not {A}, but is {B}." of the positive question gives
the context object ``C``, its true attribute ``A`` and the negative ``B``; the negative question
must carry the reverse correction and read as the positive question with ``A`` replaced by ``B``.
``A`` is an item of the attribute list following ``C`` in the question (items start with
``with ``; separators as above): ``negated_index`` counts the items before ``A``, ``k`` adds the
items after it (a separator followed by ``with `` right after an item), and the separators must be
those :func:`join_list` writes for that k. ``elements`` are filled only when ``A`` is the last
item (the end of a later item cannot be told from the rest of the question).

**Option types.** Yes/no settings: an option starting with "Yes" accepts the question's premise
(``affirm``), any other rejects it (``deny``). Wh: the correction sentence is ``deny``, the
object answers ``affirm``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from finer_datasets.core.text import join_list
from finer_datasets.mcq.construct import NO_TEMPLATE, QUESTION_TEMPLATE, correction_sentence

__all__ = ["Structure", "recover_structure", "option_types"]

_SEPARATORS = (", and ", ", ", " and ")
_WITH = "with "


def _template_regex(template: str, name: str) -> re.Pattern[str]:
    """``"Can you see {X} in this image?"`` -> a regex capturing ``X`` (the templates are defined once)."""
    return re.compile(re.escape(template).replace(re.escape("{" + name + "}"), "(.+)"), re.S)


_QUESTION = _template_regex(QUESTION_TEMPLATE, "X")
_NO = _template_regex(NO_TEMPLATE, "Z")
_CORRECTION = re.compile(re.escape(correction_sentence("\0", "\1", "\2"))
                         .replace("\0", "(.+?)").replace("\1", "(.+)").replace("\2", "(.+)"), re.S)


@dataclass(frozen=True)
class Structure:
    """What the text of a pair determines (``None`` / empty: it does not)."""

    k: int | None = None
    negated_index: int | None = None
    elements: tuple[str, ...] = ()
    negated: tuple[str, str] | None = None  # (positive, negative)
    notes: tuple[str, ...] = field(default=(), compare=False)


def _sep(marker: str) -> str:
    return f"(?={re.escape(marker)})" if marker else ""


def _splits(text: str, marker: str) -> tuple[list[list[str]], bool]:
    """The ways ``text`` reads as a :func:`join_list` list of 2 or more items (items starting with
    ``marker``), and whether it may be one item instead (not when it has a serial ", and ")."""
    look = _sep(marker)
    serial = [m.start() for m in re.finditer(", and " + look, text)]
    if serial:
        head, last = text[:serial[-1]], text[serial[-1] + len(", and "):]
        items = [*re.split(", " + look, head), last]
        return ([items] if len(items) >= 3 and all(items) else []), False
    out = [[text[:m.start()], text[m.end():]] for m in re.finditer(" and " + look, text)]
    return [s for s in out if all(s)], True


def _differs_once(a: Sequence[str], b: Sequence[str]) -> int | None:
    if len(a) != len(b):
        return None
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return diff[0] if len(diff) == 1 else None


def _list_structure(phrases: list[str], marker: str) -> tuple[int, int, list[str] | None] | None:
    """``(k, negated position, items of phrases[0] or None when two readings disagree on them)``:
    the splits of ``phrases[0]`` where every other phrase differs from it in exactly one item, the
    same for all; one item when no split fits and the phrase may be one item; ``None`` otherwise."""
    splits, single = _splits(phrases[0], marker)
    others = [_splits(p, marker)[0] for p in phrases[1:]]
    fits = []
    for items in splits:
        positions = set()
        for candidates in others:
            found = {i for c in candidates if (i := _differs_once(items, c)) is not None}
            if len(found) != 1:
                break
            positions |= found
        else:
            if len(positions) == 1:
                fits.append((items, positions.pop()))
    if not fits:
        return (1, 0, [phrases[0]]) if single and phrases[0] not in phrases[1:] else None
    if len({(len(items), i) for items, i in fits}) != 1:
        return None
    items, index = fits[0]
    return len(items), index, items if len(fits) == 1 else None


def _yes_no(setting: str, positive: str, negative: str, positive_options: Sequence[str]) -> Structure:
    phrases = [m.group(1) if (m := _QUESTION.fullmatch(q)) else None for q in (positive, negative)]
    if None in phrases:
        return Structure(notes=("question not in the template",))
    corrupted = [m.group(1) for o in positive_options if (m := _NO.fullmatch(o))]
    if len(corrupted) == 4:
        phrases += corrupted
    marker = ""
    if setting == "multi_attr":
        starts = [p.find(" " + _WITH) for p in phrases]
        if -1 in starts or len({p[:s] for p, s in zip(phrases, starts)}) != 1:
            return Structure(notes=("no common object before the attributes",))
        phrases = [p[s + 1:] for p, s in zip(phrases, starts)]
        marker = _WITH
    found = _list_structure(phrases, marker)
    if found is None:
        return Structure(notes=("phrases do not differ in exactly one list item",))
    k, index, items = found
    if setting == "multi_rel" or items is None:  # where the subject ends is not in the text; or two readings
        return Structure(k=k, negated_index=index)
    if k == 1:
        return Structure(k=1, negated_index=0, elements=(items[0],), negated=(items[0], phrases[1]))
    other = next(c for c in _splits(phrases[1], marker)[0] if _differs_once(items, c) == index)
    return Structure(k=k, negated_index=index, elements=tuple(items), negated=(items[index], other[index]))


def _corrections(options: Sequence[str]) -> list[re.Match[str]]:
    return [m for o in options if (m := _CORRECTION.fullmatch(o))]


def _wh(positive: str, negative: str, positive_options: Sequence[str], negative_options: Sequence[str]) -> Structure:
    pos, neg = _corrections(positive_options), _corrections(negative_options)
    if len(pos) != 1 or len(neg) != 1:
        return Structure(notes=("no single correction option",))
    context, true, wrong = pos[0].groups()
    if neg[0].groups() != (context, wrong, true) or positive.count(true) != 1 or \
            positive.replace(true, wrong) != negative:
        return Structure(notes=("the questions do not differ in the corrected attribute",))
    negated = (true, wrong)
    at = positive.index(true)
    head = positive[:at]
    if not true.startswith(_WITH):
        return Structure(negated=negated)
    if head.endswith(f"{context} "):
        before: list[str] = []
        used: list[str] = []
    else:
        start = head.rfind(f"{context} {_WITH}")
        sep = next((s for s in _SEPARATORS if head.endswith(s)), None)
        if start < 0 or sep is None:
            return Structure(negated=negated)
        body = head[start + len(context) + 1:-len(sep)]
        before = re.split("(?:, and |, | and )" + _sep(_WITH), body)
        used = [*re.findall("(, and |, | and )" + _sep(_WITH), body), sep]
    after = re.findall("(, and |, | and )" + _sep(_WITH), positive[at + len(true):])
    if after and not re.match("(?:, and |, | and )" + _sep(_WITH), positive[at + len(true):]):
        after = []
    k = len(before) + 1 + len(after)
    if k > 1 and [*used, *after] != _join_separators(k):
        return Structure(negated=negated)
    elements = tuple([*before, true]) if not after else ()
    return Structure(k=k, negated_index=len(before), elements=elements, negated=negated)


def _join_separators(k: int) -> list[str]:
    """The separators :func:`join_list` puts between k items."""
    probe = join_list([f"\0{i}\0" for i in range(k)])
    return re.findall("\0[0-9]+\0(.*?)(?=\0)", probe)


def recover_structure(setting: str, positive: str, negative: str, positive_options: Sequence[str],
                      negative_options: Sequence[str]) -> Structure:
    """The structure of a released pair as far as its text determines it (module docstring)."""
    if setting == "wh":
        return _wh(positive, negative, positive_options, negative_options)
    return _yes_no(setting, positive, negative, positive_options)


def option_types(setting: str, options: Sequence[str]) -> list[str]:
    """``affirm`` / ``deny`` per option, read from its text (module docstring)."""
    if setting == "wh":
        return ["deny" if _CORRECTION.fullmatch(o) else "affirm" for o in options]
    return ["affirm" if o.lstrip().startswith("Yes") else "deny" for o in options]
