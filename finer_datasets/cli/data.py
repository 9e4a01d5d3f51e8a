"""``finer verify | release | diff | publish | score | export``: commands on a built dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from finer_datasets.cli import non_negative_int
from finer_datasets.errors import UsageError

if TYPE_CHECKING:
    from finer_datasets.eval.sources import Answers
    from finer_datasets.hub.resolve import ResolvedDataset

__all__ = ["COMMANDS", "add_score_arguments", "add_export_arguments"]

EXPORT_FORMATS = ("vlmevalkit", "official-csv", "lmms-eval", "llamafactory", "llamafactory-sft")


def add_score_arguments(s: argparse.ArgumentParser) -> None:
    from finer_datasets.cli import fraction
    from finer_datasets.eval.prompts import PROMPTS
    from finer_datasets.eval.quality import DEFAULT_MAX_UNPARSEABLE
    from finer_datasets.eval.sources import SOURCES
    from finer_datasets.eval.vlmevalkit import VLMEVALKIT_ANSWERS

    s.add_argument("dataset", metavar="DATASET", nargs="?", help="built dataset folder or Hub id (e.g. finer/compre_cap)")
    s.add_argument("--dataset", dest="dataset_option", metavar="DATASET", help=argparse.SUPPRESS)
    s.add_argument("--revision", default=None, help="Hub revision, e.g. v2.0.0 (Hub ids only)")
    s.add_argument("--predictions", type=Path, required=True,
                   help='the answers: JSONL {"question_id": ..., "response": ...} per line; with --from vlmevalkit '
                        "a VLMEvalKit result file (.xlsx or .tsv); with --from lmms-eval a <date>_samples_<task>.jsonl "
                        "or <date>_results.json of a --log_samples run, or its --output_path folder")
    s.add_argument("--from", dest="source_format", choices=SOURCES, default="jsonl",
                   help="what --predictions is: our JSONL, a VLMEvalKit prediction/result file, or an lmms-eval run")
    s.add_argument("--vlmevalkit-answer", choices=VLMEVALKIT_ANSWERS, default="prediction",
                   help="with --from vlmevalkit: score the raw 'prediction' column with --parser, or VLMEvalKit's own "
                        "judged answer ('hit' and 'log' of its *_result file)")
    s.add_argument("--out", type=Path, required=True, help="report folder (report.json, report.md, plots, pairs.jsonl, run.json)")
    s.add_argument("--name", default=None, help="model name shown in the report title")
    s.add_argument("--prompt", choices=tuple(PROMPTS), default=None,
                   help="prompt template the answers were made with (default: read from the run.json beside "
                        "--predictions, or from the lmms-eval run's results.json; with --from vlmevalkit, VLMEvalKit's "
                        "own MCQ prompt)")
    s.add_argument("--parser", choices=("strict", "official"), default="strict",
                   help="answer parser of the report's tables: strict (never guesses) or official (FINER's released "
                        "first-letter parser); the headline shows paired accuracy under both")
    s.add_argument("--setting", action="append", default=None,
                   help="score only this setting (repeatable; official names such as multi_object work too); answers "
                        "to other settings' questions are ignored (default: the settings the answers' run asked)")
    s.add_argument("--view", choices=("pairs", "positions"), default="pairs",
                   help="what the answers answer: the dataset's pairs, or 'positions': every k = 3 multi_* pair with "
                        "its negative rotated through positions 1-3 (load_finer(..., 'positions'); paper, E.1)")
    s.add_argument("--allow-missing", action="store_true",
                   help="score questions without an answer as wrong (the report shows the coverage) instead of "
                        "stopping with exit status 2")
    s.add_argument("--max-unparseable", type=fraction, default=DEFAULT_MAX_UNPARSEABLE, metavar="SHARE",
                   help="warn (one line, and a banner in report.md) when more than this share of the answers "
                        "cannot be read by --parser; none readable at all exits with status 7 after the report")
    s.add_argument("--bootstrap", type=non_negative_int, default=1000, help="bootstrap resamples for the 95%% CI (0: none)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    s.add_argument("--allow-unverified", action="store_true",
                   help="score a dataset that fails verification (loud warning; the report says so)")


def add_export_arguments(x: argparse.ArgumentParser) -> None:
    from finer_datasets.eval.prompts import DEFAULT_PROMPT, PROMPTS

    x.add_argument("dataset", metavar="DATASET", help="built dataset folder or Hub id (e.g. finer/compre_cap)")
    x.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the other tool's format")
    x.add_argument("--out", type=Path, required=True,
                   help="output file (.tsv or .csv); for lmms-eval the task folder to give --include_path; for "
                        "llamafactory(-sft) the dataset folder (dataset_info.json, JSONL, images/)")
    x.add_argument("--setting", action="append", default=None, help="export only this setting (repeatable)")
    x.add_argument("--revision", default=None, help="Hub revision (Hub ids only); lmms-eval tasks are pinned to it")
    x.add_argument("--prompt", choices=tuple(PROMPTS), default=DEFAULT_PROMPT, help="lmms-eval: the prompt template")
    x.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out written by a previous export of this format (never anything else)")


def _verify(args: argparse.Namespace) -> int:
    from finer_datasets.core.manifest import verify

    manifest = verify(args.dataset)
    protected = "digest checked" if "digest" in manifest else "format 1: the manifest itself carries no digest"
    print(f"OK: {len(manifest['files'])} files match the manifest of {manifest['pretty_name']} "
          f"{manifest['version']} ({protected})")
    return 0


def _release(args: argparse.Namespace) -> int:
    from finer_datasets.core.manifest import read_manifest
    from finer_datasets.hub.diff import diff, open_revision, render, snapshot_of
    from finer_datasets.hub.release import release
    from finer_datasets.hub.resolve import ResolvedDataset

    done = release(args.dataset, to=args.to)
    if not done.created:
        print(f"{done.tag} is already released in {done.repo} with identical content (commit {done.commit[:12]}): "
              "nothing to do")
        return 0
    folder = Path(args.dataset)  # verified by release()
    new = snapshot_of(ResolvedDataset(name=args.dataset, folder=folder, manifest=read_manifest(folder), verified=True))
    if done.previous is None:
        print(render(diff(None, new)))
    else:
        with open_revision(done.repo, done.previous) as previous:
            print(render(diff(snapshot_of(previous), new)))
    print(f"released {args.dataset} as {done.tag} (commit {done.commit[:12]}) in {done.repo}"
          + (f", after {done.previous}" if done.previous else " (its first release)"))
    return 0


def _diff(args: argparse.Namespace) -> int:
    import json

    from finer_datasets.hub.diff import diff_specs, render

    result = diff_specs(args.old, args.new)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else render(result))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from finer_datasets.hub.publish import plan_publish, publish

    plan = plan_publish(args.dataset, args.repo, private=args.private)
    print(plan.describe())
    if args.dry_run:
        print("dry run: nothing was uploaded")
        return 0
    commit = publish(plan)
    print(f"published datasets/{plan.repo_id} {plan.tag} (commit {commit[:12]})")
    return 0


_MODEL_ENGINES = ("generate", "letters", "openai")


def _prompt_of(args: argparse.Namespace, answers: Answers) -> Mapping[str, Any] | None:
    from finer_datasets.eval.prompts import get_prompt

    return get_prompt(args.prompt).describe() if args.prompt else answers.prompt


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _score(args: argparse.Namespace) -> int:
    from finer_datasets.constants import canonical_settings, require_kind
    from finer_datasets.core.reader import iter_records
    from finer_datasets.eval.quality import assess, require_usable, warn
    from finer_datasets.eval.report import check_report_out, report_title, write_report
    from finer_datasets.eval.runinfo import RUN_FILE, read_run, run_record, write_run
    from finer_datasets.eval.scoring import pair_records, score
    from finer_datasets.eval.sources import read_answers, scored_pairs
    from finer_datasets.hub.resolve import resolve_dataset
    from finer_datasets.mcq.positions import position_pair_records

    name = args.dataset or args.dataset_option
    if not name:
        raise UsageError("score needs the DATASET (a built folder or a Hub id)")
    settings = canonical_settings(args.setting) if args.setting else None
    check_report_out(args.out)  # never into a dataset, over a user's own report.md or through a link
    dataset = resolve_dataset(name, revision=args.revision, allow_unverified=args.allow_unverified)
    require_kind(next(iter_records(dataset.folder, dataset.manifest), None), "benchmark", subject=name,
                 action="finer score")
    answers = read_answers(args.predictions, args.source_format, vlmevalkit_answer=args.vlmevalkit_answer)
    records = iter_records(dataset.folder, dataset.manifest)
    pairs, others, notes = scored_pairs(pair_records(records) if args.view == "pairs" else position_pair_records(records),
                                        answers, settings)
    result = score(pairs, answers.predictions, parser=args.parser, bootstrap=args.bootstrap, seed=args.seed,
                   allow_missing=args.allow_missing, other_ids=others, keep_pairs=True)
    model = args.name or answers.model
    prompt = _prompt_of(args, answers)
    result.update(dataset={**dataset.provenance(), "pretty_name": dataset.manifest.get("pretty_name")}, model=model,
                  engine=answers.engine, prompt=prompt, selection_notes=notes,
                  **({"view": args.view} if args.view != "pairs" else {}))
    result["quality"] = assess(result, args.max_unparseable)
    record = run_record(engine=answers.engine or "predictions-file", model=model,
                        prompt=prompt.get("name") if prompt else None, parser=args.parser,
                        dataset=dataset.provenance(), seed=args.seed, predictions=str(args.predictions),
                        predictions_from=args.source_format, answers_run=answers.run)
    existing = read_run(args.out) if args.out.is_dir() else None
    if not (existing and existing.get("engine") in _MODEL_ENGINES):  # never overwrite the record of a model run
        write_run(args.out, record)
    written = write_report(result, args.out, title=report_title(result))
    for note in notes:
        print(f"scored: {note}")
    for setting, block in result["settings"].items():
        print(f"{setting:>10}: paired accuracy {_percent(block['paired_accuracy'])} over {block['n_pairs']} pairs")
    print(f"report: {', '.join(str(p) for p in written)}; {RUN_FILE} in {args.out}")
    warn(result["quality"])
    require_usable(result["quality"], args.out)
    return 0


def _resolve_for_export(args: argparse.Namespace, kind: str) -> ResolvedDataset:
    """The verified dataset, checked to be of ``kind`` and to leave ``--out`` safe, before anything is written."""
    from finer_datasets.constants import require_kind
    from finer_datasets.core.reader import iter_records
    from finer_datasets.eval.export import check_export_out
    from finer_datasets.hub.resolve import resolve_dataset

    dataset = resolve_dataset(args.dataset, revision=args.revision)
    first = next(iter_records(dataset.folder, dataset.manifest), None)
    require_kind(first, kind, subject=args.dataset, action=f"--format {args.format}")
    check_export_out(args.out, dataset=dataset.folder, fmt=args.format, overwrite=args.overwrite)
    return dataset


def _export_llamafactory(args: argparse.Namespace) -> int:
    """FINER-Tuning as a LLaMA-Factory dataset: sharegpt ranking (DPO) or, ``-sft``, chosen answers only."""
    from finer_datasets.preference.llamafactory import export_llamafactory

    if args.setting:
        raise UsageError("--setting does not apply to --format llamafactory: FINER-Tuning has subsets, not settings")
    dataset = _resolve_for_export(args, "preference")
    kind = "sft" if args.format.endswith("-sft") else "ranking"
    counts = export_llamafactory(dataset.folder, args.out, kind=kind, overwrite=args.overwrite)
    print(f"wrote {', '.join(f'{split} {n}' for split, n in counts.items())} {kind} rows to {args.out} "
          "(dataset_info.json, JSONL, images/)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from finer_datasets.constants import canonical_settings
    from finer_datasets.core.reader import iter_samples
    from finer_datasets.eval.export import export_official_csv, export_vlmevalkit

    if args.format.startswith("llamafactory"):
        return _export_llamafactory(args)
    settings = canonical_settings(args.setting) if args.setting else None
    if args.format == "lmms-eval":
        return _export_lmms(args, settings)
    dataset = _resolve_for_export(args, "benchmark")
    writer = export_vlmevalkit if args.format == "vlmevalkit" else export_official_csv
    rows = iter_samples(dataset.folder, dataset.manifest, images=args.format == "vlmevalkit")
    n = writer(rows, args.out, settings=settings)
    print(f"wrote {n} questions to {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


def _export_lmms(args: argparse.Namespace, settings: tuple[str, ...] | None) -> int:
    from finer_datasets.core.guard import export_marker, write_marker
    from finer_datasets.core.staging import staged_folder
    from finer_datasets.eval.export import check_export_out
    from finer_datasets.eval.lmms import write_tasks

    if settings is not None:
        raise UsageError("--setting does not apply to --format lmms-eval: each setting is its own task")
    dataset = _resolve_for_export(args, "benchmark")
    local = Path(args.dataset).expanduser().exists()
    path = str(dataset.folder.resolve()) if local else args.dataset
    group = f"finer_{dataset.manifest.get('dataset') or 'compre_cap'}"

    def check() -> Path:
        return check_export_out(args.out, dataset=dataset.folder, fmt=args.format, overwrite=args.overwrite)

    with staged_folder(check(), check) as staging:  # the task folder appears complete or not at all
        written = write_tasks(staging, dataset=path, revision=None if local else args.revision, group=group,
                              prompt=args.prompt)
        write_marker(staging, export_marker(args.format))
    print(f"wrote {len(written)} lmms-eval task files to {args.out}: run with --include_path {args.out} "
          f"--tasks {group}")
    return 0


COMMANDS = {"verify": _verify, "release": _release, "diff": _diff, "publish": _publish, "score": _score,
            "export": _export}
