"""Pure, seeded construction of FINER multiple-choice question pairs (paper, section B.4).

Every function here is a function of its arguments and the ``random.Random`` it is given;
none touches the global RNG or does I/O, so the same inputs and seed give the same pairs.

Yes/no settings (``multi_obj``, ``multi_attr``, ``multi_rel``) use the fixed template::

    Can you see {X} in this image?
    A. Yes, I can see {Y} in this image.
    B-E. No, but I can see {Z_j} in this image.

With ``P+`` the positive phrase and ``P-_1..4`` the phrase with the negated element replaced by
each of its 4 negatives: the positive question has ``X = Y = P+`` and ``Z_j = P-_j`` (answer:
the Yes option); the negative question picks one ``c`` uniformly, ``X = Y = P-_c`` and the Z
options are ``P+`` and the other three ``P-_j`` (answer: ``No, but I can see P+``). The Wh
setting (:func:`wh_pair`) asks a Wh question whose premise carries a true or a wrong attribute.
Options are shuffled with the RNG; the RNG is consumed in a fixed order: ``c``, then the
positive options, then the negative options.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from finer_datasets.constants import LETTERS
from finer_datasets.core.text import join_list, norm

__all__ = [
    "LETTERS",
    "INSTRUCTION",
    "prompt_text",
    "QUESTION_TEMPLATE",
    "YES_TEMPLATE",
    "NO_TEMPLATE",
    "MCQ",
    "MCQPair",
    "yesno_pair",
    "wh_pair",
    "correction_sentence",
    "PairError",
    "NOT_DISTINCT",
    "try_pair",
]

INSTRUCTION = "Please answer with a single capital letter (A, B, C, D, or E)."
QUESTION_TEMPLATE = "Can you see {X} in this image?"
YES_TEMPLATE = "Yes, I can see {Y} in this image."
NO_TEMPLATE = "No, but I can see {Z} in this image."


class PairError(ValueError):
    """The elements and negatives given cannot make a pair: e.g. two negatives that read the same
    once put in the question (the builders count it as a skip of that one pair)."""


#: skip reason of a pair that cannot be made (e.g. two negatives that read the same in its options)
NOT_DISTINCT = "negatives_not_distinct"


def try_pair(make: Callable[..., MCQPair], pair_id: str, *args: Any, **kwargs: Any) -> MCQPair | PairError:
    """``make(pair_id, ...)`` (:func:`yesno_pair` or :func:`wh_pair`), or the :class:`PairError`
    saying why this one pair cannot be made, prefixed with its id: the caller counts it as a skip
    (:data:`NOT_DISTINCT`), so one bad element never ends a build."""
    try:
        return make(pair_id, *args, **kwargs)
    except PairError as exc:
        return PairError(f"{pair_id}: {exc}")




@dataclass(frozen=True)
class MCQ:
    """One multiple-choice question with five options in display order."""

    question_id: str
    question: str
    options: tuple[str, ...]
    option_types: tuple[str, ...]
    answer: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "question": self.question,
            "options": list(self.options),
            "option_types": list(self.option_types),
            "answer": self.answer,
        }

    def prompt(self, instruction: str = INSTRUCTION) -> str:
        """The text a model sees: question, lettered options, instruction (paper, section D)."""
        return prompt_text(self.question, self.options, instruction)


@dataclass(frozen=True)
class MCQPair:
    """A positive and a negative MCQ that differ in exactly one element."""

    pair_id: str
    setting: str
    k: int
    negated_index: int
    elements: tuple[str, ...]
    negated_positive: str
    negated_negative: str
    positive: MCQ
    negative: MCQ

    def to_dict(self) -> dict[str, Any]:
        """The pair as stored in a per-image record (``mcq_image.schema.json``, ``$defs/pair``)."""
        return {
            "pair_id": self.pair_id,
            "setting": self.setting,
            "k": self.k,
            "negated_index": self.negated_index,
            "elements": list(self.elements),
            "negated": {"positive": self.negated_positive, "negative": self.negated_negative},
            "positive": self.positive.to_dict(),
            "negative": self.negative.to_dict(),
        }

    def to_record(self, *, dataset: str, image_id: str, image_file: str) -> dict[str, Any]:
        """The flat pair record (as :func:`finer_datasets.mcq.records.pair_rows` gives it)."""
        return {"dataset": dataset, "image_id": image_id, "image_file": image_file, **self.to_dict()}


def prompt_text(question: str, options: Sequence[str], instruction: str = INSTRUCTION) -> str:
    """Question, then ``A. option`` lines, then the instruction (paper, section D)."""
    lines = [question, *(f"{letter}. {text}" for letter, text in zip(LETTERS, options))]
    if instruction:
        lines.append(instruction)
    return "\n".join(lines)


def _shuffled_mcq(
    question_id: str, question: str, options: list[tuple[str, str]], correct: int, rng: random.Random
) -> MCQ:
    """Shuffle ``(text, type)`` options with ``rng``; ``correct`` indexes the right one before shuffling."""
    order = list(range(len(options)))
    rng.shuffle(order)
    return MCQ(
        question_id=question_id,
        question=question,
        options=tuple(options[i][0] for i in order),
        option_types=tuple(options[i][1] for i in order),
        answer=LETTERS[order.index(correct)],
    )


def _check(units: Sequence[str], negated_index: int, negatives: Sequence[str]) -> None:
    if not units:
        raise PairError("a pair needs at least one element")
    if not 0 <= negated_index < len(units):
        raise PairError(f"negated_index {negated_index} out of range for {len(units)} elements")
    if len(negatives) != 4 or len(set(map(norm, negatives))) != 4:
        raise PairError(f"need 4 distinct negatives, got {list(negatives)}")


def yesno_pair(
    pair_id: str,
    setting: str,
    units: Sequence[str],
    negated_index: int,
    negatives: Sequence[str],
    rng: random.Random,
    *,
    render: Callable[[list[str]], str] = join_list,
) -> MCQPair:
    """Build the positive/negative MCQ pair of a yes/no setting.

    ``units`` are the k positive elements as they appear in the phrase (object names,
    ``with ...`` attributes, relation phrases); ``negatives`` are the 4 replacements of
    ``units[negated_index]``; ``render`` turns a list of units into the phrase X.
    """
    _check(units, negated_index, negatives)
    positive_phrase = render(list(units))
    corrupted = [
        render([*units[:negated_index], negative, *units[negated_index + 1:]]) for negative in negatives
    ]
    if len({norm(p) for p in [positive_phrase, *corrupted]}) != 5:
        raise PairError(f"options of {pair_id} are not distinct: {[positive_phrase, *corrupted]}")
    c = rng.randrange(4)

    pos_options = [(YES_TEMPLATE.format(Y=positive_phrase), "affirm")]
    pos_options += [(NO_TEMPLATE.format(Z=phrase), "deny") for phrase in corrupted]
    positive = _shuffled_mcq(f"{pair_id}_pos", QUESTION_TEMPLATE.format(X=positive_phrase), pos_options, 0, rng)

    neg_options = [(YES_TEMPLATE.format(Y=corrupted[c]), "affirm"), (NO_TEMPLATE.format(Z=positive_phrase), "deny")]
    neg_options += [(NO_TEMPLATE.format(Z=phrase), "deny") for j, phrase in enumerate(corrupted) if j != c]
    negative = _shuffled_mcq(f"{pair_id}_neg", QUESTION_TEMPLATE.format(X=corrupted[c]), neg_options, 1, rng)

    return MCQPair(
        pair_id=pair_id,
        setting=setting,
        k=len(units),
        negated_index=negated_index,
        elements=tuple(units),
        negated_positive=units[negated_index],
        negated_negative=negatives[c],
        positive=positive,
        negative=negative,
    )


def correction_sentence(context: str, wrong: str, right: str) -> str:
    """The Wh correction option: ``The {context} is not {wrong}, but is {right}.``"""
    return f"The {context} is not {wrong}, but is {right}."


def wh_pair(
    pair_id: str,
    *,
    question: Callable[[str], str],
    context: str,
    attributes: Sequence[str],
    attribute_index: int,
    attribute_negatives: Sequence[str],
    target: str,
    target_negatives: Sequence[str],
    rng: random.Random,
) -> MCQPair:
    """Build a Wh pair (paper, section B.4).

    ``question(description)`` returns the Wh question for a description of the context object
    (``"dog with brown fur"``). The positive question uses the true attributes and is answered by
    ``target``; the negative question swaps ``attributes[attribute_index]`` for one of its
    negatives (chosen with ``rng``) and is answered only by the correction sentence. Three of the
    4 ``target_negatives`` (chosen with ``rng``) are the other object options. The RNG is consumed
    in order: negative attribute, object distractors, positive options, negative options.
    """
    _check(attributes, attribute_index, attribute_negatives)
    readings = set(map(norm, target_negatives))
    if len(target_negatives) < 3 or len(readings) != len(target_negatives) or norm(target) in readings:
        raise PairError(f"need at least 3 distinct target negatives other than {target!r}, "
                        f"got {list(target_negatives)}")
    true_attr = attributes[attribute_index]
    wrong_attr = attribute_negatives[rng.randrange(len(attribute_negatives))]
    distractors = rng.sample(list(target_negatives), 3)
    wrong_attrs = [*attributes[:attribute_index], wrong_attr, *attributes[attribute_index + 1:]]
    q_pos = question(f"{context} {join_list(list(attributes))}")
    q_neg = question(f"{context} {join_list(wrong_attrs)}")
    objects = [(target, "affirm"), *((d, "affirm") for d in distractors)]

    positive = _shuffled_mcq(
        f"{pair_id}_pos", q_pos, [*objects, (correction_sentence(context, true_attr, wrong_attr), "deny")], 0, rng
    )
    negative = _shuffled_mcq(
        f"{pair_id}_neg", q_neg, [*objects, (correction_sentence(context, wrong_attr, true_attr), "deny")], 4, rng
    )
    return MCQPair(
        pair_id=pair_id,
        setting="wh",
        k=len(attributes),
        negated_index=attribute_index,
        elements=tuple(attributes),
        negated_positive=true_attr,
        negated_negative=wrong_attr,
        positive=positive,
        negative=negative,
    )
