"""Reading an lmms-eval run back: ``finer score DATASET --from lmms-eval --predictions PATH``.

lmms-eval (0.7.3) run with ``--log_samples --output_path OUT`` writes, in
``OUT/<model_name_sanitized>/``, per run (``<date>`` is its start time, e.g. ``20261206_121922``):

* ``<date>_results.json`` -- the aggregated results, and what the run was: ``model_name`` (the
  ``pretrained=`` path or id), ``model_source`` (the lmms-eval model class, e.g. ``llava_hf``),
  ``config`` (``limit``, ``offset``, ``model_args``), ``configs[<task>]`` (each task's
  ``generation_kwargs.max_new_tokens`` and ``lmms_eval_specific_kwargs.prompt``) and
  ``n-samples[<task>]`` (``original`` and ``effective`` document counts);
* ``<date>_samples_<task>.jsonl`` -- one JSON object per document asked: ``doc_id`` (its index
  in the task's documents), ``target`` (``doc_to_target``: the right letter, as a string),
  ``filtered_resps`` (the model's answer after lmms-eval's filters, what ``process_results``
  receives; a plain string for one generation), ``resps`` (the raw answer, only when filters
  changed it), ``input`` (the prompt text), ``doc_hash``, ``token_counts``, ``input_media``, and
  one key per metric of the task holding what our ``process_results`` returned for it: the item
  ``{question_id, pair_id, setting, polarity, k, negated_index, options, option_types, answer,
  response}`` (``response`` equals ``filtered_resps``). The document itself is not saved, so the
  answers are keyed by our item's ``question_id``.

:func:`read_lmms_run` takes a samples file, a ``*_results.json`` file (its run's samples files
beside it) or a folder holding one run, and gives the answers with the model, the prompt and,
when the run was cut by ``--limit`` / ``--offset``, the pairs it asked both questions of -- the
pairs lmms-eval's own aggregation scores.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path
from typing import Any, Mapping

from finer_datasets.constants import SETTINGS
from finer_datasets.errors import PredictionsError
from finer_datasets.eval.lmms import METRICS
from finer_datasets.eval.predictions import AnswerCollector, check_answer, iter_json_objects
from finer_datasets.eval.sources import Answers

__all__ = ["find_run", "read_lmms_run"]

_SAMPLES = re.compile(r"^(?P<run>.+?)_samples_(?P<task>.+)\.jsonl$")
_RESULTS = re.compile(r"^(?P<run>.+?)_results\.json$")
_ITEM_KEYS = (*METRICS, "paired_accuracy", "question_accuracy")  # 0.1 task files named their metrics so
_MAX_RESULTS_BYTES = 64 << 20  # a results.json is a few KiB; samples files are read line by line (bounded)


def find_run(path: str | Path) -> tuple[list[Path], Path | None]:
    """The samples files of one lmms-eval run and its ``*_results.json`` (``None`` if absent)."""
    path = Path(path)
    if path.is_file():
        samples, results = _SAMPLES.match(path.name), _RESULTS.match(path.name)
        if samples:
            beside = path.parent / f"{samples['run']}_results.json"
            return [path], beside if beside.is_file() else None
        if results:
            files = sorted(path.parent.glob(f"{glob.escape(results['run'])}_samples_*.jsonl"))
            if not files:
                raise PredictionsError("no <date>_samples_<task>.jsonl beside this lmms-eval results file: run "
                                       "lmms-eval with --log_samples", path=path)
            return files, path
        raise PredictionsError("not an lmms-eval samples file (<date>_samples_<task>.jsonl) or results file "
                               "(<date>_results.json)", path=path)
    if not path.is_dir():
        raise PredictionsError("no such file or folder", path=path)
    runs: dict[tuple[Path, str], list[Path]] = {}
    for file in sorted(path.rglob("*_samples_*.jsonl")):
        match = _SAMPLES.match(file.name)
        if match:
            runs.setdefault((file.parent, match["run"]), []).append(file)
    if not runs:
        raise PredictionsError("no lmms-eval samples files (<date>_samples_<task>.jsonl) in this folder: run "
                               "lmms-eval with --log_samples", path=path)
    if len(runs) > 1:
        shown = ", ".join(f"{folder.relative_to(path) / run}" for folder, run in runs)
        raise PredictionsError(f"{len(runs)} lmms-eval runs in this folder ({shown}): give one run's "
                               "<date>_results.json or samples file", path=path)
    (folder, run), files = runs.popitem()
    results = folder / f"{run}_results.json"
    return files, results if results.is_file() else None


def _item(sample: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Our ``process_results`` item in one samples line (under any of its metric names)."""
    for key in (*_ITEM_KEYS, *sample):
        value = sample.get(key)
        if isinstance(value, Mapping) and "question_id" in value and "pair_id" in value:
            return value
    return None


