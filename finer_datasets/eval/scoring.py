"""Scoring model answers on FINER: paired accuracy and its breakdowns (paper, sections 2.4, E).

Inputs are the dataset's pair records (``mcq_pair.schema.json`` dicts, e.g. the ``json`` column
of ``datasets.load_dataset(folder, split=setting)``) and the model's raw answers keyed by
question id (:func:`load_predictions` reads them from JSONL). :func:`score` parses every answer
(:func:`finer_datasets.eval.answers.parse_answer`), checks the answers against the dataset's
questions (:func:`check_predictions`), and returns per setting and pooled:

- ``paired_accuracy`` -- Eq. 1: percent of pairs whose positive *and* negative question are right;
- ``question_accuracy``, ``positive_accuracy``, ``negative_accuracy`` -- percent of questions;
- ``by_k`` / ``by_position`` -- paired accuracy per number of entities (Fig. 4) and per
  position of the negated entity, counted from 1 (E.1), each group with ``n_pairs`` and a 95%
  Wilson interval ``ci95``; ``by_negated_index`` is the same keyed by the records' 0-based
  ``negated_index`` (kept for the Python API; reports show ``by_position``); ``by_level`` (only for
  pairs with a ``level``: the granularity ladder, Fig. 1 and 12) adds per level the four rates below;
- ``false_positive_rate`` -- percent of negative questions answered with an ``affirm`` option
  (accepting a false premise), ``false_negative_rate`` -- percent of positive questions answered
  with a ``deny`` option (E.7); ``None`` when none of those answers could be read (0/0 is no rate);
- ``unparseable`` -- answers the parser could not read, ``missing`` -- questions without an
  answer (``allow_missing``); both are scored as wrong; ``answered`` -- questions with an answer;
- ``ci95`` -- a percentile bootstrap interval of the paired accuracy, resampling pairs;
- ``random_baselines`` -- expected paired accuracy of a uniform guesser (4% with five options) and
  of a polarity-aware guesser (6.25%, E.6), computed analytically from the options.

The result also holds ``by_parser``: paired and question accuracy under both answer parsers
(``strict`` and the authors' first-letter ``official``), ``coverage`` (answered / total questions
per setting, answers ignored because their question lies outside the scored pairs) and
``unparseable_examples`` (the first few raw answers the parser could not read).

Everything is deterministic: the bootstrap uses its own ``numpy.random.default_rng(seed)`` per
block, never the global RNG.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

from finer_datasets.constants import SETTINGS
from finer_datasets.errors import PredictionsError
from finer_datasets.eval.answers import LETTERS, PARSER_MODES, parse_answer
from finer_datasets.eval.intervals import bootstrap_ci, wilson_ci
from finer_datasets.eval.predictions import load_predictions
from finer_datasets.mcq.records import POLARITIES, pair_rows

__all__ = ["PredictionsError", "PairOutcome", "load_predictions", "check_predictions", "pair_outcome", "score",
           "summarize", "pair_records", "question_ids", "RANDOM_UNIFORM", "SETTING_ORDER"]

RANDOM_UNIFORM = 4.0  # (1/5)^2, in percent (paper, Table 1 and E.6)
SETTING_ORDER = SETTINGS  # the paper's order
_EXAMPLES = 5
_SHOWN_ANSWERS = 3  # unparseable answers quoted in a result
_ANSWER_CHARS = 60


def _examples(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:_EXAMPLES])
    return shown + (", ..." if len(ids) > _EXAMPLES else "")


def _id_problems(missing: Sequence[str], duplicate: Sequence[str], unknown: Sequence[str]) -> str:
    parts = []
    for name, ids in (("missing", missing), ("duplicate", duplicate), ("unknown", unknown)):
        if ids:
            parts.append(f"{len(ids)} {name} question id(s) (e.g. {_examples(ids)})")
    return "; ".join(parts)


def pair_records(records: Iterable[Mapping[str, Any]], settings: Iterable[str] | None = None) -> list[Mapping[str, Any]]:
    """The pair records of ``records``: per-image records (``pairs`` inside), pair dicts, rows with a
    ``json`` column, or a ``datasets`` ``Dataset`` / ``IterableDataset`` / ``DatasetDict`` (only its
    ``json`` column is read, so images are never decoded). ``settings`` keeps only those settings."""
    if type(records).__module__.startswith("datasets"):
        if isinstance(records, Mapping):  # DatasetDict / IterableDatasetDict: every split
            return [r for split in records.values() for r in pair_records(split, settings)]
        if "json" in (records.column_names or ()):
            records = records.select_columns(["json"])
    out: list[Mapping[str, Any]] = []
    chosen = None if settings is None else tuple(settings)
    for record in records:
        if "pair_id" not in record and "pairs" not in record and "json" in record:
            record = record["json"]
            if isinstance(record, (str, bytes)):
                record = json.loads(record)
        out.extend(pair_rows(record, chosen))
    return out


def question_ids(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The question ids of pair records, positive then negative of each pair."""
    return [record[polarity]["question_id"] for record in records for polarity, _ in POLARITIES]


