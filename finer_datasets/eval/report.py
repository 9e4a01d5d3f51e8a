"""Writing a scoring result (:func:`finer_datasets.eval.scoring.score`) as files.

:func:`write_report` writes, in ``out_dir``:

- ``report.json`` -- the whole result (settings, overall block, both parsers, coverage, quality,
  the headline and what the scoring run recorded: model, engine, prompt template, dataset version
  and manifest digest) with sorted keys and a 2-space indent, so the same result always gives the
  same bytes; the position of the negated entity counts from 1 (``by_position``), as in the Markdown;
- ``report.md`` -- a banner when many answers could not be read, the headline (paired accuracy
  under both parsers, naming the one comparable with the paper's Table 1), what was scored (model,
  engine, prompt template, dataset, subset), a Table-1-style table beside the random baselines
  (each defined in one sentence), question-level rates, coverage, and paired accuracy by k and by
  position of the negated entity (from 1);
- ``accuracy_by_k.png`` and ``fp_fn_rates.png`` (:mod:`finer_datasets.eval.plots`), and for a
  granularity ladder or rotated positions the sections and plots of :mod:`finer_datasets.eval.analyses`;
- ``pairs.jsonl`` when the result keeps its pairs (``score(..., keep_pairs=True)``, as ``finer score``
  and ``baselines/score.py`` do): one line per pair, ``{"k", "official", "pair_id", "position",
  "setting", "strict"}`` (whether the pair was right under each parser), what ``finer compare``
  pairs runs on; ``report.json`` does not repeat them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from finer_datasets.core.guard import check_target, refuse_link, write_file
from finer_datasets.errors import OutputError, UsageError
from finer_datasets.eval.analyses import (LEVEL_FILES, POSITION_FILES, analysis_intervals, analysis_plots,
                                          analysis_sections)
from finer_datasets.eval.intervals import BOOTSTRAP, WILSON
from finer_datasets.eval.plots import dataset_label, int_keys, model_label, plot_accuracy_by_k, plot_fp_fn_rates
from finer_datasets.eval.prompts import DEFAULT_PROMPT, get_prompt

__all__ = ["write_report", "report_json", "report_markdown", "report_title", "headline", "plot_accuracy_by_k",
           "plot_fp_fn_rates", "REPORT_FILES", "RANDOM_BASELINES", "PAIRS_FILE", "pairs_jsonl",
           "check_report_out", "report_outputs"]

REPORT_FILES = ("report.json", "report.md", "accuracy_by_k.png", "fp_fn_rates.png")
PAIRS_FILE = "pairs.jsonl"  # per-pair outcomes, written when the result keeps them
DEFAULT_TITLE = "FINER evaluation report"
_DASH = "–"
_NA = "n/a"
PAPER_PARSER = "official"  # the parser of FINER's released scorer, behind the paper's Table 1
#: the random baselines of the tables, one sentence each (paper, Table 1 and appendix E.6)
RANDOM_BASELINES = (
    "**Random (uniform)**: a guesser that picks one of the five options uniformly at random for each question "
    "gets a pair right with probability (1/5)² = 4%.",
    "**Random (polarity-aware)** (paper, appendix E.6): a guesser that first picks the kind of answer, "
    "accepting the premise (\"Yes, I can see ...\") or correcting it (\"No, but ...\"), with probability 1/2 "
    "each, then one option of that kind uniformly; with one accepting and four correcting options it gets the "
    "positive question right with probability 1/2 and the negative one with 1/2 × 1/4, a pair with "
    "0.5 × 0.125 = 6.25% (computed here from each pair's own option kinds).",
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _positions(block: Mapping[str, Any]) -> dict[int, Any]:
    """A block's groups by position of the negated entity, counted from 1."""
    if block.get("by_position") is not None:
        return dict(int_keys(block["by_position"]))
    return {k + 1: v for k, v in int_keys(block.get("by_negated_index"))}