def _results(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        if path.stat().st_size > _MAX_RESULTS_BYTES:  # bounded like every file read for scoring
            raise PredictionsError(f"over the limit of {_MAX_RESULTS_BYTES:,} bytes for an lmms-eval results file",
                                   path=path)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PredictionsError(f"not a readable lmms-eval results file ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise PredictionsError("not an lmms-eval results file (a JSON object)", path=path)
    return data


def _prompt(results: Mapping[str, Any], tasks: list[str]) -> dict[str, Any] | None:
    seen = set()
    for task in tasks:
        config = (results.get("configs") or {}).get(task) or {}
        kwargs = config.get("lmms_eval_specific_kwargs") or {}
        name = kwargs.get("prompt") or (kwargs.get("default") or {}).get("prompt")
        seen.add((name, (config.get("generation_kwargs") or {}).get("max_new_tokens")))
    if len(seen) != 1 or None in next(iter(seen)):
        return None
    name, budget = seen.pop()
    return {"name": name, "max_new_tokens": budget}


def read_lmms_run(path: str | Path) -> Answers:
    """The answers of one lmms-eval run (see the module docstring for what ``path`` may be).

    Every line of a FINER task's samples file must hold our item; a samples file of another task
    (a run of several benchmarks) is skipped. Problems are a :class:`PredictionsError` naming the
    file and the line: not JSON, no item, a bad ``question_id`` / ``response``, a question answered
    twice (in one file or in two)."""
    files, results_path = find_run(path)
    results = _results(results_path)
    answers: dict[str, str] = {}
    where: dict[str, Path] = {}
    halves: dict[str, set[str]] = {}
    settings: set[str] = set()
    tasks = []
    for file in files:
        collected = AnswerCollector(file)
        for number, sample in iter_json_objects(file, keys=()):
            item = _item(sample)
            if item is None and not collected.answers and number == 1:
                break  # another benchmark's task
            if item is None:
                raise PredictionsError("no FINER item (the process_results record with 'question_id') in this "
                                       "lmms-eval sample", path=file, line=number)
            qid, response = check_answer(item, file, number)
            collected.add(qid, response, number)
            halves.setdefault(str(item.get("pair_id")), set()).add(str(item.get("polarity")))
            settings.add(str(item.get("setting")))
        for qid, response in collected.result().items():
            if qid in answers:
                raise PredictionsError(f"question {qid!r} is answered in two samples files: {where[qid]} and {file}",
                                       path=file)
            answers[qid], where[qid] = response, file
        if collected.answers:
            tasks.append(_SAMPLES.match(file.name)["task"])
    if not answers:
        raise PredictionsError("no FINER answers in these lmms-eval samples (tasks exported by finer export "
                               "--format lmms-eval)", path=path)
    config = results.get("config") or {}
    run = _SAMPLES.match(files[0].name)["run"]
    notes = [f"answers of lmms-eval run {run} ({len(tasks)} task(s): {', '.join(tasks)})"]
    pair_ids = None
    if config.get("limit") is not None or config.get("offset"):
        pair_ids = frozenset(p for p, polarities in halves.items() if len(polarities) == 2)
        limit = config.get("limit")
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit  # lmms-eval stores 5 as 5.0
        cut = [f"--limit {limit}"] if limit is not None else []
        cut += [f"--offset {config['offset']}"] if config.get("offset") else []
        notes.append(f"the run was cut by lmms-eval {' '.join(cut)}: the {len(pair_ids)} pairs whose two questions "
                     "it asked, as its own aggregation scores them")
    elif results_path is None:
        notes.append(f"no {run}_results.json beside the samples: the prompt and any --limit are unknown")
    model = results.get("model_name") or None
    source = results.get("model_source") or config.get("model")
    return Answers(predictions=answers, model=model, engine=f"lmms-eval {source}" if source else "lmms-eval",
                   prompt=_prompt(results, tasks), settings=tuple(s for s in SETTINGS if s in settings) or None,
                   pair_ids=pair_ids, notes=tuple(notes))