def _as_mapping(predictions: Any) -> dict[str, str]:
    """A ``{question_id: response}`` dict; pairs or ``{"question_id", "response"}`` dicts are
    accepted too, and a repeated id among them is a :class:`PredictionsError`."""
    if isinstance(predictions, Mapping):
        return dict(predictions)
    out: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for item in predictions:
        qid, response = (item["question_id"], item["response"]) if isinstance(item, Mapping) else item
        seen[qid] += 1
        out[qid] = response
    duplicate = [qid for qid, n in seen.items() if n > 1]
    if duplicate:
        raise PredictionsError(_id_problems((), duplicate, ()), duplicate=duplicate)
    return out


def _per_setting(ids: Sequence[str], setting_of: Mapping[str, str]) -> str:
    counts = Counter(setting_of[qid] for qid in ids)
    return ", ".join(f"{s} {counts[s]}" for s in sorted(counts, key=_setting_key))


def check_predictions(records: Sequence[Mapping[str, Any]], predictions: Mapping[str, str], *,
                      other_ids: Iterable[str] = (), allow_missing: bool = False) -> dict[str, Any]:
    """Check ``predictions`` against the questions of ``records`` and return the coverage.

    An answer whose id is in ``other_ids`` (a question of the dataset outside ``records``: another
    setting, or past a ``--limit``) is ignored and counted. Raises :class:`PredictionsError` (counts
    and up to 5 examples) for ids that are neither (unknown), and -- unless ``allow_missing`` --
    for questions of ``records`` without an answer, counted per setting. Returns ``{"total",
    "answered", "missing", "ignored", "by_setting": {setting: {"total", "answered"}}}``.
    """
    expected: list[str] = []
    setting_of: dict[str, str] = {}
    for record in records:
        for qid in question_ids([record]):
            expected.append(qid)
            setting_of[qid] = record["setting"]
    repeated = [qid for qid, n in Counter(expected).items() if n > 1]
    if repeated:
        raise ValueError(f"the dataset repeats {len(repeated)} question id(s) (e.g. {_examples(repeated)})")
    others = set(other_ids)
    missing = [qid for qid in expected if qid not in predictions]
    unknown = [qid for qid in predictions if qid not in setting_of and qid not in others]
    if unknown or (missing and not allow_missing):
        parts = []
        if missing and not allow_missing:
            parts.append(f"{len(missing)} missing question id(s) ({_per_setting(missing, setting_of)}; "
                         f"e.g. {_examples(missing)}): answer them, score fewer settings (--setting) "
                         "or count them wrong (--allow-missing)")
        if unknown:
            parts.append(f"{len(unknown)} unknown question id(s) (not in this dataset; e.g. {_examples(unknown)})")
        raise PredictionsError(f"predictions do not match the dataset's {len(expected)} questions: "
                               + "; ".join(parts), missing=missing, unknown=unknown)
    totals = Counter(setting_of.values())
    lacking = Counter(setting_of[qid] for qid in missing)
    return {
        "total": len(expected),
        "answered": len(expected) - len(missing),
        "missing": len(missing),
        "ignored": sum(1 for qid in predictions if qid in others and qid not in setting_of),
        "by_setting": {s: {"total": totals[s], "answered": totals[s] - lacking[s]}
                       for s in sorted(totals, key=_setting_key)},
    }


