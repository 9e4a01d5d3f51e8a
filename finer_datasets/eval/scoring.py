"""Scoring model answers on FINER: paired accuracy and its breakdowns (paper, sections 2.4, E).

Inputs are the dataset's pair records (``mcq_pair.schema.json`` dicts, e.g. the ``json`` column
of ``datasets.load_dataset(folder, split=setting)``) and the model's raw answers keyed by
question id (:func:`load_predictions` reads them from JSONL). :func:`score` parses every answer
(:func:`finer_datasets.eval.answers.parse_answer`), checks that the answers cover exactly the
dataset's questions, and returns per setting and pooled:

- ``paired_accuracy`` -- Eq. 1: percent of pairs whose positive *and* negative question are right;
- ``question_accuracy``, ``positive_accuracy``, ``negative_accuracy`` -- percent of questions;
- ``by_k`` / ``by_position`` -- paired accuracy per number of entities (Fig. 4) and per
  position of the negated entity, counted from 1 (E.1); ``by_negated_index`` is the same keyed by
  the records' 0-based ``negated_index`` (kept for the Python API; reports show ``by_position``);
- ``false_positive_rate`` -- percent of negative questions answered with an ``affirm`` option
  (accepting a false premise), ``false_negative_rate`` -- percent of positive questions answered
  with a ``deny`` option (E.7);
- ``unparseable`` -- answers the parser could not read (scored as wrong);
- ``ci95`` -- a percentile bootstrap interval of the paired accuracy, resampling pairs;
- ``random_baselines`` -- expected paired accuracy of a uniform guesser (4%) and of a
  polarity-aware guesser (6.25%, E.6), computed analytically from the options.

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
from finer_datasets.eval.predictions import load_predictions
from finer_datasets.mcq.records import pair_rows

__all__ = [
    "PredictionsError",
    "PairOutcome",
    "load_predictions",
    "check_predictions",
    "pair_outcome",
    "score",
    "summarize",
    "pair_records",
    "RANDOM_UNIFORM",
    "SETTING_ORDER",
]

RANDOM_UNIFORM = 4.0  # (1/5)^2, in percent (paper, Table 1 and E.6)
SETTING_ORDER = SETTINGS  # the paper's order
_EXAMPLES = 5


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


def check_predictions(records: Sequence[Mapping[str, Any]], predictions: Mapping[str, str]) -> None:
    """Raise :class:`PredictionsError` unless ``predictions`` answers exactly the questions of
    ``records`` (counts and up to 5 examples of missing and unknown ids)."""
    expected: list[str] = []
    for record in records:
        expected += [record["positive"]["question_id"], record["negative"]["question_id"]]
    repeated = [qid for qid, n in Counter(expected).items() if n > 1]
    if repeated:
        raise ValueError(f"the dataset repeats {len(repeated)} question id(s) (e.g. {_examples(repeated)})")
    expected_set = set(expected)
    missing = [qid for qid in expected if qid not in predictions]
    unknown = [qid for qid in predictions if qid not in expected_set]
    if missing or unknown:
        raise PredictionsError(
            f"predictions do not match the dataset's {len(expected)} questions: {_id_problems(missing, (), unknown)}",
            missing=missing,
            unknown=unknown,
        )


@dataclass(frozen=True)
class PairOutcome:
    """How one pair was answered (see :func:`pair_outcome`)."""

    setting: str
    k: int
    negated_index: int
    positive_letter: str | None
    negative_letter: str | None
    positive_correct: bool
    negative_correct: bool
    false_positive: bool  # the negative question was answered with an "affirm" option
    false_negative: bool  # the positive question was answered with a "deny" option
    polarity_aware_chance: Fraction  # probability that a polarity-aware guesser gets the pair right

    @property
    def paired_correct(self) -> bool:
        return self.positive_correct and self.negative_correct

    @property
    def unparseable(self) -> int:
        return (self.positive_letter is None) + (self.negative_letter is None)


def _chosen_type(question: Mapping[str, Any], letter: str | None) -> str | None:
    if letter is None:
        return None
    return question["option_types"][LETTERS.index(letter)]


def _polarity_aware_chance(question: Mapping[str, Any]) -> Fraction:
    """Pick affirm or deny with p = 1/2, then uniformly among the options of that kind (E.6)."""
    types = list(question["option_types"])
    kind = types[LETTERS.index(question["answer"])]
    kinds = set(types)
    return Fraction(1, len(kinds)) * Fraction(1, types.count(kind))


def pair_outcome(record: Mapping[str, Any], positive_letter: str | None, negative_letter: str | None) -> PairOutcome:
    """The outcome of one pair record given the letters parsed from its two answers (``None``:
    unparseable, counted as wrong). A pure function: no parsing, no I/O, no randomness."""
    pos, neg = record["positive"], record["negative"]
    for letter in (positive_letter, negative_letter):
        if letter is not None and letter not in LETTERS:
            raise ValueError(f"not an option letter: {letter!r}")
    return PairOutcome(
        setting=record["setting"],
        k=int(record["k"]),
        negated_index=int(record["negated_index"]),
        positive_letter=positive_letter,
        negative_letter=negative_letter,
        positive_correct=positive_letter == pos["answer"],
        negative_correct=negative_letter == neg["answer"],
        false_positive=_chosen_type(neg, negative_letter) == "affirm",
        false_negative=_chosen_type(pos, positive_letter) == "deny",
        polarity_aware_chance=_polarity_aware_chance(pos) * _polarity_aware_chance(neg),
    )


def _percent(count: int | float, total: int) -> float | None:
    return 100.0 * count / total if total else None


def _bootstrap_ci(values: Sequence[bool], resamples: int, seed: int) -> list[float] | None:
    """Percentile 95% interval of the mean (in percent), resampling ``values`` with replacement."""
    n = len(values)
    if not n or resamples <= 0:
        return None
    import numpy as np

    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=np.float64)
    means = np.empty(resamples, dtype=np.float64)
    rows = max(1, 2_000_000 // n)  # bound the index matrix to ~16 MB
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = data[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(100.0 * low), float(100.0 * high)]


def _by(outcomes: Sequence[PairOutcome], key: str) -> dict[int, dict[str, Any]]:
    groups: dict[int, list[PairOutcome]] = {}
    for o in outcomes:
        groups.setdefault(getattr(o, key), []).append(o)
    return {
        value: {
            "paired_accuracy": _percent(sum(o.paired_correct for o in group), len(group)),
            "n_pairs": len(group),
        }
        for value, group in sorted(groups.items())
    }


def summarize(outcomes: Sequence[PairOutcome], *, bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The metrics block of a list of pair outcomes (one setting, or all of them pooled)."""
    n = len(outcomes)
    paired = [o.paired_correct for o in outcomes]
    pos_right = sum(o.positive_correct for o in outcomes)
    neg_right = sum(o.negative_correct for o in outcomes)
    polarity = sum((o.polarity_aware_chance for o in outcomes), Fraction(0))
    by_index = _by(outcomes, "negated_index")
    return {
        "n_pairs": n,
        "n_questions": 2 * n,
        "paired_accuracy": _percent(sum(paired), n),
        "question_accuracy": _percent(pos_right + neg_right, 2 * n),
        "positive_accuracy": _percent(pos_right, n),
        "negative_accuracy": _percent(neg_right, n),
        "false_positive_rate": _percent(sum(o.false_positive for o in outcomes), n),
        "false_negative_rate": _percent(sum(o.false_negative for o in outcomes), n),
        "unparseable": sum(o.unparseable for o in outcomes),
        "by_k": _by(outcomes, "k"),
        "by_negated_index": by_index,
        "by_position": {index + 1: group for index, group in by_index.items()},
        "ci95": _bootstrap_ci(paired, bootstrap, seed),
        "random_baselines": {
            "uniform": RANDOM_UNIFORM,
            "polarity_aware": float(100 * polarity / n) if n else None,
        },
    }


