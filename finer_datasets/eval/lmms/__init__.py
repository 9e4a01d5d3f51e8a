"""FINER as lmms-eval tasks: the functions the task YAMLs name, and the YAMLs themselves.

lmms-eval (``python -m lmms_eval``) loads a task from a YAML file; ours live in
``finer_datasets/eval/lmms/tasks/`` (one task per setting, ``finer_compre_cap_multi_obj`` ...,
and a group per benchmark, ``finer_compre_cap`` and ``finer_docci``) and name these functions through the ``utils.py`` beside them:

* :func:`questions_view` / ``process_docs_<setting>`` -- the dataset as stored (one row per image)
  flattened to one row per question of that setting, through the library's one flatten
  (:func:`finer_datasets.mcq.records.pair_rows` / ``question_rows``); rows hold text only and the
  ``image`` is decoded on access, so an image is stored once however many questions it has;
* :func:`doc_to_visual`, :func:`doc_to_text` (the ``official`` prompt of
  :mod:`finer_datasets.eval.prompts`; ``lmms_eval_specific_kwargs: {default: {prompt: ...}}``
  picks another template);
* :func:`process_results` -- one record per question carrying its pair id and everything scoring needs;
* :func:`paired_accuracy` (metric ``acc_paired``), :func:`paired_accuracy_official`
  (``acc_paired_official``) and :func:`question_accuracy` (``acc_question``) -- aggregations that
  rebuild the pairs and call :func:`finer_datasets.eval.scoring.score`, with the strict parser and
  with FINER's released first-letter parser: the numbers ``finer score`` (``--parser strict`` /
  ``official``) gives for the same answers, in percent. Pairs cut by ``--limit`` are left out.

The metric names (:data:`METRICS`) avoid the prefix ``paired_``: lmms-eval's results table
(``lmms_eval.utils.make_table``, 0.7.3) skips every metric whose name starts with it, a prefix it
keeps for the columns of its ``--baseline`` comparison (``paired_baseline``, ``paired_ci_lower``,
``paired_pvalue``, ...). ``acc_paired`` is the paper's notation (Acc_paired) and sorts first.
With ``--log_samples``, each line of lmms-eval's ``samples_<task>.jsonl`` holds our item under
each metric name: ``finer score --from lmms-eval`` reads them back into the full report
(:mod:`finer_datasets.eval.lmms.samples`).

Use them with ``--include_path $(python -m finer_datasets.eval.lmms)`` or
``LMMS_EVAL_PLUGINS=finer_datasets.eval.lmms``; ``finer export DATASET --format lmms-eval --out
DIR`` writes the same tasks pinned to one dataset folder or Hub revision (:func:`write_tasks`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from finer_datasets.constants import SETTINGS
from finer_datasets.core.views import decode_image, flat_view
from finer_datasets.eval.prompts import DEFAULT_PROMPT, get_prompt
from finer_datasets.mcq.records import QUESTION_COLUMNS, pair_rows, question_rows

__all__ = ["questions_view", "doc_to_visual", "doc_to_text", "process_results", "paired_accuracy",
           "paired_accuracy_official", "question_accuracy", "pairs_from_items", "write_tasks", "task_yamls",
           "shipped_files", "TASKS_DIR", "BENCHMARKS", "METRICS", "WHOLE_DATASET_GROUPS",
           *(f"process_docs_{s}" for s in SETTINGS)]

logger = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).parent / "tasks"
#: lmms-eval group name -> the dataset (Hub id) its shipped tasks read
BENCHMARKS = {"finer_compre_cap": "finer/compre_cap", "finer_docci": "finer/docci"}
#: groups whose dataset is not split by the FINER settings: one task over every question (the
#: granularity ladder, settings ``<form>_<source>``); documents through :func:`questions_view`
WHOLE_DATASET_GROUPS = ("finer_ladder",)
#: metric name -> its aggregation function (``utils.<name>`` in the task files); names avoid ``paired_*``
METRICS = {"acc_paired": "paired_accuracy", "acc_paired_official": "paired_accuracy_official",
           "acc_question": "question_accuracy"}
_ITEM_FIELDS = ("question_id", "pair_id", "setting", "polarity", "k", "negated_index", "options", "option_types",
                "answer")


# ------------------------------------------------------------------ documents


def questions_view(images: Any, settings: Iterable[str] | None = None) -> Any:
    """One row per question (``question_rows`` columns + ``image``, a lazily decoded ``Image()``
    column whose cells point into the image store) of a per-image ``datasets.Dataset``."""
    chosen = None if settings is None else tuple(settings)
    return flat_view(images, lambda record: [q for pair in pair_rows(record, chosen) for q in question_rows(pair)],
                     empty=QUESTION_COLUMNS)


def _process_docs(setting: str) -> Callable[[Any], Any]:
    def process_docs(dataset: Any) -> Any:
        return questions_view(dataset, (setting,))

    process_docs.__name__ = process_docs.__qualname__ = f"process_docs_{setting}"
    process_docs.__doc__ = f"The {setting} questions of a per-image FINER split, one row each."
    return process_docs


for _setting in SETTINGS:
    globals()[f"process_docs_{_setting}"] = _process_docs(_setting)


def doc_to_visual(doc: Mapping[str, Any]) -> list[Any]:
    """The question's image (RGB), as a one-element list."""
    return [decode_image(doc["image"]).convert("RGB")]


def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
    """The prompt of the template named by ``prompt`` in the kwargs (default ``official``)."""
    name = (lmms_eval_specific_kwargs or {}).get("prompt", DEFAULT_PROMPT)
    return get_prompt(name).format(doc["question"], doc["options"])


