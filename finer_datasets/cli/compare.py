"""``finer compare RUN_DIR RUN_DIR... --out DIR``: several scored runs in one table, with a paired test.

Each RUN_DIR is a report folder of ``finer score --out`` or ``baselines/score.py --out``: its
``report.json`` says what was scored (model, dataset and manifest digest, prompt, parser) and its
``pairs.jsonl`` how each pair came out. The comparison itself is
:func:`finer_datasets.eval.compare.compare`; this module reads the folders and writes ``--out``:

- ``compare.md`` -- the table (rows models, columns settings, paired accuracy with a 95% interval,
  Δ against the baseline) and the paired test per setting;
- ``compare.csv`` -- the same, one row per model and setting;
- ``compare.png`` -- paired accuracy per setting, one bar per run.

``--out`` follows the output guard (:mod:`finer_datasets.core.guard`): a new or empty folder, or
(with ``--overwrite``) one that an earlier ``finer compare`` wrote (its ``.finer-output.json``
lists every file) and nothing else did; never a run folder or inside one, nor inside a dataset.
The folder is written into a staging folder beside it and swapped in complete
(:func:`finer_datasets.core.staging.staged_folder`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from finer_datasets.errors import OutputError, SourceError, UsageError

__all__ = ["add_arguments", "run", "read_run_folder", "COMPARE_FILES", "TOOL"]

COMPARE_FILES = ("compare.md", "compare.csv", "compare.png")
TOOL = "finer compare"  # the command the output guard's marker (.finer-output.json) names


def add_arguments(p: argparse.ArgumentParser) -> None:
    from finer_datasets.cli import positive_int
    from finer_datasets.eval.answers import PARSER_MODES
    from finer_datasets.eval.intervals import PAIRED_TESTS as TESTS

    p.add_argument("runs", metavar="RUN_DIR", nargs="+",
                   help="report folders written by finer score --out or baselines/score.py --out (at least two)")
    p.add_argument("--out", type=Path, required=True, help="output folder (compare.md, compare.csv, compare.png)")
    p.add_argument("--baseline", metavar="RUN_DIR", default=None,
                   help="the run the others are compared with (Δ and the paired test); default: the first RUN_DIR")
    p.add_argument("--parser", choices=PARSER_MODES, default=None,
                   help="answer parser of the comparison (default: the one the runs' reports used)")
    p.add_argument("--test", choices=TESTS, default="mcnemar",
                   help="paired test per setting: McNemar on pair outcomes (exact binomial when fewer than 25 pairs "
                        "differ, else chi-square with continuity correction) or a paired bootstrap")
    p.add_argument("--bootstrap", type=positive_int, default=1000, help="resamples of --test bootstrap")
    p.add_argument("--seed", type=int, default=0, help="seed of --test bootstrap")
    p.add_argument("--allow-different-datasets", action="store_true",
                   help="compare runs scored on different datasets (name, version or manifest digest) on the pairs "
                        "they share, instead of refusing")
    p.add_argument("--allow-different-prompts", action="store_true",
                   help="compare runs asked with different prompt templates or token budgets instead of refusing")
    p.add_argument("--title", default=None, help="title of compare.md (default: FINER comparison: DATASET)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier finer compare in --out (never anything else)")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"unreadable ({exc})", path=path) from None


def _read_pairs(path: Path) -> dict[str, dict[str, Any]]:
    from finer_datasets.eval.answers import PARSER_MODES

    pairs: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"unreadable ({exc})", path=path) from None
    for number, line in enumerate(lines, start=1):
        where = {"path": path, "record": f"line {number}"}
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"not JSON ({exc.msg})", **where) from None
        if not isinstance(row, dict):
            raise SourceError("not a JSON object", **where)
        for name, kind, what in (("pair_id", str, "a string"), ("setting", str, "a string"),
                                 *((mode, bool, "true or false") for mode in PARSER_MODES)):
            if not isinstance(row.get(name), kind):
                raise SourceError(f"must be {what}", field=name, **where)
        if row["pair_id"] in pairs:
            raise SourceError("pair id repeated", field="pair_id", **where)
        pairs[row["pair_id"]] = row
    return pairs


def read_run_folder(folder: Path) -> Any:
    """The :class:`~finer_datasets.eval.compare.Run` of a report folder; a folder without
    ``report.json`` or ``pairs.jsonl``, or whose two files disagree, is one error line."""
    from collections import Counter

    from finer_datasets.eval.compare import Run
    from finer_datasets.eval.report import PAIRS_FILE

    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder (give report folders written by finer score --out)")
    report_path, pairs_path = folder / "report.json", folder / PAIRS_FILE
    if not report_path.is_file():
        raise UsageError(f"{folder}: no report.json, so no scored run (give folders written by finer score --out "
                         "or baselines/score.py --out)")
    report = _load_json(report_path)
    if not isinstance(report, dict):
        raise SourceError("not a JSON object", path=report_path)
    if not pairs_path.is_file():
        raise UsageError(f"{folder}: no {PAIRS_FILE} (scored before per-pair outcomes were kept): score it again, "
                         f"e.g. finer score DATASET --predictions PREDICTIONS --out {folder}")
    pairs = _read_pairs(pairs_path)
    expected = (report.get("counts") or {}).get("pairs_by_setting")
    found = dict(Counter(row["setting"] for row in pairs.values()))
    if isinstance(expected, dict) and found != expected:
        raise SourceError(f"{len(pairs)} pairs per setting {found} do not match report.json's {expected}; score the "
                          "run again", path=pairs_path)
    return Run(label=folder.name, path=str(folder), model=report.get("model"), dataset=report.get("dataset"),
               prompt=report.get("prompt"), parser=report.get("parser"), pairs=pairs)


def _labelled(runs: list[Any]) -> list[Any]:
    """Each run's row: its model's name, or its folder's; a name two runs share gets the folder."""
    from dataclasses import replace

    from finer_datasets.eval.plots import model_label

    names = [model_label(r.model) if r.model else Path(r.path).name for r in runs]
    return [replace(r, label=f"{name} ({r.path})" if names.count(name) > 1 else name) for name, r in zip(names, runs)]


