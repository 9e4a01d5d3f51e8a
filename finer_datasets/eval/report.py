"""Writing a scoring result (:func:`finer_datasets.eval.scoring.score`) as files.

:func:`write_report` writes, in ``out_dir``:

- ``report.json`` -- the whole result (settings, overall block, parser mode, counts, and what
  the scoring run recorded: model, engine, prompt template, dataset version and manifest digest)
  with sorted keys and a 2-space indent, so the same result always gives the same bytes; the
  position of the negated entity counts from 1 (``by_position``), as in the Markdown;
- ``report.md`` -- what was scored (model, engine, prompt template, dataset), a Table-1-style
  table (paired accuracy per setting beside the random baselines), question-level rates, and
  paired accuracy by k and by position of the negated entity (from 1);
- ``accuracy_by_k.png`` -- paired accuracy versus k, one line per setting (paper, Fig. 4);
- ``fp_fn_rates.png`` -- false-positive and false-negative rate per setting (paper, E.7).

The plots need matplotlib, imported (Agg canvas, no pyplot state) only when they are drawn.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ["write_report", "report_json", "report_markdown", "plot_accuracy_by_k", "plot_fp_fn_rates",
           "REPORT_FILES"]

REPORT_FILES = ("report.json", "report.md", "accuracy_by_k.png", "fp_fn_rates.png")
DEFAULT_TITLE = "FINER evaluation report"
_DASH = "–"


def _int_keys(groups: Mapping[Any, Any] | None) -> list[tuple[int, Mapping[str, Any]]]:
    """``by_k``-style groups sorted by their integer key (keys may be ints or, after a JSON
    round trip, strings)."""
    return sorted(((int(k), v) for k, v in (groups or {}).items()), key=lambda kv: kv[0])


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _positions(block: Mapping[str, Any]) -> dict[int, Any]:
    """A block's groups by position of the negated entity, counted from 1."""
    if block.get("by_position") is not None:
        return dict(_int_keys(block["by_position"]))
    return {k + 1: v for k, v in _int_keys(block.get("by_negated_index"))}


def _public_block(block: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in block.items() if k != "by_negated_index"}
    if "by_negated_index" in block or "by_position" in block:
        out["by_position"] = _positions(block)
    return out


