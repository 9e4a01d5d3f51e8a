"""``finer verify | release | publish | score | export``: commands on a built dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from finer_datasets.cli import non_negative_int
from finer_datasets.errors import UsageError

__all__ = ["COMMANDS", "add_score_arguments", "add_export_arguments"]

EXPORT_FORMATS = ("vlmevalkit", "official-csv", "lmms-eval", "llamafactory", "llamafactory-sft")
PREDICTION_FORMATS = ("jsonl", "vlmevalkit")


def add_score_arguments(s: argparse.ArgumentParser) -> None:
    from finer_datasets.eval.prompts import PROMPTS
    from finer_datasets.eval.vlmevalkit import VLMEVALKIT_ANSWERS

    s.add_argument("dataset", metavar="DATASET", nargs="?", help="built dataset folder or Hub id (e.g. finer/compre_cap)")
    s.add_argument("--dataset", dest="dataset_option", metavar="DATASET", help=argparse.SUPPRESS)
    s.add_argument("--revision", default=None, help="Hub revision, e.g. v2.0.0 (Hub ids only)")
    s.add_argument("--predictions", type=Path, required=True,
                   help='the answers: JSONL {"question_id": ..., "response": ...} per line, or with --from vlmevalkit '
                        "a VLMEvalKit result file (.xlsx or .tsv)")
    s.add_argument("--from", dest="source_format", choices=PREDICTION_FORMATS, default="jsonl",
                   help="what --predictions is: our JSONL, or a VLMEvalKit prediction/result file")
    s.add_argument("--vlmevalkit-answer", choices=VLMEVALKIT_ANSWERS, default="prediction",
                   help="with --from vlmevalkit: score the raw 'prediction' column with --parser, or VLMEvalKit's own "
                        "judged answer ('hit' and 'log' of its *_result file)")
    s.add_argument("--out", type=Path, required=True, help="report folder (report.json, report.md, plots, run.json)")
    s.add_argument("--name", default=None, help="model name shown in the report title")
    s.add_argument("--prompt", choices=tuple(PROMPTS), default=None,
                   help="prompt template the answers were made with (default: read from the run.json beside "
                        "--predictions; with --from vlmevalkit, VLMEvalKit's own MCQ prompt)")
    s.add_argument("--parser", choices=("strict", "official"), default="strict",
                   help="answer parser: strict (never guesses) or official (FINER's released first-letter parser)")
    s.add_argument("--setting", action="append", default=None,
                   help="score only this setting (repeatable; official names such as multi_object work too)")
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


def _verify(args: argparse.Namespace) -> int:
    from finer_datasets.core.manifest import verify

    manifest = verify(args.dataset)
    protected = "digest checked" if "digest" in manifest else "format 1: the manifest itself carries no digest"
    print(f"OK: {len(manifest['files'])} files match the manifest of {manifest['pretty_name']} "
          f"{manifest['version']} ({protected})")
    return 0


def _release(args: argparse.Namespace) -> int:
    from finer_datasets.hub.release import release

    done = release(args.dataset, to=args.to)
    print(f"released {args.dataset} as {done.tag} (commit {done.commit[:12]}) in {done.repo}")
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


def _out_file(path: Path, option: str = "--out") -> None:
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")


def _out_folder(path: Path, option: str = "--out") -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is an existing file; give a folder for the report")


_MODEL_ENGINES = ("generate", "letters", "openai")


def _answers(args: argparse.Namespace) -> tuple[dict[str, str], dict | None]:
    """The answers to score and the run.json of the run that made them (if it sits beside them)."""
    from finer_datasets.eval.runinfo import read_run
    from finer_datasets.eval.scoring import load_predictions
    from finer_datasets.eval.vlmevalkit import read_vlmevalkit

    if args.source_format == "vlmevalkit":
        return read_vlmevalkit(args.predictions, answer=args.vlmevalkit_answer), None
    source = read_run(args.predictions.parent) if args.predictions.parent.is_dir() else None
    return load_predictions(args.predictions), source


def _prompt_of(args: argparse.Namespace, source: dict | None) -> dict | str | None:
    from finer_datasets.eval.prompts import get_prompt

    if args.prompt:
        return get_prompt(args.prompt).describe()
    if args.source_format == "vlmevalkit":
        return {"name": "vlmevalkit", "description": "VLMEvalKit's MCQ prompt of the model (not FINER's)"}
    if source and source.get("prompt"):
        return {"name": source["prompt"], "max_new_tokens": source.get("max_new_tokens")}
    return None


def _score(args: argparse.Namespace) -> int:
    from finer_datasets.constants import canonical_settings
    from finer_datasets.core.reader import iter_records
    from finer_datasets.eval.report import write_report
    from finer_datasets.eval.runinfo import RUN_FILE, read_run, run_record, write_run
    from finer_datasets.eval.scoring import pair_records, score
    from finer_datasets.hub.resolve import resolve_dataset

    name = args.dataset or args.dataset_option
    if not name:
        raise UsageError("score needs the DATASET (a built folder or a Hub id)")
    settings = canonical_settings(args.setting) if args.setting else None
    _out_folder(args.out)
    dataset = resolve_dataset(name, revision=args.revision, allow_unverified=args.allow_unverified)
    records = pair_records(iter_records(dataset.folder, dataset.manifest), settings)
    predictions, source = _answers(args)
    result = score(records, predictions, parser=args.parser, bootstrap=args.bootstrap, seed=args.seed)
    model = args.name or (source or {}).get("model")
    engine = "vlmevalkit" if args.source_format == "vlmevalkit" else (source or {}).get("engine")
    prompt = _prompt_of(args, source)
    result.update(dataset=dataset.provenance(), model=model, engine=engine, prompt=prompt)
    record = run_record(engine=engine or "predictions-file", model=model,
                        prompt=prompt.get("name") if isinstance(prompt, dict) else prompt, parser=args.parser,
                        dataset=dataset.provenance(), seed=args.seed, predictions=str(args.predictions),
                        predictions_from=args.source_format, answers_run=source)
    existing = read_run(args.out) if args.out.is_dir() else None
    if not (existing and existing.get("engine") in _MODEL_ENGINES):  # never overwrite the record of a model run
        write_run(args.out, record)
    title = f"FINER evaluation: {model + ' on ' if model else ''}{name}"
    written = write_report(result, args.out, title=title)
    for setting, block in result["settings"].items():
        print(f"{setting:>10}: paired accuracy {block['paired_accuracy']:.1f}% over {block['n_pairs']} pairs")
    print(f"report: {', '.join(str(p) for p in written)}; {RUN_FILE} in {args.out}")
    return 0


def _export_llamafactory(args: argparse.Namespace) -> int:
    """FINER-Tuning as a LLaMA-Factory dataset: sharegpt ranking (DPO) or, ``-sft``, chosen answers only."""
    from finer_datasets.hub.resolve import resolve_dataset
    from finer_datasets.preference.llamafactory import export_llamafactory

    dataset = resolve_dataset(args.dataset, revision=args.revision)
    kind = "sft" if args.format.endswith("-sft") else "ranking"
    counts = export_llamafactory(dataset.folder, args.out, kind=kind)
    print(f"wrote {', '.join(f'{split} {n}' for split, n in counts.items())} {kind} rows to {args.out} "
          "(dataset_info.json, JSONL, images/)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from finer_datasets.constants import canonical_settings
    from finer_datasets.core.reader import iter_samples
    from finer_datasets.eval.export import export_official_csv, export_vlmevalkit
    from finer_datasets.hub.resolve import resolve_dataset

    if args.format.startswith("llamafactory"):
        return _export_llamafactory(args)
    settings = canonical_settings(args.setting) if args.setting else None
    if args.format == "lmms-eval":
        return _export_lmms(args, settings)
    _out_file(args.out)
    dataset = resolve_dataset(args.dataset, revision=args.revision)
    writer = export_vlmevalkit if args.format == "vlmevalkit" else export_official_csv
    rows = iter_samples(dataset.folder, dataset.manifest, images=args.format == "vlmevalkit")
    n = writer(rows, args.out, settings=settings)
    print(f"wrote {n} questions to {args.out}")
    return 0


def _export_lmms(args: argparse.Namespace, settings: tuple[str, ...] | None) -> int:
    from finer_datasets.eval.lmms import write_tasks
    from finer_datasets.hub.resolve import resolve_dataset

    if settings is not None:
        raise UsageError("--setting does not apply to --format lmms-eval: each setting is its own task")
    _out_folder(args.out)
    dataset = resolve_dataset(args.dataset, revision=args.revision)
    local = Path(args.dataset).expanduser().exists()
    path = str(dataset.folder.resolve()) if local else args.dataset
    group = f"finer_{dataset.manifest.get('dataset') or 'compre_cap'}"
    written = write_tasks(args.out, dataset=path, revision=None if local else args.revision, group=group,
                          prompt=args.prompt)
    print(f"wrote {len(written)} lmms-eval task files to {args.out}: run with --include_path {args.out} "
          f"--tasks {group}")
    return 0


COMMANDS = {"verify": _verify, "release": _release, "publish": _publish, "score": _score, "export": _export}
