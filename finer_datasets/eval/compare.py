"""Comparing scored runs on the same pairs: a Table-1-style table and a paired test per setting.

A run is what one report folder of ``finer score`` / ``baselines/score.py`` holds: the identity
from ``report.json`` (model, dataset with its manifest digest, prompt template, parser) and the
per-pair outcomes of ``pairs.jsonl`` (:data:`~finer_datasets.eval.report.PAIRS_FILE`).
:func:`compare` takes them as :class:`Run` values and returns, per setting and pooled
(``overall``):

- each run's paired accuracy over the pairs **every** run answered (so that all rows count the
  same pairs), with a 95% Wilson score interval, and Δ (points) against the baseline run;
- for each other run, a paired test against the baseline on those pairs. ``mcnemar`` (default):
  with b the pairs only the baseline got right and c those only the other run got right, the exact
  two-sided binomial test of b ~ Bin(b + c, 1/2) when b + c < :data:`EXACT_BELOW`, else
  χ² = max(0, |b − c| − 1)² / (b + c) with one degree of freedom (continuity-corrected; no statistic
  for the exact test, whose p is computed directly). ``bootstrap``: the per-pair differences
  resampled with ``numpy.random.default_rng(seed)``, a percentile 95% interval of Δ and the
  two-sided p = 2 · (min(#(Δ* ≤ 0), #(Δ* ≥ 0)) + 1) / (R + 1) over R resamples, capped at 1.

Everything here is pure: no file is read or written (the command is
:mod:`finer_datasets.cli.compare`); the same runs, parser, test and seed give the same result,
the same Markdown and CSV bytes.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from finer_datasets.errors import UsageError
from finer_datasets.eval.intervals import PAIRED_TESTS, WILSON, bootstrap_means, wilson_ci
from finer_datasets.eval.plots import dataset_label
from finer_datasets.eval.runinfo import dataset_identity
from finer_datasets.eval.report import _table
from finer_datasets.eval.scoring import _setting_key

__all__ = ["Run", "compare", "check_comparable", "mcnemar", "paired_bootstrap", "compare_markdown", "compare_csv",
           "compare_figure", "TESTS", "EXACT_BELOW", "OVERALL", "CSV_COLUMNS"]

TESTS = PAIRED_TESTS
EXACT_BELOW = 25  # discordant pairs under which McNemar's test is the exact binomial one
OVERALL = "overall"
_DASH = "–"
_SHORT = {"mcnemar-exact": "exact binomial", "mcnemar-chi2": "χ², continuity-corrected"}
CSV_COLUMNS = ("model", "run", "baseline", "setting", "pairs", "correct", "paired_accuracy", "ci95_low", "ci95_high",
               "delta", "baseline_only", "model_only", "test", "statistic", "p_value", "delta_ci95_low",
               "delta_ci95_high")


@dataclass(frozen=True)
class Run:
    """One scored run: ``label`` (its row), ``path`` (as given), what ``report.json`` records and
    ``pairs``: pair id -> ``{"setting", "strict", "official", ...}`` (a ``pairs.jsonl`` line)."""

    label: str
    path: str
    model: str | None
    dataset: Mapping[str, Any] | None
    prompt: Any
    parser: str | None
    pairs: Mapping[str, Mapping[str, Any]]


def _prompt_identity(prompt: Any) -> tuple[Any, Any]:
    if isinstance(prompt, Mapping):
        return prompt.get("name"), prompt.get("max_new_tokens")
    return prompt or None, None


def _prompt_text(prompt: Any) -> str:
    name, budget = _prompt_identity(prompt)
    if name is None:
        return "not recorded"
    return f"`{name}`" + (f", at most {budget} new tokens" if budget else "")


def _dataset_text(dataset: Any) -> str:
    digest = str((dataset or {}).get("manifest_digest") or "") if isinstance(dataset, Mapping) else ""
    return f"{dataset_label(dataset) or 'not recorded'} (manifest {digest[:19] or 'without digest'})"


def check_comparable(runs: Sequence[Run], *, baseline: int = 0, allow_different_datasets: bool = False,
                     allow_different_prompts: bool = False) -> list[str]:
    """Raise :class:`UsageError` (one line) when a run was scored on another dataset (name,
    version, manifest digest) or with another prompt template (name, token budget) than the
    baseline, unless allowed; return a note for each difference that was allowed."""
    base, notes = runs[baseline], []
    kinds = (("datasets", "scored on", lambda r: r.dataset, dataset_identity, _dataset_text, allow_different_datasets),
             ("prompts", "asked with", lambda r: r.prompt, _prompt_identity, _prompt_text, allow_different_prompts))
    for run in runs:
        for kind, verb, get, identity, text, allowed in kinds:
            if identity(get(run)) == identity(get(base)):
                continue
            flag = f"--allow-different-{kind}"
            what = f"{base.path} and {run.path} were {verb} different {kind} ({text(get(base))} vs {text(get(run))})"
            if not allowed:
                raise UsageError(f"{what}: pass {flag} to compare them anyway")
            notes.append(f"{what} ({flag}).")
    return notes


def mcnemar(b: int, c: int) -> dict[str, Any]:
    """McNemar's test on ``b`` pairs right only in the first run and ``c`` right only in the
    second: exact binomial below :data:`EXACT_BELOW` discordant pairs, else continuity-corrected χ²."""
    n = b + c
    if n < EXACT_BELOW:
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
        return {"test": "mcnemar-exact", "method": f"exact binomial (b + c = {n} < {EXACT_BELOW})",
                "statistic": None, "p_value": min(1.0, 2 * tail / 2 ** n)}
    statistic = max(0, abs(b - c) - 1) ** 2 / n
    return {"test": "mcnemar-chi2", "method": f"χ² with continuity correction (b + c = {n} ≥ {EXACT_BELOW})",
            "statistic": statistic, "p_value": math.erfc(math.sqrt(statistic / 2))}  # survival function of χ² with 1 degree of freedom


def paired_bootstrap(base: Sequence[bool], other: Sequence[bool], *, resamples: int, seed: int) -> dict[str, Any]:
    """Paired bootstrap of Δ = accuracy(other) − accuracy(base), in points: its percentile 95%
    interval and the two-sided p = 2 · (min(#(Δ* ≤ 0), #(Δ* ≥ 0)) + 1) / (resamples + 1), capped at 1."""
    if resamples < 1:
        raise UsageError("--bootstrap must be at least 1 with --test bootstrap")
    import numpy as np

    means = bootstrap_means([int(o) - int(b) for b, o in zip(base, other)], resamples, seed)
    low, high = np.percentile(means, [2.5, 97.5])
    tail = min(int(np.sum(means <= 0)), int(np.sum(means >= 0)))
    p = min(1.0, 2 * (tail + 1) / (resamples + 1))  # never 0: a finite number of resamples cannot show that
    return {"test": "paired-bootstrap", "method": f"paired bootstrap ({resamples} resamples, seed {seed})",
            "statistic": None, "p_value": p,
            "delta_ci95": [float(100.0 * low), float(100.0 * high)]}


def _cell(outcomes: Sequence[bool], base: Sequence[bool] | None) -> dict[str, Any]:
    n, right = len(outcomes), sum(outcomes)
    accuracy = 100.0 * right / n
    delta = None if base is None else accuracy - 100.0 * sum(base) / n
    return {"n_pairs": n, "correct": right, "paired_accuracy": accuracy, "ci95": wilson_ci(right, n), "delta": delta}


def compare(runs: Sequence[Run], *, baseline: int = 0, parser: str = "strict", test: str = "mcnemar",
            resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The comparison of ``runs`` (at least two) against ``runs[baseline]`` under ``parser``, on
    the pairs every run answered; raises :class:`UsageError` when they share none."""
    if len(runs) < 2:
        raise UsageError("compare needs at least two run folders")
    if test not in TESTS:
        raise UsageError(f"--test {test!r}: use one of {', '.join(TESTS)}")
    base = runs[baseline]
    common = set(base.pairs).intersection(*(run.pairs for run in runs))
    order = [pid for pid in base.pairs if pid in common]  # the baseline's file order: deterministic resampling
    if not order:
        raise UsageError(f"the runs share no pair (compared by pair id): {', '.join(r.path for r in runs)}")
    groups: dict[str, list[str]] = {}
    for pid in order:
        groups.setdefault(str(base.pairs[pid]["setting"]), []).append(pid)
    settings = sorted(groups, key=_setting_key)
    groups[OVERALL] = order
    columns = [*settings, OVERALL]
    notes = [f"{run.path}: {len(run.pairs) - len(order)} of its {len(run.pairs)} pairs are not in every run and "
             "are left out." for run in runs if len(run.pairs) > len(order)]
    table, tests = [], []
    for index, run in enumerate(runs):
        cells = {}
        for name in columns:
            ids = groups[name]
            outcomes = [bool(run.pairs[pid][parser]) for pid in ids]
            reference = [bool(base.pairs[pid][parser]) for pid in ids]
            cells[name] = _cell(outcomes, None if index == baseline else reference)
            if index == baseline:
                continue
            b = sum(r and not o for r, o in zip(reference, outcomes))
            c = sum(o and not r for r, o in zip(reference, outcomes))
            found = mcnemar(b, c) if test == "mcnemar" else paired_bootstrap(reference, outcomes, resamples=resamples,
                                                                            seed=seed)
            tests.append({"run": run.label, "setting": name, "n_pairs": len(ids), "baseline_only": b, "run_only": c,
                          "delta": cells[name]["delta"], "delta_ci95": None, **found})
        table.append({"label": run.label, "path": run.path, "model": run.model, "baseline": index == baseline,
                      "cells": cells})
    return {"parser": parser, "test": test, "baseline": base.label, "interval": WILSON, "settings": columns,
            "dataset": dataset_label(base.dataset), "runs": table, "tests": tests, "notes": notes,
            "resamples": resamples if test == "bootstrap" else None, "seed": seed if test == "bootstrap" else None}


# -- rendering ------------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return _DASH
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _significance(result: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    return {(t["run"], t["setting"]): t["p_value"] for t in result["tests"]}


def _test_sentence(result: Mapping[str, Any]) -> str:
    if result["test"] == "mcnemar":
        return (f"McNemar's test on the pair outcomes: b = pairs only the baseline got right, c = pairs only the "
                f"other model got right; the exact two-sided binomial test when b + c < {EXACT_BELOW}, else "
                "χ² = max(0, |b − c| − 1)² / (b + c) with 1 degree of freedom (continuity correction).")
    return (f"Paired bootstrap over pairs ({result['resamples']} resamples, seed {result['seed']}): percentile 95% "
            "interval of Δ and two-sided p = 2 · (min(#(Δ* ≤ 0), #(Δ* ≥ 0)) + 1) / (resamples + 1), capped at 1.")


def compare_markdown(result: Mapping[str, Any], *, title: str | None = None) -> str:
    """The text of ``compare.md``: the accuracy table, then the paired tests."""
    columns, stars = result["settings"], _significance(result)
    lines = [f"# {title or 'FINER comparison' + (': ' + result['dataset'] if result['dataset'] else '')}", "",
             f"Paired accuracy (%) under the `{result['parser']}` parser with a 95% {result['interval']}, over the "
             f"pairs every run answered; Δ in points against the baseline **{result['baseline']}**; * p < 0.05 in "
             "the paired test below.", ""]
    rows = []
    for run in result["runs"]:
        row = [run["label"] + (" (baseline)" if run["baseline"] else "")]
        for name in columns:
            cell = run["cells"][name]
            text = f"{_fmt(cell['paired_accuracy'])} [{_fmt(cell['ci95'][0])}–{_fmt(cell['ci95'][1])}]"
            if cell["delta"] is not None:
                star = "*" if stars[(run["label"], name)] < 0.05 else ""
                text += f" (Δ {_fmt(cell['delta'], sign=True)}{star})"
            row.append(text)
        rows.append(row)
    first = result["runs"][0]["cells"]
    lines += _table(["Model", *(f"{name} (n={first[name]['n_pairs']})" for name in columns)],
                    ["---", *("---:" for _ in columns)], rows)
    lines += ["", f"## Paired test against {result['baseline']}", "", _test_sentence(result)
              + " One test per setting, not corrected for multiple comparisons.", ""]
    bootstrap = result["test"] == "bootstrap"
    header = ["Model", "Setting", "Pairs", "Baseline only (b)", "Model only (c)", "Δ (points)"]
    header += ["Δ 95% CI", "p"] if bootstrap else ["Test", "χ²", "p"]
    rows = []
    for t in result["tests"]:
        row = [t["run"], t["setting"], str(t["n_pairs"]), str(t["baseline_only"]), str(t["run_only"]),
               _fmt(t["delta"], sign=True)]
        if bootstrap:
            row += [f"{_fmt(t['delta_ci95'][0], sign=True)} to {_fmt(t['delta_ci95'][1], sign=True)}", _p(t["p_value"])]
        else:
            row += [_SHORT[t["test"]], _fmt(t["statistic"], 3), _p(t["p_value"])]
        rows.append(row)
    lines += _table(header, ["---", "---", "---:", "---:", "---:", "---:", *(("---:", "---:") if bootstrap else
                                                                          ("---", "---:", "---:"))], rows)
    if result["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    lines += ["", "![Paired accuracy per setting](compare.png)"]
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "" if value is None else f"{float(value):.10g}"


def compare_csv(result: Mapping[str, Any]) -> str:
    """The text of ``compare.csv``: one row per run and setting (:data:`CSV_COLUMNS`: ``model`` is
    the run's row label, ``run`` its folder; ``test`` is ``mcnemar-exact``, ``mcnemar-chi2`` or
    ``paired-bootstrap``); the test columns are empty on the baseline's rows."""
    tests = {(t["run"], t["setting"]): t for t in result["tests"]}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in result["runs"]:
        for name in result["settings"]:
            cell, t = run["cells"][name], tests.get((run["label"], name), {})
            ci, dci = cell["ci95"], t.get("delta_ci95") or [None, None]
            writer.writerow([run["label"], run["path"], "yes" if run["baseline"] else "no", name, cell["n_pairs"],
                             cell["correct"], _number(cell["paired_accuracy"]), _number(ci[0]), _number(ci[1]),
                             _number(cell["delta"]), t.get("baseline_only", ""), t.get("run_only", ""),
                             t.get("test", ""), _number(t.get("statistic")), _number(t.get("p_value")),
                             _number(dci[0]), _number(dci[1])])
    return buffer.getvalue()


def compare_figure(result: Mapping[str, Any]) -> Any:
    """Grouped bars: paired accuracy per setting, one bar per run with its 95% interval; a star
    above a bar whose paired test against the baseline gives p < 0.05."""
    from finer_datasets.eval.plots import _figure

    columns, runs, stars = result["settings"], result["runs"], _significance(result)
    fig, ax = _figure(max(7.5, 2.5 + 0.45 * len(columns) * len(runs)), 4.6)
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(columns))]
        ys = [run["cells"][name]["paired_accuracy"] for name in columns]
        spans = [run["cells"][name]["ci95"] for name in columns]
        ax.bar(xs, ys, width, label=run["label"] + (" (baseline)" if run["baseline"] else ""),
               yerr=[[y - lo for y, (lo, _) in zip(ys, spans)], [hi - y for y, (_, hi) in zip(ys, spans)]], capsize=2)
        for x, name, (_, hi) in zip(xs, columns, spans):
            if not run["baseline"] and stars[(run["label"], name)] < 0.05:
                ax.text(x, hi + 1, "*", ha="center", va="bottom")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns)
    ax.set_ylabel("paired accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title(f"Paired accuracy vs {result['baseline']}\n{result['dataset'] or 'FINER'} · {result['parser']} parser",
                 fontsize=10)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.text(0.01, 0.01, f"Error bars: 95% {result['interval']}; * p < 0.05 against the baseline ({result['test']}).",
             fontsize=7)
    return fig