def _check_out(out: Path, runs: list[Path], overwrite: bool) -> Path:
    """``--out`` resolved, after the output guard's rules (never a run folder or inside one, nor in
    a dataset, nor a link) and ours: new, empty, or (with ``--overwrite``) an earlier comparison."""
    from finer_datasets.core.guard import check_target, owned_folder

    resolved = check_target(out, protected=runs, what=TOOL)
    if resolved.exists() and not resolved.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder; give a folder for the comparison")
    if resolved.is_dir() and any(resolved.iterdir()):
        ours, why = owned_folder(resolved, TOOL, "comparison")
        if not ours:
            raise OutputError(f"--out {out}: {why}; choose another folder")
        if not overwrite:
            raise OutputError(f"--out {out} holds an earlier comparison; pass --overwrite to replace it")
    return resolved


def run(args: argparse.Namespace) -> int:
    from finer_datasets.core.guard import write_marker
    from finer_datasets.core.staging import staged_folder
    from finer_datasets.eval.compare import check_comparable, compare, compare_csv, compare_figure, compare_markdown
    from finer_datasets.eval.plots import _save

    folders = [Path(r) for r in args.runs]
    if len(folders) < 2:
        raise UsageError("compare needs at least two RUN_DIR")
    keys = [f.resolve() for f in folders]
    if len(set(keys)) < len(keys):
        raise UsageError("a RUN_DIR is given twice")
    baseline = 0
    if args.baseline is not None:
        if Path(args.baseline).resolve() not in keys:
            raise UsageError(f"--baseline {args.baseline} is not one of the RUN_DIR given")
        baseline = keys.index(Path(args.baseline).resolve())

    def check() -> Path:
        return _check_out(args.out, folders, args.overwrite)

    out = check()
    runs = _labelled([read_run_folder(folder) for folder in folders])
    notes = check_comparable(runs, baseline=baseline, allow_different_datasets=args.allow_different_datasets,
                             allow_different_prompts=args.allow_different_prompts)
    parser = args.parser
    if parser is None:
        used = sorted({r.parser or "strict" for r in runs})
        if len(used) > 1:
            raise UsageError(f"the runs' reports use different parsers ({', '.join(used)}): choose one with --parser "
                             "(pairs.jsonl holds both)")
        parser = used[0]
    result = compare(runs, baseline=baseline, parser=parser, test=args.test, resamples=args.bootstrap, seed=args.seed)
    result["notes"] = notes + result["notes"]
    figure, table, text = compare_figure(result), compare_csv(result), compare_markdown(result, title=args.title)
    with staged_folder(out, check) as staging:  # the folder appears complete or not at all
        _save(figure, staging / "compare.png")
        (staging / "compare.csv").write_text(table, encoding="utf-8", newline="\n")
        (staging / "compare.md").write_text(text, encoding="utf-8", newline="\n")
        write_marker(staging, TOOL)
    for t in result["tests"]:
        print(f"{t['run']} vs {result['baseline']}, {t['setting']}: Δ {t['delta']:+.1f} points over {t['n_pairs']} "
              f"pairs, p = {t['p_value']:.4g} ({t['method']})")
    print(f"wrote {', '.join(str(args.out / name) for name in COMPARE_FILES)}")
    return 0