def report_json(result: Mapping[str, Any], *, title: str = DEFAULT_TITLE) -> str:
    """The text of ``report.json``: ``result`` plus ``title`` and ``counts``, canonical; positions
    count from 1 (``by_position``; the 0-based ``by_negated_index`` is not written)."""
    overall = result.get("overall") or {}
    data = dict(result)
    if "settings" in data:
        data["settings"] = {name: _public_block(block) for name, block in (result.get("settings") or {}).items()}
    if "overall" in data:
        data["overall"] = _public_block(overall)
    data["title"] = title
    data["counts"] = {
        "pairs": result.get("n_pairs", overall.get("n_pairs")),
        "questions": result.get("n_questions", overall.get("n_questions")),
        "unparseable": overall.get("unparseable"),
        "pairs_by_setting": {name: block.get("n_pairs") for name, block in (result.get("settings") or {}).items()},
    }
    return json.dumps(_jsonable(data), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _fmt(value: Any, digits: int = 1) -> str:
    return _DASH if value is None else f"{value:.{digits}f}"


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
    return _positions(block) if key == "by_position" else dict(_int_keys(block.get(key)))


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


def _provenance(result: Mapping[str, Any]) -> list[str]:
    """Lines naming what was scored: model and engine, prompt template, dataset version."""
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
        lines.append(f"Dataset: {dataset.get('dataset') or dataset.get('source')} {dataset.get('version') or ''} "
                     f"(manifest {digest[:19] or 'without digest'}){verified}.")
    return lines + [""] if lines else []


def report_markdown(result: Mapping[str, Any], *, title: str = DEFAULT_TITLE, plots: bool = True) -> str:
    """The text of ``report.md``."""
    overall = result.get("overall") or {}
    parser = result.get("parser", "strict")
    lines = [f"# {title}", ""]
    lines += _provenance(result)
    lines.append(
        f"{result.get('n_pairs', overall.get('n_pairs', 0))} pairs "
        f"({result.get('n_questions', overall.get('n_questions', 0))} questions); "
        f"answer parser `{parser}`; unparseable answers (scored as wrong): {overall.get('unparseable', 0)}."
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
        lines.append(
            f"95% CI: percentile bootstrap over pairs, {result['bootstrap']} resamples, seed {result.get('seed', 0)}."
        )

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

    lines += ["", "## Question-level results (%)", ""]
    lines += _table(
        ["Setting", "Question acc.", "Positive acc.", "Negative acc.", "FP rate", "FN rate", "Unparseable"],
        ["---", "---:", "---:", "---:", "---:", "---:", "---:"],
        [
            [name, _fmt(block.get("question_accuracy")), _fmt(block.get("positive_accuracy")),
             _fmt(block.get("negative_accuracy")), _fmt(block.get("false_positive_rate")),
             _fmt(block.get("false_negative_rate")), str(block.get("unparseable", 0))]
            for name, block in _rows(result)
        ],
    )
    lines += ["", "FP rate: negative questions answered with an option accepting the false premise; "
              "FN rate: positive questions answered with an option rejecting the true premise."]

    lines += ["", "## Paired accuracy (%) by k", ""]
    lines += _grouped_table(result, "by_k", "k")
    lines += ["", "## Paired accuracy (%) by position of the negated entity", ""]
    lines += _grouped_table(result, "by_position", "position")
    if plots:
        lines += ["", "## Plots", "", "![Paired accuracy by k](accuracy_by_k.png)", "",
                  "![False-positive and false-negative rates](fp_fn_rates.png)"]
    return "\n".join(lines) + "\n"


def _figure(width: float, height: float) -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ModuleNotFoundError(
            "the report plots need matplotlib (pip install matplotlib), or call write_report(..., plots=False)"
        ) from exc

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def plot_accuracy_by_k(result: Mapping[str, Any], path: Path, *, title: str = DEFAULT_TITLE) -> Path:
    """Paired accuracy versus k, one line per setting, the random baselines dashed."""
    fig, ax = _figure(6.4, 4.2)
    ks: set[int] = set()
    for name, block in (result.get("settings") or {}).items():
        points = [(k, g["paired_accuracy"]) for k, g in _int_keys(block.get("by_k")) if g.get("paired_accuracy") is not None]
        if points:
            ks.update(k for k, _ in points)
            ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=name)
    baselines = result.get("random_baselines") or (result.get("overall") or {}).get("random_baselines") or {}
    for key, style in (("uniform", ":"), ("polarity_aware", "--")):
        if baselines.get(key) is not None:
            ax.axhline(baselines[key], color="gray", linestyle=style, linewidth=1,
                       label=f"random ({key.replace('_', '-')})")
    ax.set_xlabel("k (number of objects / attributes / relations)")
    ax.set_ylabel("paired accuracy (%)")
    ax.set_ylim(0, 100)
    if ks:
        ax.set_xticks(sorted(ks))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_fp_fn_rates(result: Mapping[str, Any], path: Path, *, title: str = DEFAULT_TITLE) -> Path:
    """Grouped bars of the false-positive and false-negative rate of each setting."""
    fig, ax = _figure(6.4, 4.2)
    settings = list((result.get("settings") or {}).items())
    xs = list(range(len(settings)))
    width = 0.38
    for shift, key, label in ((-width / 2, "false_positive_rate", "false positive"),
                              (width / 2, "false_negative_rate", "false negative")):
        values = [block.get(key) or 0.0 for _, block in settings]
        bars = ax.bar([x + shift for x in xs], values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize="small")
    ax.set_xticks(xs)
    ax.set_xticklabels([name for name, _ in settings])
    ax.set_ylabel("rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)
    return path


def write_report(result: Mapping[str, Any], out_dir: str | Path, *, title: str = DEFAULT_TITLE,
                 plots: bool = True) -> list[Path]:
    """Write ``report.json``, ``report.md`` and (``plots=True``, needs matplotlib)
    ``accuracy_by_k.png`` and ``fp_fn_rates.png`` into ``out_dir`` (created if needed);
    return their paths in that order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _write_text(out / "report.json", report_json(result, title=title)),
        _write_text(out / "report.md", report_markdown(result, title=title, plots=plots)),
    ]
    if plots:
        written.append(plot_accuracy_by_k(result, out / "accuracy_by_k.png", title=title))
        written.append(plot_fp_fn_rates(result, out / "fp_fn_rates.png", title=title))
    return written