@dataclass(frozen=True)
class PairOutcome:
    """How one pair was answered (see :func:`pair_outcome`)."""

    setting: str
    k: int | None  # None: unknown (a pair imported from the authors' release whose text does not tell)
    negated_index: int | None
    positive_letter: str | None
    negative_letter: str | None
    positive_correct: bool
    negative_correct: bool
    false_positive: bool  # the negative question was answered with an "affirm" option
    false_negative: bool  # the positive question was answered with a "deny" option
    polarity_aware_chance: Fraction  # probability that a polarity-aware guesser gets the pair right
    missing: int = 0  # questions of the pair without an answer (their letter is None too)
    level: int | None = None  # granularity level of a ladder pair (finer_datasets.mcq.ladder); None elsewhere
    uniform_chance: Fraction = Fraction(1, 25)  # probability that a uniform guesser gets the pair right

    @property
    def paired_correct(self) -> bool:
        return self.positive_correct and self.negative_correct

    @property
    def unparseable(self) -> int:
        """Answers given but not read (a missing answer is not counted here)."""
        return (self.positive_letter is None) + (self.negative_letter is None) - self.missing


def _chosen_type(question: Mapping[str, Any], letter: str | None) -> str | None:
    if letter is None or LETTERS.index(letter) >= len(question["option_types"]):  # C-E of a Yes / No question
        return None
    return question["option_types"][LETTERS.index(letter)]


def _polarity_aware_chance(question: Mapping[str, Any]) -> Fraction:
    """Pick affirm or deny with p = 1/2, then uniformly among the options of that kind (E.6)."""
    types = list(question["option_types"])
    kind = types[LETTERS.index(question["answer"])]
    kinds = set(types)
    return Fraction(1, len(kinds)) * Fraction(1, types.count(kind))


def pair_outcome(record: Mapping[str, Any], positive_letter: str | None, negative_letter: str | None, *,
                 missing: int = 0) -> PairOutcome:
    """The outcome of one pair record given the letters parsed from its two answers (``None``:
    unparseable or, counted in ``missing``, not answered; scored as wrong). A pure function: no
    parsing, no I/O, no randomness."""
    pos, neg = record["positive"], record["negative"]
    for letter in (positive_letter, negative_letter):
        if letter is not None and letter not in LETTERS:
            raise ValueError(f"not an option letter: {letter!r}")
    return PairOutcome(
        setting=record["setting"],
        k=None if record["k"] is None else int(record["k"]),
        negated_index=None if record["negated_index"] is None else int(record["negated_index"]),
        positive_letter=positive_letter,
        negative_letter=negative_letter,
        positive_correct=positive_letter == pos["answer"],
        negative_correct=negative_letter == neg["answer"],
        false_positive=_chosen_type(neg, negative_letter) == "affirm",
        false_negative=_chosen_type(pos, positive_letter) == "deny",
        polarity_aware_chance=_polarity_aware_chance(pos) * _polarity_aware_chance(neg),
        missing=missing,
        level=record.get("level"),
        uniform_chance=Fraction(1, len(pos["options"]) * len(neg["options"])),
    )


def _percent(count: int | float, total: int) -> float | None:
    return 100.0 * count / total if total else None


def _by(outcomes: Sequence[PairOutcome], key: str) -> dict[int, dict[str, Any]]:
    groups: dict[int, list[PairOutcome]] = {}
    for o in outcomes:
        if getattr(o, key) is not None:  # a pair of unknown k / position is in no group
            groups.setdefault(getattr(o, key), []).append(o)
    out = {}
    for value, group in sorted(groups.items()):
        right = sum(o.paired_correct for o in group)
        out[value] = {"paired_accuracy": _percent(right, len(group)), "n_pairs": len(group),
                      "ci95": wilson_ci(right, len(group))}
    return out