def _setting_key(setting: str) -> tuple[int, str]:
    return (SETTING_ORDER.index(setting) if setting in SETTING_ORDER else len(SETTING_ORDER), setting)


def score(
    records: Iterable[Mapping[str, Any]],
    predictions: Mapping[str, str] | Iterable[Any],
    *,
    parser: str = "strict",
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score raw answers against pair records.

    ``predictions`` maps question ids to raw model output (:func:`load_predictions`); every
    question of ``records`` must be answered exactly once and no other id may appear, else
    :class:`PredictionsError`. ``parser`` is ``"strict"`` or ``"official"``
    (:func:`~finer_datasets.eval.answers.parse_answer`). ``bootstrap`` resamples (0: no interval)
    with ``numpy.random.default_rng(seed)`` give ``ci95`` of each block.

    Returns ``{"parser", "bootstrap", "seed", "n_pairs", "n_questions", "settings": {setting:
    block}, "overall": block, "random_baselines"}``; percentages are floats in [0, 100]
    (``None`` for an empty group) and ``by_k`` / ``by_position`` / ``by_negated_index`` are keyed by int.
    """
    if parser not in PARSER_MODES:
        raise ValueError(f"unknown parser mode {parser!r}; expected one of {', '.join(PARSER_MODES)}")
    records = pair_records(records)
    predictions = _as_mapping(predictions)
    check_predictions(records, predictions)

    outcomes: list[PairOutcome] = []
    for record in records:
        pos, neg = record["positive"], record["negative"]
        pos_letter = parse_answer(predictions[pos["question_id"]], pos["options"], mode=parser)
        neg_letter = parse_answer(predictions[neg["question_id"]], neg["options"], mode=parser)
        outcomes.append(pair_outcome(record, pos_letter, neg_letter))

    by_setting: dict[str, list[PairOutcome]] = {}
    for o in outcomes:
        by_setting.setdefault(o.setting, []).append(o)
    settings = {
        name: summarize(by_setting[name], bootstrap=bootstrap, seed=seed)
        for name in sorted(by_setting, key=_setting_key)
    }
    overall = summarize(outcomes, bootstrap=bootstrap, seed=seed)
    return {
        "parser": parser,
        "bootstrap": bootstrap,
        "seed": seed,
        "n_pairs": len(outcomes),
        "n_questions": 2 * len(outcomes),
        "settings": settings,
        "overall": overall,
        "random_baselines": dict(overall["random_baselines"]),
    }