def _public_block(block: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in block.items() if k != "by_negated_index"}
    if "by_negated_index" in block or "by_position" in block:
        out["by_position"] = _positions(block)
    return out


def _prompt_name(result: Mapping[str, Any]) -> str | None:
    prompt = result.get("prompt")
    return prompt.get("name") if isinstance(prompt, Mapping) else prompt or None


def headline(result: Mapping[str, Any]) -> dict[str, Any]:
    """Paired accuracy under both parsers and which one, if any, is comparable with the paper's Table 1."""
    parsers = {mode: (block.get("overall") or {}).get("paired_accuracy")
               for mode, block in (result.get("by_parser") or {}).items()}
    if not parsers:
        parsers = {result.get("parser", "strict"): (result.get("overall") or {}).get("paired_accuracy")}
    name = _prompt_name(result)
    prompt = result.get("prompt")
    budget = prompt.get("max_new_tokens") if isinstance(prompt, Mapping) else None
    official = get_prompt(DEFAULT_PROMPT)
    if name == official.name and budget in (None, official.max_new_tokens):
        comparable = PAPER_PARSER if PAPER_PARSER in parsers else None
        why = (f"`{official.name}` prompt, at most {official.max_new_tokens} new tokens, FINER's released "
               "first-letter parser")
    elif name == official.name:
        comparable, why = None, (f"the `{official.name}` prompt, but with at most {budget} new tokens "
                                 f"(Table 1: {official.max_new_tokens})")
    elif name:
        comparable, why = None, f"prompt `{name}` (Table 1 used the `{official.name}` prompt)"
    else:
        comparable, why = None, (f"the prompt is not recorded: the `{PAPER_PARSER}` figure is comparable with "
                                 f"Table 1 only if the answers were made with the `{official.name}` prompt")
    return {"paired_accuracy": parsers, "prompt": name, "comparable_with_table1": comparable, "reason": why}


def report_title(result: Mapping[str, Any]) -> str:
    """"FINER evaluation: MODEL on FINER-CompreCap 2.0.0" (a local model folder by its own name)."""
    dataset = dataset_label(result.get("dataset")) or "FINER"
    return f"FINER evaluation: {model_label(result.get('model'))} on {dataset}" if result.get("model") \
        else f"FINER evaluation on {dataset}"