def _rates(outcomes: Sequence[PairOutcome]) -> dict[str, Any]:
    """Positive and negative accuracy, false-positive and false-negative rate of a group of pairs."""
    n = len(outcomes)
    neg_read = any(o.negative_letter is not None for o in outcomes)
    pos_read = any(o.positive_letter is not None for o in outcomes)
    return {"positive_accuracy": _percent(sum(o.positive_correct for o in outcomes), n),
            "negative_accuracy": _percent(sum(o.negative_correct for o in outcomes), n),
            # over every question of the kind, as in the paper; no rate when no such answer could be read
            "false_positive_rate": _percent(sum(o.false_positive for o in outcomes), n) if neg_read else None,
            "false_negative_rate": _percent(sum(o.false_negative for o in outcomes), n) if pos_read else None}


def _by_level(outcomes: Sequence[PairOutcome]) -> dict[int, dict[str, Any]]:
    """Per granularity level (Fig. 1, Fig. 12): paired accuracy with n and interval, and :func:`_rates`."""
    groups = _by(outcomes, "level")
    for level, block in groups.items():
        block.update(_rates([o for o in outcomes if o.level == level]))
    return groups


def summarize(outcomes: Sequence[PairOutcome], *, bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The metrics block of a list of pair outcomes (one setting, or all of them pooled); with
    ladder pairs also ``by_level``."""
    n = len(outcomes)
    paired = [o.paired_correct for o in outcomes]
    polarity = sum((o.polarity_aware_chance for o in outcomes), Fraction(0))
    uniform = sum((o.uniform_chance for o in outcomes), Fraction(0))
    missing = sum(o.missing for o in outcomes)
    by_index = _by(outcomes, "negated_index")
    levels = {"by_level": _by_level(outcomes)} if any(o.level is not None for o in outcomes) else {}
    return {
        "n_pairs": n,
        "n_questions": 2 * n,
        "answered": 2 * n - missing,
        "read": sum((o.positive_letter is not None) + (o.negative_letter is not None) for o in outcomes),
        "paired_accuracy": _percent(sum(paired), n),
        "question_accuracy": _percent(sum(o.positive_correct + o.negative_correct for o in outcomes), 2 * n),
        **_rates(outcomes),
        "unparseable": sum(o.unparseable for o in outcomes),
        "missing": missing,
        "by_k": _by(outcomes, "k"),
        "by_negated_index": by_index,
        "by_position": {index + 1: group for index, group in by_index.items()},
        **levels,
        "ci95": bootstrap_ci(paired, bootstrap, seed),
        "random_baselines": {
            "uniform": float(100 * uniform / n) if n else RANDOM_UNIFORM,  # 4% for five-option pairs
            "polarity_aware": float(100 * polarity / n) if n else None,
        },
    }


def _parser_block(outcomes: Sequence[PairOutcome]) -> dict[str, Any]:
    n = len(outcomes)
    return {"paired_accuracy": _percent(sum(o.paired_correct for o in outcomes), n),
            "question_accuracy": _percent(sum(o.positive_correct + o.negative_correct for o in outcomes), 2 * n),
            "unparseable": sum(o.unparseable for o in outcomes)}


def _setting_key(setting: str) -> tuple[int, str]:
    return (SETTING_ORDER.index(setting) if setting in SETTING_ORDER else len(SETTING_ORDER), setting)


def _by_setting(outcomes: Sequence[PairOutcome]) -> dict[str, list[PairOutcome]]:
    groups: dict[str, list[PairOutcome]] = {}
    for o in outcomes:
        groups.setdefault(o.setting, []).append(o)
    return {name: groups[name] for name in sorted(groups, key=_setting_key)}


def _shown(answer: str) -> str:
    text = " ".join(answer.split())
    return text if len(text) <= _ANSWER_CHARS else text[: _ANSWER_CHARS - 1] + "…"


def score(
    records: Iterable[Mapping[str, Any]],
    predictions: Mapping[str, str] | Iterable[Any],
    *,
    parser: str = "strict",
    bootstrap: int = 1000,
    seed: int = 0,
    allow_missing: bool = False,
    other_ids: Iterable[str] = (),
    keep_pairs: bool = False,
) -> dict[str, Any]:
    """Score raw answers against pair records.

    ``predictions`` maps question ids to raw model output (:func:`load_predictions`); every
    question of ``records`` must be answered exactly once (``allow_missing``: a question without
    an answer counts as wrong) and no other id may appear, except those of ``other_ids`` (the
    dataset's questions outside ``records``, ignored and counted), else :class:`PredictionsError`.
    ``parser`` is ``"strict"`` or ``"official"`` (:func:`~finer_datasets.eval.answers.parse_answer`):
    it gives the main blocks, and ``by_parser`` holds both. ``bootstrap`` resamples (0: no
    interval) with ``numpy.random.default_rng(seed)`` give ``ci95`` of each block.

    Returns ``{"parser", "bootstrap", "seed", "n_pairs", "n_questions", "settings": {setting:
    block}, "overall": block, "random_baselines", "by_parser", "coverage", "unparseable_examples"}``;
    percentages are floats in [0, 100] (``None`` for an empty group or a rate with no answer read)
    and ``by_k`` / ``by_position`` / ``by_negated_index`` are keyed by int. ``keep_pairs`` adds
    ``pairs`` (``pairs.jsonl``, what ``finer compare`` reads): per pair, in record order, its
    ``pair_id``, ``setting``, ``k``, ``position`` and whether it was right under each parser.
    """
    if parser not in PARSER_MODES:
        raise ValueError(f"unknown parser mode {parser!r}; expected one of {', '.join(PARSER_MODES)}")
    records = pair_records(records)
    predictions = _as_mapping(predictions)
    coverage = check_predictions(records, predictions, other_ids=other_ids, allow_missing=allow_missing)

    outcomes: dict[str, list[PairOutcome]] = {mode: [] for mode in PARSER_MODES}
    examples: list[str] = []
    for record in records:
        pos, neg = record["positive"], record["negative"]
        pos_text, neg_text = predictions.get(pos["question_id"]), predictions.get(neg["question_id"])
        missing = (pos_text is None) + (neg_text is None)
        for mode in PARSER_MODES:
            letters = [parse_answer(text, q["options"], mode=mode) for text, q in ((pos_text, pos), (neg_text, neg))]
            outcomes[mode].append(pair_outcome(record, *letters, missing=missing))
            for text, letter in zip((pos_text, neg_text), letters):
                if mode == parser and text is not None and letter is None and len(examples) < _SHOWN_ANSWERS \
                        and _shown(text) not in examples:
                    examples.append(_shown(text))

    chosen = outcomes[parser]
    settings = {name: summarize(group, bootstrap=bootstrap, seed=seed) for name, group in _by_setting(chosen).items()}
    overall = summarize(chosen, bootstrap=bootstrap, seed=seed)
    by_parser = {mode: {"overall": _parser_block(outcomes[mode]),
                        "settings": {name: _parser_block(group) for name, group in _by_setting(outcomes[mode]).items()}}
                 for mode in PARSER_MODES}
    return {
        "parser": parser,
        "bootstrap": bootstrap,
        "seed": seed,
        "n_pairs": len(chosen),
        "n_questions": 2 * len(chosen),
        "settings": settings,
        "overall": overall,
        "random_baselines": dict(overall["random_baselines"]),
        "by_parser": by_parser,
        "coverage": coverage,
        "unparseable_examples": examples,
        **({"pairs": _pair_rows(records, outcomes)} if keep_pairs else {}),
    }


def _pair_rows(records: Sequence[Mapping[str, Any]], outcomes: Mapping[str, Sequence[PairOutcome]]) -> list[Any]:
    return [{"pair_id": record["pair_id"], "setting": record["setting"], "k": outcomes[PARSER_MODES[0]][i].k,
             "position": None if record["negated_index"] is None else int(record["negated_index"]) + 1,
             **{mode: outcomes[mode][i].paired_correct for mode in PARSER_MODES}}
            for i, record in enumerate(records)]
