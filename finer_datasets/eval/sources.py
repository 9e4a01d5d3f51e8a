"""What ``finer score`` scores: the answers of a run and the pairs they are scored on.

:func:`read_answers` reads answers from any route -- our predictions JSONL (with the ``run.json``
beside it, written by ``baselines/score.py``), a VLMEvalKit result file, an lmms-eval
``--log_samples`` run -- into :class:`Answers`: the raw responses by question id and what the run
recorded (model, engine, prompt, the settings it asked, a ``--limit``). :func:`scored_pairs` then
picks the pairs to score: ``--setting`` (else the run's settings), the run's ``--limit`` (the first
N pairs of each setting, as ``baselines/score.py --limit N`` asked them) or the pairs an lmms-eval
run cut by ``--limit`` asked in full; answers to the dataset's other questions are not errors,
they are ignored and counted (:func:`finer_datasets.eval.scoring.score`, ``other_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from finer_datasets.constants import SETTINGS

__all__ = ["Answers", "read_answers", "scored_pairs", "SOURCES"]

#: what ``--predictions`` may be (``finer score --from``)
SOURCES = ("jsonl", "vlmevalkit", "lmms-eval")


@dataclass(frozen=True)
class Answers:
    """Raw answers by question id and what the run that made them recorded."""

    predictions: dict[str, str]
    model: str | None = None
    engine: str | None = None
    prompt: Mapping[str, Any] | None = None
    settings: tuple[str, ...] | None = None  # the settings the run asked (None: all, or not recorded)
    limit: int | None = None  # the run asked the first `limit` pairs of each setting
    pair_ids: frozenset[str] | None = None  # the run asked exactly these pairs (an lmms-eval run cut by --limit)
    notes: tuple[str, ...] = ()  # what the report says about where the answers come from
    run: Mapping[str, Any] | None = None  # the run.json beside a predictions file


def _from_jsonl(path: Path) -> Answers:
    from finer_datasets.eval.predictions import load_predictions
    from finer_datasets.eval.runinfo import RUN_FILE, read_run

    run = read_run(path.parent) if path.parent.is_dir() else None
    predictions = load_predictions(path)
    if not run:
        return Answers(predictions)
    prompt = {"name": run["prompt"], "max_new_tokens": run.get("max_new_tokens")} if run.get("prompt") else None
    settings = run.get("settings")
    limit = run.get("limit") if isinstance(run.get("limit"), int) and run.get("limit") > 0 else None
    notes = (f"the first {limit} pairs of each setting: the --limit {limit} recorded in the {RUN_FILE} beside the "
             "predictions",) if limit else ()
    return Answers(predictions, model=run.get("model"), engine=run.get("engine"), prompt=prompt,
                   settings=tuple(s for s in SETTINGS if s in settings) if settings else None, limit=limit,
                   notes=notes, run=run)


def read_answers(path: str | Path, source: str = "jsonl", *, vlmevalkit_answer: str = "prediction") -> Answers:
    """The answers at ``path``, read as ``source`` (:data:`SOURCES`)."""
    path = Path(path)
    if source == "vlmevalkit":
        from finer_datasets.eval.vlmevalkit import read_vlmevalkit

        return Answers(read_vlmevalkit(path, answer=vlmevalkit_answer), engine="vlmevalkit",
                       prompt={"name": "vlmevalkit", "description": "VLMEvalKit's MCQ prompt of the model (not FINER's)"})
    if source == "lmms-eval":
        from finer_datasets.eval.lmms.samples import read_lmms_run

        return read_lmms_run(path)
    if source != "jsonl":
        raise ValueError(f"unknown predictions source {source!r}; expected one of {', '.join(SOURCES)}")
    return _from_jsonl(path)


def _listed(settings: Sequence[str]) -> str:
    return ", ".join(settings)


def scored_pairs(pairs: Sequence[Mapping[str, Any]], answers: Answers, settings: Iterable[str] | None = None
                 ) -> tuple[list[Mapping[str, Any]], list[str], list[str]]:
    """``(pairs to score, question ids of the other pairs, notes for the report)``.

    ``settings`` (``--setting``) wins over the settings the run recorded; the run's ``limit`` keeps
    the first N pairs of each setting in dataset order, its ``pair_ids`` exactly those pairs."""
    from finer_datasets.eval.questions import select_pairs
    from finer_datasets.eval.scoring import question_ids

    notes = list(answers.notes)
    chosen = tuple(settings) if settings is not None else None
    if chosen is not None and set(chosen) != set(SETTINGS):
        notes.append(f"settings {_listed(chosen)} only (--setting)")
    elif chosen is None and answers.settings and set(answers.settings) != set(SETTINGS):
        chosen = answers.settings
        notes.append(f"settings {_listed(chosen)} only, those the answers' run asked")
    selected = select_pairs(pairs, chosen, answers.limit)
    if answers.pair_ids is not None:
        selected = [p for p in selected if p["pair_id"] in answers.pair_ids]
    kept = set(question_ids(selected))
    others = [qid for qid in question_ids(pairs) if qid not in kept]
    return selected, others, notes
