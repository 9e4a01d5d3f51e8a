"""The report's plots, drawn from a scoring result (:func:`finer_datasets.eval.scoring.score`).

- ``accuracy_by_k.png`` -- paired accuracy versus k, one line per setting (paper, Fig. 4): every
  point with its number of pairs (``n=``) and a 95% Wilson score interval, the random baselines
  dashed;
- ``fp_fn_rates.png`` -- false-positive and false-negative rate per setting (paper, E.7); a rate
  with no answer read (0/0) is drawn as "n/a", never as a bar of height 0;
- for a granularity ladder (blocks with ``by_level``): ``accuracy_by_level.png`` -- negative-question
  accuracy (Fig. 1; the answer is always No) and paired accuracy (Fig. 12, left) per level, one line
  per setting -- and ``fp_fn_by_level.png`` -- FP and FN rate per level (Fig. 12, right);
- for the rotated pairs (``finer score --view positions``): ``accuracy_by_position.png`` -- paired
  accuracy per position of the negated element (E.1, Fig. 6).

Titles name the dataset (name and version) and the model, never a raw path. matplotlib is imported
(Agg canvas, no pyplot state) only when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from finer_datasets.core.guard import replacing
from finer_datasets.eval.intervals import WILSON, wilson_ci

__all__ = ["plot_accuracy_by_k", "plot_fp_fn_rates", "accuracy_by_k_figure", "fp_fn_figure", "int_keys",
           "dataset_label", "model_label", "plot_accuracy_by_level", "plot_fp_fn_by_level", "plot_accuracy_by_position"]

_SMALL = 7


def int_keys(groups: Mapping[Any, Any] | None) -> list[tuple[int, Mapping[str, Any]]]:
    """``by_k``-style groups sorted by their integer key (keys may be ints or, after a JSON
    round trip, strings)."""
    return sorted(((int(k), v) for k, v in (groups or {}).items()), key=lambda kv: kv[0])


def dataset_label(dataset: Any) -> str:
    """"FINER-CompreCap 2.0.0": the dataset's name and version from a result's ``dataset``."""
    if isinstance(dataset, Mapping):
        name = dataset.get("pretty_name") or dataset.get("dataset") or dataset.get("source") or "dataset"
        return f"{name} {dataset.get('version') or ''}".strip()
    return str(dataset or "")


def model_label(model: Any) -> str:
    """A model's name for a title: a Hub id as it is, a local folder by its own name."""
    text = str(model or "").rstrip("/\\")
    if not text:
        return "unnamed model"
    local = text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1 or Path(text).exists()
    return Path(text).name if local else text


def _figure(width: float, height: float, panels: int = 1) -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ModuleNotFoundError(
            "the report plots need matplotlib (pip install matplotlib), or call write_report(..., plots=False)"
        ) from exc

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    if panels > 1:
        return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    with replacing(path) as tmp:  # a temp file of this run's own (never a planted link), then a rename
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return path


def _title(ax: Any, what: str, result: Mapping[str, Any]) -> None:
    model = model_label(result.get("model")) if result.get("model") else None
    head = f"{what} — {model}" if model else what
    ax.set_title(f"{head}\n{dataset_label(result.get('dataset')) or 'FINER'} · {result.get('parser', 'strict')} parser",
                 fontsize=10)


def _interval(group: Mapping[str, Any], metric: str = "paired_accuracy") -> list[float] | None:
    if group.get("ci95") and metric == "paired_accuracy":
        return list(group["ci95"])
    n = int(group.get("n_pairs") or 0)
    return wilson_ci(round((group.get(metric) or 0.0) * n / 100), n)


def _lines(ax: Any, result: Mapping[str, Any], key: str, metric: str = "paired_accuracy") -> set[int]:
    """One line of ``metric`` per setting over the groups ``block[key]`` (``by_k``, ``by_level``, ...),
    each point with n and its 95% Wilson interval; returns the x values drawn."""
    settings = list((result.get("settings") or {}).items())
    ks: set[int] = set()
    for i, (name, block) in enumerate(settings):
        shift = 0.14 * (i - (len(settings) - 1) / 2)  # side by side, so that intervals do not hide each other
        points = [(k, g) for k, g in int_keys(block.get(key)) if g.get(metric) is not None]
        if not points:
            continue
        ks.update(k for k, _ in points)
        xs = [k + shift for k, _ in points]
        ys = [g[metric] for _, g in points]
        spans = [_interval(g, metric) or [y, y] for (_, g), y in zip(points, ys)]
        line = ax.errorbar(xs, ys, yerr=[[y - lo for y, (lo, _) in zip(ys, spans)], [hi - y for y, (_, hi) in zip(ys, spans)]],
                           marker="o", markersize=4, capsize=3, linewidth=1.2, label=name)
        color = line[0].get_color()
        for x, (_, g), (_, hi) in zip(xs, points, spans):
            ax.annotate(f"n={g['n_pairs']}", (x, hi), textcoords="offset points", xytext=(0, 2), ha="center",
                        va="bottom", rotation=90, fontsize=_SMALL - 1, color=color)
    return ks


def _percent_axis(ax: Any, xs: set[int], xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-4, 118)  # a point at 0% stays visible above the axis
    ax.set_yticks(range(0, 101, 20))
    if xs:
        ax.set_xticks(sorted(xs))