def report_json(result: Mapping[str, Any], *, title: str = DEFAULT_TITLE) -> str:
    """The text of ``report.json``: ``result`` plus ``title``, ``counts``, ``headline`` and the
    interval methods, canonical; positions count from 1 (``by_position``; the 0-based
    ``by_negated_index`` is not written)."""
    overall = result.get("overall") or {}
    data = dict(result)
    data.pop("pairs", None)  # per-pair outcomes go to pairs.jsonl
    if "settings" in data:
        data["settings"] = {name: _public_block(block) for name, block in (result.get("settings") or {}).items()}
    if "overall" in data:
        data["overall"] = _public_block(overall)
    data["title"] = title
    data["headline"] = headline(result)
    data["intervals"] = {"ci95": BOOTSTRAP, "by_k.ci95": WILSON, "by_position.ci95": WILSON, **analysis_intervals(result)}
    data["counts"] = {
        "pairs": result.get("n_pairs", overall.get("n_pairs")),
        "questions": result.get("n_questions", overall.get("n_questions")),
        "unparseable": overall.get("unparseable"),
        "missing": overall.get("missing", 0),
        "pairs_by_setting": {name: block.get("n_pairs") for name, block in (result.get("settings") or {}).items()},
    }
    return json.dumps(_jsonable(data), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _fmt(value: Any, digits: int = 1, none: str = _DASH) -> str:
    return none if value is None else f"{value:.{digits}f}"


def _ci(block: Mapping[str, Any]) -> str:
    ci = block.get("ci95")
    return _DASH if not ci else f"{ci[0]:.1f}–{ci[1]:.1f}"


def _rows(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rows = list((result.get("settings") or {}).items())
    if result.get("overall"):
        rows.append(("overall", result["overall"]))
    return rows


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _groups(block: Mapping[str, Any], key: str) -> dict[int, Any]:
    return _positions(block) if key == "by_position" else dict(int_keys(block.get(key)))


def _grouped_table(result: Mapping[str, Any], key: str, label: str) -> list[str]:
    settings = result.get("settings") or {}
    values = sorted({k for block in settings.values() for k in _groups(block, key)})
    rows = []
    for value in values:
        row = [str(value)]
        for block in settings.values():
            group = _groups(block, key).get(value)
            row.append(_DASH if group is None else f"{_fmt(group['paired_accuracy'])} (n={group['n_pairs']})")
        rows.append(row)
    return _table([label, *settings], ["---:", *("---:" for _ in settings)], rows)


def _banner(result: Mapping[str, Any]) -> list[str]:
    quality = result.get("quality") or {}
    if not quality.get("message"):
        return []
    lead = "No usable result" if quality.get("status") == "unusable" else "Warning"
    return [f"> **{lead}:** {quality['message']}.", ""]


def _headline_lines(result: Mapping[str, Any]) -> list[str]:
    head = headline(result)
    figures = ", ".join(f"`{mode}` parser {_fmt(value, none=_NA)}%" for mode, value in head["paired_accuracy"].items())
    lines = [f"**Paired accuracy: {figures}.**"]
    if head["comparable_with_table1"]:
        lines.append(f"The `{head['comparable_with_table1']}` figure is the one comparable with the paper's Table 1 "
                     f"({head['reason']}).")
    else:
        lines.append(f"Neither figure is comparable with the paper's Table 1: {head['reason']}.")
    return [" ".join(lines), ""]


def _provenance(result: Mapping[str, Any]) -> list[str]:
    """Lines naming what was scored: model and engine, prompt template, dataset version, subset."""
    lines = []
    prompt = result.get("prompt")
    if result.get("model") or result.get("engine"):
        engine = f" (engine `{result['engine']}`)" if result.get("engine") else ""
        lines.append(f"Model: {result.get('model') or 'unnamed'}{engine}.")
    if isinstance(prompt, Mapping):
        budget = f", at most {prompt['max_new_tokens']} new tokens" if prompt.get("max_new_tokens") else ""
        lines.append(f"Prompt template: `{prompt.get('name')}`{budget}.")
    elif prompt:
        lines.append(f"Prompt template: `{prompt}`.")
    else:
        lines.append("Prompt template: not recorded (numbers are comparable with the paper's Table 1 only "
                     "for the `official` template).")
    dataset = result.get("dataset")
    if isinstance(dataset, Mapping):
        digest = str(dataset.get("manifest_digest") or "")
        verified = "" if dataset.get("verified", True) else " **NOT VERIFIED against its manifest**"
        lines.append(f"Dataset: {dataset_label(dataset)} (manifest {digest[:19] or 'without digest'}){verified}.")
    lines += [f"Scored: {note}." for note in result.get("selection_notes") or ()]
    return lines + [""] if lines else []


def _coverage(result: Mapping[str, Any]) -> list[str]:
    coverage = result.get("coverage") or {}
    if not coverage:
        return []
    if not coverage.get("missing") and not coverage.get("ignored"):
        return ["", f"Coverage: all {coverage.get('total', 0)} questions answered."]
    lines = ["", "## Coverage", ""]
    lines += _table(["Setting", "Answered", "Questions", "Coverage (%)"], ["---", "---:", "---:", "---:"],
                    [[name, str(c["answered"]), str(c["total"]), _fmt(100 * c["answered"] / c["total"] if c["total"] else None)]
                     for name, c in (coverage.get("by_setting") or {}).items()])
    if coverage.get("missing"):
        lines += ["", f"{coverage['missing']} questions have no answer and are scored as wrong (--allow-missing)."]
    if coverage.get("ignored"):
        lines += ["", f"{coverage['ignored']} answers to questions outside the scored pairs were ignored."]
    return lines


def report_markdown(result: Mapping[str, Any], *, title: str = DEFAULT_TITLE, plots: bool = True) -> str:
    """The text of ``report.md``."""
    overall = result.get("overall") or {}
    parser = result.get("parser", "strict")
    lines = [f"# {title}", ""]
    lines += _banner(result)
    lines += _headline_lines(result)
    lines += _provenance(result)
    lines.append(
        f"{result.get('n_pairs', overall.get('n_pairs', 0))} pairs "
        f"({result.get('n_questions', overall.get('n_questions', 0))} questions); the tables below read answers "
        f"with the `{parser}` parser; unparseable answers (scored as wrong): {overall.get('unparseable', 0)}."
    )
    if parser == "official":
        lines.append("")
        lines.append(
            "> The `official` parser reproduces FINER's released one (first character in [A-Ea-e] "
            "anywhere in the answer): comparable with published numbers, but it misreads answers "
            "such as \"The answer is B\" (read as E)."
        )
    if result.get("bootstrap"):
        lines.append("")
        lines.append(f"95% CI: {BOOTSTRAP}, {result['bootstrap']} resamples, seed {result.get('seed', 0)}; "
                     f"by k and by position: {WILSON}.")

    lines += ["", "## Paired accuracy (%)", ""]
    lines += _table(
        ["Setting", "Pairs", "Model", "95% CI", "Random (uniform)", "Random (polarity-aware)"],
        ["---", "---:", "---:", "---", "---:", "---:"],
        [
            [name, str(block.get("n_pairs", 0)), _fmt(block.get("paired_accuracy")), _ci(block),
             _fmt((block.get("random_baselines") or {}).get("uniform"), 2),
             _fmt((block.get("random_baselines") or {}).get("polarity_aware"), 2)]
            for name, block in _rows(result)
        ],
    )
    lines += [""] + [f"- {sentence}" for sentence in RANDOM_BASELINES]

    by_parser = result.get("by_parser") or {}
    if by_parser:
        comparable = headline(result)["comparable_with_table1"]
        modes = list(by_parser)
        lines += ["", "## Paired accuracy (%) under both answer parsers", ""]
        lines += _table(["Setting", *(f"`{m}`" + (" (Table 1)" if m == comparable else "") for m in modes)],
                        ["---", *("---:" for _ in modes)],
                        [[name, *(_fmt(((by_parser[m].get("settings") or {}).get(name) or {}).get("paired_accuracy"))
                                  for m in modes)] for name in (result.get("settings") or {})]
                        + [["overall", *(_fmt((by_parser[m].get("overall") or {}).get("paired_accuracy")) for m in modes)]])
        lines += ["", "`strict` never guesses (an answer that does not state one option is wrong); `official` is "
                  "FINER's released scorer: the first letter A-E found anywhere in the answer."]

    lines += ["", "## Question-level results (%)", ""]
    lines += _table(
        ["Setting", "Question acc.", "Positive acc.", "Negative acc.", "FP rate", "FN rate", "Unparseable"],
        ["---", "---:", "---:", "---:", "---:", "---:", "---:"],
        [
            [name, _fmt(block.get("question_accuracy")), _fmt(block.get("positive_accuracy")),
             _fmt(block.get("negative_accuracy")), _fmt(block.get("false_positive_rate"), none=_NA),
             _fmt(block.get("false_negative_rate"), none=_NA), str(block.get("unparseable", 0))]
            for name, block in _rows(result)
        ],
    )
    lines += ["", "FP rate: negative questions answered with an option accepting the false premise; "
              "FN rate: positive questions answered with an option rejecting the true premise "
              f"({_NA}: no such answer could be read)."]
    lines += _coverage(result)

    lines += ["", "## Paired accuracy (%) by k", ""]
    lines += _grouped_table(result, "by_k", "k")
    lines += ["", "## Paired accuracy (%) by position of the negated entity", ""]
    lines += _grouped_table(result, "by_position", "position")
    if plots:
        lines += ["", "## Plots", "", f"Points show n (pairs) and a 95% {WILSON}.", "",
                  "![Paired accuracy by k](accuracy_by_k.png)", "",
                  "![False-positive and false-negative rates](fp_fn_rates.png)"]
    lines += analysis_sections(result, plots=plots)  # the ladder (Fig. 1, 12) and rotated positions (E.1), if any
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> Path:
    return write_file(path, text)  # a temp file of this run's own, then an atomic rename


def report_outputs() -> tuple[str, ...]:
    """Every file name a report may write into its folder (besides ``run.json``)."""
    return (*REPORT_FILES, PAIRS_FILE, *LEVEL_FILES, *POSITION_FILES)


def check_report_out(out: str | Path, *, also: tuple[str, ...] = (), links: tuple[str, ...] = (), option: str = "--out",
                     what: str = "finer score") -> Path:
    """Where a scoring run may write its report (and the files ``also`` names); returns it resolved.

    The output guard's rules (:func:`finer_datasets.core.guard.check_target`: never at or inside
    a dataset, never a link) and: a folder, and when it already holds a file the run would write
    (a report, ``run.json``, ``also``) it must be a scoring run's own folder -- its ``run.json``
    was written by finer-datasets (:func:`finer_datasets.eval.runinfo.is_run_folder`); a user's
    own ``report.md`` is never replaced. No file the run writes (nor ``links``) may be a link."""
    from finer_datasets.eval.runinfo import RUN_FILE, is_run_folder

    resolved = check_target(Path(out), option=option, what=what)
    if resolved.exists() and not resolved.is_dir():
        raise UsageError(f"{option} {out} is an existing file; give a folder for the report")
    if resolved.is_dir():
        names = (*report_outputs(), RUN_FILE, *also)
        for name in (*names, *links):
            refuse_link(resolved / name, "output")
        clash = [name for name in names if (resolved / name).exists()]
        if clash and not is_run_folder(resolved):
            shown = ", ".join(clash[:3]) + (", ..." if len(clash) > 3 else "")
            raise OutputError(f"{option} {out} already holds {shown}, not written by a FINER scoring run (it has no "
                              f"{RUN_FILE} of finer-datasets); choose another {option} or move them away")
    return resolved


def write_report(result: Mapping[str, Any], out_dir: str | Path, *, title: str | None = None,
                 plots: bool = True) -> list[Path]:
    """Write ``report.json``, ``report.md``, (``plots=True``, needs matplotlib)
    ``accuracy_by_k.png`` and ``fp_fn_rates.png``, and ``pairs.jsonl`` when ``result`` has
    ``pairs``, into ``out_dir`` (created if needed); return their paths in that order.
    ``title`` defaults to :func:`report_title`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = title or (report_title(result) if result.get("model") or result.get("dataset") else DEFAULT_TITLE)
    written = [
        _write_text(out / "report.json", report_json(result, title=title)),
        _write_text(out / "report.md", report_markdown(result, title=title, plots=plots)),
    ]
    if plots:
        written.append(plot_accuracy_by_k(result, out / "accuracy_by_k.png"))
        written.append(plot_fp_fn_rates(result, out / "fp_fn_rates.png"))
        written += analysis_plots(result, out)
    if result.get("pairs") is not None:
        written.append(_write_text(out / PAIRS_FILE, pairs_jsonl(result["pairs"])))
    return written


def pairs_jsonl(pairs: Any) -> str:
    """The text of ``pairs.jsonl``: one compact JSON object per pair, keys sorted."""
    return "".join(json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n" for row in pairs)