def process_results(doc: Mapping[str, Any], results: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """The model's raw answer with what scoring needs (pair id, options, answer), per metric."""
    response = results[0] if results else ""
    item = {key: doc[key] for key in _ITEM_FIELDS}
    item["options"], item["option_types"] = list(item["options"]), list(item["option_types"])
    item["response"] = "" if response is None else str(response)
    return {metric: item for metric in METRICS}


# ------------------------------------------------------------------ aggregation


def pairs_from_items(items: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Pair records and ``{question_id: response}`` rebuilt from :func:`process_results` items;
    pairs missing a question (``--limit``) are left out."""
    pairs: dict[str, dict[str, Any]] = {}
    responses: dict[str, str] = {}
    for item in items:
        pair = pairs.setdefault(item["pair_id"], {key: item[key] for key in ("pair_id", "setting", "k", "negated_index")})
        polarity = "positive" if item["polarity"] == "pos" else "negative"
        pair[polarity] = {key: item[key] for key in ("question_id", "options", "option_types", "answer")}
        responses[item["question_id"]] = item["response"]
    complete = [p for p in pairs.values() if "positive" in p and "negative" in p]
    if len(complete) < len(pairs):
        logger.warning("%d pair(s) miss a question (--limit?) and are left out of paired accuracy",
                       len(pairs) - len(complete))
    kept = {p[q]["question_id"] for p in complete for q in ("positive", "negative")}
    return complete, {qid: text for qid, text in responses.items() if qid in kept}


def _overall(items: Iterable[Mapping[str, Any]], key: str, parser: str = "strict") -> float:
    from finer_datasets.eval.scoring import score

    pairs, responses = pairs_from_items(items)
    if not pairs:
        return 0.0
    value = score(pairs, responses, parser=parser, bootstrap=0)["overall"][key]
    return float(value) if value is not None else 0.0


def paired_accuracy(items: Iterable[Mapping[str, Any]]) -> float:
    """Paired accuracy in percent (paper, Eq. 1), as ``finer score`` computes it (strict parser)."""
    return _overall(items, "paired_accuracy")


def paired_accuracy_official(items: Iterable[Mapping[str, Any]]) -> float:
    """Paired accuracy in percent with FINER's released first-letter parser (``finer score --parser official``)."""
    return _overall(items, "paired_accuracy", "official")


def question_accuracy(items: Iterable[Mapping[str, Any]]) -> float:
    """Per-question accuracy in percent, over the same pairs (strict parser)."""
    return _overall(items, "question_accuracy")


# ------------------------------------------------------------------ task files


def task_yamls(group: str = "finer_compre_cap", dataset: str | None = None, revision: str | None = None,
               prompt: str = DEFAULT_PROMPT) -> dict[str, str]:
    """File name -> text of the task package of one benchmark (template, one task per setting,
    the group), reading ``dataset`` (a Hub id or an absolute folder) at ``revision``."""
    template = get_prompt(prompt)
    path = dataset or BENCHMARKS[group]
    kwargs = f"dataset_kwargs:\n  revision: {revision}\n" if revision else ""
    files = {f"_{group}_template_yaml": (
        f"# FINER task template (finer-datasets); tasks include it. Prompt: {template.name}.\n"
        f"dataset_path: {path}\n{kwargs}test_split: test\noutput_type: generate_until\n"
        "doc_to_visual: !function utils.doc_to_visual\ndoc_to_text: !function utils.doc_to_text\n"
        "doc_to_target: answer\nprocess_results: !function utils.process_results\n"
        f"generation_kwargs:\n  max_new_tokens: {template.max_new_tokens}\n  temperature: 0\n  do_sample: false\n"
        "  num_beams: 1\n"
        f"lmms_eval_specific_kwargs:\n  default:\n    prompt: {template.name}\n"
        "metric_list:\n"
        + "".join(f"  - metric: {metric}\n    aggregation: !function utils.{function}\n    higher_is_better: true\n"
                  for metric, function in METRICS.items())
        + "metadata:\n  version: 1.1\n")}
    if group in WHOLE_DATASET_GROUPS:
        files[f"{group}.yaml"] = f"task: {group}\ninclude: _{group}_template_yaml\nprocess_docs: !function utils.questions_view\n"
        return files
    for setting in SETTINGS:
        files[f"{group}_{setting}.yaml"] = (f"task: {group}_{setting}\ninclude: _{group}_template_yaml\n"
                                            f"process_docs: !function utils.process_docs_{setting}\n")
    files[f"{group}.yaml"] = (f"group: {group}\ntask:\n" + "".join(f"  - {group}_{s}\n" for s in SETTINGS)
                              + "aggregate_metric_list:\n"
                              + "".join(f"  - metric: {m}\n    aggregation: mean\n    weight_by_size: true\n"
                                        for m in METRICS)
                              + "metadata:\n  version: 1.1\n")
    return files


UTILS_PY = '''"""lmms-eval loads this file by path; the functions live in finer_datasets.eval.lmms."""

from finer_datasets.eval.lmms import *  # noqa: F401,F403
'''


def shipped_files() -> dict[str, str]:
    """The files of ``tasks/``: every benchmark's tasks reading its Hub dataset, and ``utils.py``."""
    files = {name: text for group in BENCHMARKS for name, text in task_yamls(group).items()}
    return {**files, "utils.py": UTILS_PY}


def write_tasks(out: str | Path, *, dataset: str | None = None, revision: str | None = None,
                group: str = "finer_compre_cap", prompt: str = DEFAULT_PROMPT) -> list[Path]:
    """Write a task package (YAMLs + ``utils.py``) into ``out`` for ``--include_path``; returns the files."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in {**task_yamls(group, dataset, revision, prompt), "utils.py": UTILS_PY}.items():
        path = folder / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written
