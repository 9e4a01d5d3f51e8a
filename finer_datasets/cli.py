"""The ``finer`` command line.

    finer build compre_cap --source DIR --out DIR [--seed N] [--negatives FILE] [--strict] [--overwrite]
    finer build compre_cap --sample --out DIR
    finer verify DIR
    finer release DIR --to REPO_DIR
    finer publish DIR --repo ORG/NAME [--private] [--dry-run]
    finer score --dataset DIR_OR_HUB_ID [--revision R] --predictions FILE --out REPORT_DIR [--parser strict|official]
    finer export DIR --format vlmevalkit|official-csv --out FILE [--setting S]

Exit status: 0 on success, 2 for bad input (the message names file, record and field),
3 when ``verify`` finds a difference, 4 when a release or publication is refused (existing
tag, remote mismatch), 1 for other errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ._errors import FinerError
from ._version import __version__

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="finer", description="Build, verify and load the FINER datasets.")
    p.add_argument("--version", action="version", version=f"finer-datasets {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a dataset folder (= a Hub dataset repo)")
    b.add_argument("dataset", help="dataset name, e.g. compre_cap")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", type=Path, help="source folder in the dataset's original layout")
    src.add_argument("--sample", action="store_true", help="use the small sample bundled with the package")
    b.add_argument("--out", type=Path, required=True, help="output folder (must not exist unless --overwrite)")
    b.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    b.add_argument("--negatives", type=Path, help="precomputed negatives file (finer-negatives/1 JSON); default: offline lexical generator")
    b.add_argument("--strict", action="store_true", help="fail on content that would be skipped")
    b.add_argument("--overwrite", action="store_true", help="replace an existing output folder (atomically)")
    b.add_argument("--shard-samples", type=int, default=None, help="max samples per shard (default 10000)")
    b.add_argument("--shard-bytes", type=int, default=None, help="max bytes per shard (default 512 MiB)")
    b.add_argument("--repo-id", default=None, help="Hub repo id shown in the card's examples (default finer/<dataset>)")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g = b.add_argument_group("LLM and MLLM stages (default: none; the offline lexical generator makes the negatives)")
    g.add_argument("--llm-base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang, Ollama, ...)")
    g.add_argument("--llm-model", help="model name sent to the endpoint")
    g.add_argument("--llm-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (never logged)")
    g.add_argument("--llm-stages", default="negatives,rewrite,wh", help="comma list of: negatives, rewrite, wh")
    g.add_argument("--llm-concurrency", type=int, default=8, help="concurrent requests (default 8)")
    g.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per request (default 60)")
    g.add_argument("--llm-max-retries", type=int, default=6, help="retries on 429/5xx/connection errors (default 6)")
    g.add_argument("--mllm-base-url", help="OpenAI-compatible vision endpoint returning logprobs (entropy filter)")
    g.add_argument("--mllm-model", help="discriminator model name (with --mllm-base-url) ...")
    g.add_argument("--mllm-local", help="... or a Hugging Face model id/folder run locally with the letters engine")
    g.add_argument("--mllm-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the MLLM API key")
    g.add_argument("--mllm-rounds", type=int, default=3, help="max regeneration rounds per element (default 3)")
    g.add_argument("--theta-obj", type=float, default=None, help="entropy threshold for objects (default: the paper's)")
    g.add_argument("--theta-attr", type=float, default=None, help="entropy threshold for attributes")
    g.add_argument("--theta-rel", type=float, default=None, help="entropy threshold for relations")
    g.add_argument("--transcript", type=Path, help="SQLite transcript to record into/answer from (default: OUT.transcript.sqlite)")
    g.add_argument("--replay", type=Path, help="answer every model request from this transcript (.sqlite or .jsonl; "
                   "'sample' = the sample's bundled one); no model access")

    v = sub.add_parser("verify", help="re-hash a built folder against its manifest")
    v.add_argument("dir", type=Path)

    r = sub.add_parser("release", help="commit a built folder into a local git repo and tag it v<VERSION>")
    r.add_argument("dir", type=Path, help="built dataset folder")
    r.add_argument("--to", type=Path, required=True, help="git repository (created if missing), branch main")

    u = sub.add_parser("publish", help="upload a built folder to the Hub and tag it v<VERSION>")
    u.add_argument("dir", type=Path, help="built dataset folder")
    u.add_argument("--repo", required=True, help="dataset repo id, e.g. finer/compre_cap")
    u.add_argument("--private", action="store_true", help="create the repo as private")
    u.add_argument("--dry-run", action="store_true", help="print the plan (files, sizes, tag) and touch nothing")

    s = sub.add_parser("score", help="score a predictions file (paired accuracy and more)")
    s.add_argument("--dataset", required=True, help="built folder or Hub id, e.g. finer/compre_cap")
    s.add_argument("--revision", default=None, help="Hub revision, e.g. v1.0.0")
    s.add_argument("--predictions", type=Path, required=True, help='JSONL: {"question_id": ..., "response": ...} per line')
    s.add_argument("--out", type=Path, required=True, help="report folder (report.json, report.md, plots)")
    s.add_argument("--parser", choices=("strict", "official"), default="strict",
                   help="answer parser: strict (never guesses) or official (FINER's released first-letter parser)")
    s.add_argument("--setting", action="append", default=None, help="score only this setting (repeatable)")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CI (0: none)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed")

    x = sub.add_parser("export", help="export questions for other evaluation tools")
    x.add_argument("dir", help="built folder or Hub id")
    x.add_argument("--format", required=True, choices=("vlmevalkit", "official-csv"))
    x.add_argument("--out", type=Path, required=True, help="output file (.tsv or .csv)")
    x.add_argument("--setting", action="append", default=None, help="export only this setting (repeatable)")
    x.add_argument("--revision", default=None, help="Hub revision")
    return p


def _load_pairs(dataset: str, revision: str | None, settings: list[str] | None):
    import datasets

    from .pairs import SETTINGS

    datasets.disable_progress_bars()
    names = settings or list(SETTINGS)
    return {name: datasets.load_dataset(dataset, split=name, revision=revision) for name in names}


def _score(args: argparse.Namespace) -> int:
    from .report import write_report
    from .scoring import load_predictions, score

    splits = _load_pairs(args.dataset, args.revision, args.setting)
    records = [record for split in splits.values() for record in split["json"]]
    result = score(records, load_predictions(args.predictions), parser=args.parser, bootstrap=args.bootstrap, seed=args.seed)
    written = write_report(result, args.out, title=f"FINER evaluation: {args.dataset}")
    for name, block in result["settings"].items():
        print(f"{name:>10}: paired accuracy {block['paired_accuracy']:.1f}% over {block['n_pairs']} pairs")
    print(f"report: {', '.join(str(p) for p in written)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_official_csv, export_vlmevalkit

    splits = _load_pairs(args.dir, args.revision, args.setting)
    rows = (row for split in splits.values() for row in split)
    writer = export_vlmevalkit if args.format == "vlmevalkit" else export_official_csv
    n = writer(rows, args.out)
    print(f"wrote {n} questions to {args.out}")
    return 0


def _canonical_command(args: argparse.Namespace, llm: object = None) -> list[str]:
    """The build command as recorded in the card: no local paths or URLs, so builds stay
    reproducible (a replayed build records the same command as the recorded one)."""
    cmd = ["finer", "build", args.dataset]
    cmd += ["--sample"] if args.sample else ["--source", args.source.resolve().name or "SOURCE"]
    cmd += ["--out", "OUT", "--seed", str(args.seed)]
    if args.negatives:
        cmd += ["--negatives", args.negatives.name]
    if args.strict:
        cmd.append("--strict")
    if llm is not None:
        config = llm.config
        cmd += ["--llm-base-url", "URL", "--llm-model", config["llm"]["model"], "--llm-stages", ",".join(config["stages"])]
        mllm = config.get("mllm")
        if mllm and mllm["kind"] == "hf-letters":
            cmd += ["--mllm-local", mllm["model"]]
        elif mllm:
            cmd += ["--mllm-base-url", "URL", "--mllm-model", mllm["model"]]
        if mllm and config.get("thresholds"):
            t = config["thresholds"]
            cmd += ["--mllm-rounds", str(config["rounds"]), "--theta-obj", str(t["object"]),
                    "--theta-attr", str(t["attribute"]), "--theta-rel", str(t["relation"])]
    return cmd


def _llm_run(args: argparse.Namespace, builder: object):
    """The LLM set-up asked for on the command line (``None`` for a purely offline build)."""
    from .llm import COMPRE_CAP_THRESHOLDS, LLMConfig, LLMRun, Thresholds, TranscriptStore

    if args.replay:
        replay = args.replay
        if str(replay) == "sample":
            if not args.sample:
                raise FinerError("--replay sample goes with --sample (it is the sample's bundled transcript)")
            replay = builder.sample_dir() / "transcript.jsonl"
        return LLMRun.replay(replay, seed=args.seed)
    if not (args.llm_base_url or args.llm_model):
        if args.mllm_base_url or args.mllm_model or args.mllm_local:
            raise FinerError("the MLLM entropy filter needs an LLM to regenerate negatives: add --llm-base-url and --llm-model")
        return None
    if not (args.llm_base_url and args.llm_model):
        raise FinerError("--llm-base-url and --llm-model go together")
    stages = tuple(s.strip() for s in args.llm_stages.split(",") if s.strip())
    unknown = set(stages) - {"negatives", "rewrite", "wh"}
    if unknown:
        raise FinerError(f"unknown --llm-stages {sorted(unknown)}: use negatives, rewrite, wh")
    llm = LLMConfig(base_url=args.llm_base_url, model=args.llm_model, api_key_env=args.llm_api_key_env,
                    concurrency=args.llm_concurrency, timeout=args.llm_timeout, max_retries=args.llm_max_retries)
    mllm = None
    if args.mllm_base_url or args.mllm_model:
        if not (args.mllm_base_url and args.mllm_model):
            raise FinerError("--mllm-base-url and --mllm-model go together")
        mllm = LLMConfig(base_url=args.mllm_base_url, model=args.mllm_model, api_key_env=args.mllm_api_key_env,
                         concurrency=args.llm_concurrency, timeout=args.llm_timeout, max_retries=args.llm_max_retries)
    defaults = getattr(builder, "entropy_thresholds", None) or vars(COMPRE_CAP_THRESHOLDS)
    thresholds = None
    if mllm is not None or args.mllm_local:
        thresholds = Thresholds(object=args.theta_obj if args.theta_obj is not None else defaults["object"],
                                attribute=args.theta_attr if args.theta_attr is not None else defaults["attribute"],
                                relation=args.theta_rel if args.theta_rel is not None else defaults["relation"])
    transcript = args.transcript or args.out.with_name(args.out.name + ".transcript.sqlite")
    return LLMRun.create(TranscriptStore(transcript), llm=llm, stages=stages, mllm=mllm, mllm_local=args.mllm_local,
                         thresholds=thresholds, rounds=args.mllm_rounds, seed=args.seed)


def _build(args: argparse.Namespace) -> int:
    from . import _pipeline as build_module
    from .builders import get_builder

    builder = get_builder(args.dataset)
    source = builder.sample_dir() if args.sample else args.source
    llm = _llm_run(args, builder)
    result = build_module.build(
        builder,
        source=source,
        out=args.out,
        seed=args.seed,
        negatives=args.negatives,
        strict=args.strict,
        overwrite=args.overwrite,
        max_samples=args.shard_samples or build_module.DEFAULT_MAX_SAMPLES,
        max_bytes=args.shard_bytes or build_module.DEFAULT_MAX_BYTES,
        command=_canonical_command(args, llm),
        repo_id=args.repo_id,
        progress=False if args.no_progress else None,
        llm=llm,
    )
    counts = result.manifest["counts"]
    pairs = ", ".join(f"{s} {n}" for s, n in counts["pairs"].items())
    skipped = sum(counts["skips"].values())
    print(f"built {result.manifest['pretty_name']} {result.manifest['version']} in {result.out}: {pairs} pairs "
          f"from {counts['images']} images; {skipped} skipped element(s), see build_report.json")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .manifest import verify

    manifest = verify(args.dir)
    print(f"OK: {len(manifest['files'])} files match the manifest of {manifest['pretty_name']} {manifest['version']}")
    return 0


def _release(args: argparse.Namespace) -> int:
    from .release import release

    done = release(args.dir, to=args.to)
    print(f"released {args.dir} as {done.tag} (commit {done.commit[:12]}) in {done.repo}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from .publish import plan_publish, publish

    plan = plan_publish(args.dir, args.repo, private=args.private)
    print(plan.describe())
    if args.dry_run:
        print("dry run: nothing was uploaded")
        return 0
    commit = publish(plan)
    print(f"published datasets/{plan.repo_id} {plan.tag} (commit {commit[:12]})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        commands = {"build": _build, "verify": _verify, "release": _release, "publish": _publish,
                    "score": _score, "export": _export}
        return commands[args.command](args)
    except FinerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # Hub/HTTP errors: a message, never a traceback with request headers
        if type(exc).__module__.split(".")[0] not in ("huggingface_hub", "httpx", "httpx2", "requests"):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