def accuracy_by_k_figure(result: Mapping[str, Any], key: str = "by_k", what: str = "Paired accuracy by k",
                         xlabel: str = "k (number of objects / attributes / relations)", n_of: str = "that k") -> Any:
    """The matplotlib ``Figure`` of :func:`plot_accuracy_by_k` (of another grouping with ``key``)."""
    fig, ax = _figure(8.4, 4.8)
    ks = _lines(ax, result, key)
    baselines = result.get("random_baselines") or (result.get("overall") or {}).get("random_baselines") or {}
    for key, style, label in (("uniform", ":", "random, uniform"), ("polarity_aware", "--", "random, polarity-aware")):
        if baselines.get(key) is not None:
            ax.axhline(baselines[key], color="gray", linestyle=style, linewidth=1,
                       label=f"{label} ({baselines[key]:.2f}%)")
    _percent_axis(ax, ks, xlabel, "paired accuracy (%)")
    _title(ax, what, result)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.text(0.01, 0.01, f"Error bars: 95% {WILSON}; n = pairs with {n_of}. Random baselines: see report.md.",
             fontsize=_SMALL)
    return fig


def plot_accuracy_by_k(result: Mapping[str, Any], path: Path) -> Path:
    """Paired accuracy versus k, one line per setting, each point with n and its 95% Wilson interval."""
    return _save(accuracy_by_k_figure(result), path)


def fp_fn_figure(result: Mapping[str, Any]) -> Any:
    """The matplotlib ``Figure`` of :func:`plot_fp_fn_rates`."""
    fig, ax = _figure(7.2, 4.6)
    settings = list((result.get("settings") or {}).items())
    xs = list(range(len(settings)))
    width = 0.38
    missing = 0
    for shift, key, color in ((-width / 2, "false_positive_rate", "tab:red"),
                              (width / 2, "false_negative_rate", "tab:blue")):
        values = [block.get(key) for _, block in settings]
        bars = ax.bar([x + shift for x, v in zip(xs, values) if v is not None], [v for v in values if v is not None],
                      width, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize="small")
        for x, value in zip(xs, values):
            if value is None:
                missing += 1
                ax.text(x + shift, 1.5, "n/a", ha="center", va="bottom", fontsize="small", color=color)
    if settings and missing == 2 * len(settings):
        ax.text(0.5, 0.5, "no answer could be read: no rate to show", transform=ax.transAxes, ha="center",
                va="center", color="dimgray")
    ax.set_xticks(xs)
    ax.set_xticklabels([name for name, _ in settings])
    ax.set_xlim(-0.6, max(len(settings), 1) - 0.4)
    ax.set_ylabel("rate (%)")
    ax.set_ylim(0, 105)
    _title(ax, "False-positive and false-negative rates", result)
    from matplotlib.patches import Patch  # an empty bar series has no patch to show in the legend

    ax.legend(handles=[Patch(color="tab:red", label="false positive"), Patch(color="tab:blue", label="false negative")],
              fontsize="small")
    note = ("FP: negative questions answered by accepting the false premise; "
            "FN: positive questions answered by rejecting the true one.")
    if missing:
        note += "\nn/a: no answer of that kind could be read (0/0 is no rate)."
    fig.text(0.01, 0.01, note, fontsize=_SMALL)
    return fig


def plot_fp_fn_rates(result: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars of the false-positive and false-negative rate of each setting; "n/a" where no
    answer of that kind could be read."""
    return _save(fp_fn_figure(result), path)


def plot_accuracy_by_position(result: Mapping[str, Any], path: Path) -> Path:
    """Paired accuracy per position of the negated element (1-3), one line per setting (E.1)."""
    return _save(accuracy_by_k_figure(result, "by_position", "Paired accuracy by position of the negative",
                                      "position of the negated element (rotated pairs, k = 3)", "that position"), path)


def _level_figure(result: Mapping[str, Any], panels: tuple[tuple[str, str], ...], what: str, note: str) -> Any:
    fig, axes = _figure(12.6, 4.8, len(panels))
    for ax, (metric, label) in zip(axes, panels):
        drawn = _lines(ax, result, "by_level", metric)
        _percent_axis(ax, drawn, "granularity level", label)
        if not drawn:
            ax.text(0.5, 0.5, "n/a: no answer of this kind could be read", transform=ax.transAxes, ha="center",
                    va="center", color="dimgray")
        ax.grid(True, alpha=0.3)
        _title(ax, f"{what}: {label}", result)
    shown = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    if shown:  # a panel may be empty (no answer of that kind read): the legend names what was drawn
        axes[-1].legend(list(shown.values()), list(shown), fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                        borderaxespad=0)
    fig.text(0.01, 0.01, note, fontsize=_SMALL)
    return fig


def plot_accuracy_by_level(result: Mapping[str, Any], path: Path) -> Path:
    """Negative-question and paired accuracy per granularity level, one line per setting (Fig. 1, 12 left)."""
    return _save(_level_figure(result, (("negative_accuracy", "negative-question accuracy (%)"),
                                        ("paired_accuracy", "paired accuracy (%)")), "By level",
                               f"Error bars: 95% {WILSON}; n = pairs at that level. Negative questions: the answer is "
                               "No (yesno) or 'No, but ...' (mcq)."), path)


def plot_fp_fn_by_level(result: Mapping[str, Any], path: Path) -> Path:
    """False-positive and false-negative rate per granularity level, one line per setting (Fig. 12, right)."""
    return _save(_level_figure(result, (("false_positive_rate", "false-positive rate (%)"),
                                        ("false_negative_rate", "false-negative rate (%)")), "By level",
                               "FP: negative questions answered by accepting the false query; FN: positive questions "
                               f"answered by rejecting the true one. Error bars: 95% {WILSON}."), path)
