"""``finer build``: the generic options, the builder's own options, and the model set-up."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from finer_datasets.cli import fraction, positive_float, positive_int
from finer_datasets.core.builder import DEFAULT_MAX_SKIP_RATE
from finer_datasets.errors import OutputError, UsageError

__all__ = ["add_arguments", "run", "canonical_command", "llm_run", "add_merge_arguments", "run_merge", "source_of"]


def add_arguments(b: argparse.ArgumentParser, builder: Any) -> None:
    from finer_datasets.core.build import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES

    b.add_argument("dataset", help="dataset name (finer list shows them), e.g. compre_cap")
    src = b.add_mutually_exclusive_group()  # one of them, unless the builder's options name the source
    src.add_argument("--source", type=Path, help="source folder in the dataset's original layout (read, never written)")
    src.add_argument("--sample", action="store_true", help="use the small sample bundled with the package")
    b.add_argument("--out", type=Path, required=True,
                   help="output folder; it must not exist (or be empty) unless --overwrite, and never be, contain "
                        "or sit inside the source")
    b.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    b.add_argument("--strict", action="store_true", help="fail on the first content problem instead of skipping it")
    b.add_argument("--max-skip-rate", type=fraction, default=DEFAULT_MAX_SKIP_RATE,
                   help="fail when more than this share of elements is skipped for defects (not by policy)")
    b.add_argument("--overwrite", action="store_true",
                   help="replace an existing output folder written by a previous build (atomically, on success)")
    b.add_argument("--shard-samples", type=positive_int, default=DEFAULT_MAX_SAMPLES, help="max samples per shard")
    b.add_argument("--shard-bytes", type=positive_int, default=DEFAULT_MAX_BYTES, help="max bytes per shard")
    b.add_argument("--repo-id", default=None, help="Hub repo id shown in the card's examples (default finer/<dataset>)")
    b.add_argument("--version-label", default=None, metavar="LABEL",
                   help="version your own rebuild as VERSION+LABEL (a PEP 440 local version, e.g. lab.1 gives "
                        "2.0.0+lab.1): released and tagged under that version, never taken for the official one")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    if builder is not None:
        builder.add_arguments(b.add_argument_group(f"{builder.pretty_name} options"))
    stages = ", ".join(builder.llm_stages) if builder is not None else "the builder's stages"
    needs = builder is not None and builder.requires_llm
    g = b.add_argument_group("LLM and MLLM stages" + (" (this dataset needs a model: --llm-* or --replay)" if needs
                                                      else " (default: none, the build needs no model)"))
    g.add_argument("--llm-base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang, ...)")
    g.add_argument("--llm-model", help="model name sent to the endpoint")
    g.add_argument("--llm-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (never logged)")
    g.add_argument("--llm-stages", default=None, help=f"comma list of stages to run (default: all: {stages})")
    g.add_argument("--llm-concurrency", type=positive_int, default=8, help="concurrent LLM requests")
    g.add_argument("--llm-timeout", type=positive_float, default=60.0,
                   help="seconds one request may take in all (connect to the answer's last byte)")
    g.add_argument("--llm-max-retries", type=int, default=6, help="retries per request on 429/5xx/connection errors")
    g.add_argument("--llm-breaker-seconds", type=positive_float, default=120.0,
                   help="abort when no request has succeeded for this long, in wall time (the circuit breaker)")
    g.add_argument("--mllm-base-url", help="OpenAI-compatible vision endpoint returning logprobs (entropy filter)")
    g.add_argument("--mllm-model", help="discriminator model name (with --mllm-base-url) ...")
    g.add_argument("--mllm-local", help="... or a Hugging Face model id/folder run locally with the letters engine")
    g.add_argument("--mllm-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the MLLM API key")
    g.add_argument("--mllm-concurrency", type=positive_int, default=None,
                   help="concurrent discriminator requests (default: --llm-concurrency)")
    g.add_argument("--mllm-rounds", type=int, default=3, help="max regeneration rounds per element")
    g.add_argument("--theta-obj", type=float, default=None, help="entropy threshold for objects (default: the paper's)")
    g.add_argument("--theta-attr", type=float, default=None, help="entropy threshold for attributes")
    g.add_argument("--theta-rel", type=float, default=None, help="entropy threshold for relations")
    g.add_argument("--transcript", type=Path, help="SQLite transcript to record into (default: OUT.transcript.sqlite)")
    g.add_argument("--replay", type=Path, help="answer every model request from this transcript (.sqlite or .jsonl; "
                   "'sample' = the sample's bundled one, the default of --sample for a dataset that needs a model); "
                   "no model access")
    from finer_datasets.cli.scaled import add_executor_arguments

    add_executor_arguments(b)


def canonical_command(args: argparse.Namespace, builder: Any, llm: Any = None) -> list[str]:
    """The build command as recorded in the card: what makes the release (dataset, source, seed,
    version label, the builder's recorded options, --strict, the model set-up), without local
    paths or URLs, so builds stay reproducible (a replayed build records the same command as the
    recorded one). Options that only say how to execute are left out: concurrency, timeouts,
    shard sizes, --part, the executor, its tasks, workers and logging folder; so a merge of parts
    (``finer merge``, ``--executor``) records exactly what a one-machine build records."""
    cmd = ["finer", "build", args.dataset]
    if args.sample or args.source is not None:
        cmd += ["--sample"] if args.sample else ["--source", args.source.resolve().name or "SOURCE"]
    cmd += ["--out", "OUT", "--seed", str(args.seed)]
    if getattr(args, "version_label", None):
        cmd += ["--version-label", args.version_label]
    for name, value in builder.recorded_options(builder.options_from(args)).items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
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


def _local_discriminator(name: str) -> tuple[str, Any]:
    from finer_datasets.eval.engines import VisionLanguageModel, letters_scorer

    return name, letters_scorer(VisionLanguageModel.from_pretrained(name))


def llm_run(args: argparse.Namespace, builder: Any) -> Any:
    """The model set-up asked for on the command line (``None`` for a build without models)."""
    from finer_datasets.llm import (
        LLMConfig,
        LLMRun,
        PromptSet,
        Thresholds,
        TranscriptStore,
    )

    prompts = PromptSet.for_builder(builder.prompts_dir())
    if args.sample and builder.requires_llm and not (args.replay or args.llm_base_url or args.llm_model):
        args.replay = Path("sample")  # a sample that needs a model replays its bundled transcript
    if args.replay:
        replay = args.replay
        if str(replay) == "sample":
            if not args.sample:
                raise UsageError("--replay sample goes with --sample (it is the sample's bundled transcript)")
            replay = builder.sample_dir() / "transcript.jsonl"
        return LLMRun.replay(replay, stages=builder.llm_stages, prompts=prompts, seed=args.seed)
    if not (args.llm_base_url or args.llm_model):
        if args.mllm_base_url or args.mllm_model or args.mllm_local:
            raise UsageError("the MLLM entropy filter needs an LLM to regenerate negatives: add --llm-base-url and --llm-model")
        return None
    if not (args.llm_base_url and args.llm_model):
        raise UsageError("--llm-base-url and --llm-model go together")
    if not builder.llm_stages:
        raise UsageError(f"{builder.name} has no model stages")
    names = [s.strip() for s in (args.llm_stages or ",".join(builder.llm_stages)).split(",") if s.strip()]
    unknown = sorted(set(names) - set(builder.llm_stages))
    if unknown:
        raise UsageError(f"--llm-stages {unknown} unknown for {builder.name}: use {', '.join(builder.llm_stages)}")
    common = dict(timeout=args.llm_timeout, max_retries=args.llm_max_retries, breaker_seconds=args.llm_breaker_seconds)
    llm = LLMConfig(base_url=args.llm_base_url, model=args.llm_model, api_key_env=args.llm_api_key_env,
                    concurrency=args.llm_concurrency, **common)
    mllm = None
    if args.mllm_base_url or args.mllm_model:
        if not (args.mllm_base_url and args.mllm_model):
            raise UsageError("--mllm-base-url and --mllm-model go together")
        mllm = LLMConfig(base_url=args.mllm_base_url, model=args.mllm_model, api_key_env=args.mllm_api_key_env,
                         concurrency=args.mllm_concurrency or args.llm_concurrency, **common)
    thresholds = None
    if mllm is not None or args.mllm_local:
        defaults = builder.entropy_thresholds or {}
        chosen = {"object": args.theta_obj, "attribute": args.theta_attr, "relation": args.theta_rel}
        missing = [k for k, v in chosen.items() if v is None and k not in defaults]
        if missing:
            raise UsageError(f"{builder.name} has no default entropy threshold for {missing}: pass --theta-*")
        thresholds = Thresholds(**{k: v if v is not None else defaults[k] for k, v in chosen.items()})
    return LLMRun.create(TranscriptStore(_transcript_path(args)), llm=llm, stages={n: builder.llm_stages[n] for n in names},
                         prompts=prompts, mllm=mllm, thresholds=thresholds, rounds=args.mllm_rounds, seed=args.seed,
                         local_discriminator=_local_discriminator(args.mllm_local) if args.mllm_local else None)


def _transcript_path(args: argparse.Namespace) -> Path:
    """``--transcript``, else ``OUT.transcript.sqlite`` beside ``--out``; never a symbolic link (SQLite
    would write through it)."""
    path = args.transcript or args.out.resolve().with_name(args.out.resolve().name + ".transcript.sqlite")
    if path.is_symlink():
        raise OutputError(f"transcript {path} is a symbolic link; give the real path with --transcript")
    return path


def source_of(args: argparse.Namespace, builder: Any) -> tuple[Any, dict[str, Any], Path, list[Path]]:
    """The builder (its variant for these options), its options, the source folder and the inputs
    that a build of ``args`` reads (never at, inside or around an output)."""
    options = builder.options_from(args)
    builder = builder.variant(options)  # e.g. an import of the authors' released items (--from-release)
    named = builder.source_from_options(options)
    if named is not None and (args.sample or args.source is not None):
        raise UsageError(f"the {builder.pretty_name} options name the source ({named}): drop --source / --sample")
    source = builder.sample_dir() if args.sample else args.source if args.source is not None else named
    if source is None:
        raise UsageError("one of --source DIR and --sample is required")
    protected = [source, *builder.protected_paths(options)]
    protected += [p for p in (args.replay if args.replay and str(args.replay) != "sample" else None,) if p]
    return builder, options, source, protected


def run(args: argparse.Namespace, builder: Any) -> int:
    from contextlib import nullcontext

    from finer_datasets.core.build import build
    from finer_datasets.core.output import check_output

    from finer_datasets.cli.scaled import refuse_orphans, run_scaled

    if getattr(args, "executor", None):  # the parts and their merge as tasks of a datatrove executor
        return run_scaled(args, builder)
    refuse_orphans(args)
    builder, options, source, protected = source_of(args, builder)
    if args.llm_base_url or args.transcript:
        protected.append(_transcript_path(args))
    check_output(args.out, protected=protected, overwrite=args.overwrite)  # before any model is contacted
    llm = llm_run(args, builder)
    # the bundled sample may need something beside it (e.g. a local server for its image URLs)
    with builder.test_context(source) if args.sample else nullcontext({}) as sample_options:
        result = build(
            builder, source=source, out=args.out, seed=args.seed, strict=args.strict, overwrite=args.overwrite,
            max_skip_rate=args.max_skip_rate, max_samples=args.shard_samples, max_bytes=args.shard_bytes,
            command=canonical_command(args, builder, llm), repo_id=args.repo_id,
            progress=False if args.no_progress else None, llm=llm, options={**options, **sample_options},
            protected=protected, version_label=args.version_label,
        )
    _summary(result)
    return 0


def add_merge_arguments(m: argparse.ArgumentParser, builder: Any) -> None:
    from finer_datasets.core.build import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES

    m.add_argument("dataset", help="dataset name, e.g. tuning")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", type=Path, help="the source folder every part was built from")
    src.add_argument("--sample", action="store_true", help="the parts were built with --sample")
    m.add_argument("--parts", type=Path, nargs="+", required=True, help="the part folders (built with --part I/N)")
    m.add_argument("--out", type=Path, required=True, help="output folder (as for finer build)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing output folder written by a build")
    m.add_argument("--shard-samples", type=positive_int, default=DEFAULT_MAX_SAMPLES, help="max samples per shard")
    m.add_argument("--shard-bytes", type=positive_int, default=DEFAULT_MAX_BYTES, help="max bytes per shard")
    m.add_argument("--repo-id", default=None, help="Hub repo id shown in the card's examples")
    m.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    if builder is not None:
        builder.add_arguments(m.add_argument_group(f"{builder.pretty_name} options (as the parts were built)"))


def run_merge(args: argparse.Namespace, builder: Any) -> int:
    """``finer merge``: join part builds into one release (no model, no network); its card records
    the command a one-machine build records (the parts' seed, version label, --strict and model)."""
    from finer_datasets.core.merge import merge
    from finer_datasets.core.output import check_output
    from finer_datasets.llm import LLMRun, PromptSet

    source = builder.sample_dir() if args.sample else args.source
    # the output guard before anything else reads --out (`--out .` among the parts: one line, exit 6)
    args.out = check_output(args.out, protected=[source, *args.parts], overwrite=args.overwrite)
    prompts = PromptSet.for_builder(builder.prompts_dir())

    def command(first: dict[str, Any], llm: Any) -> list[str]:
        label = first["version"].partition("+")[2] or None
        built = argparse.Namespace(**{**vars(args), "seed": first["seed"], "strict": first["builder"]["strict"],
                                      "version_label": label})
        return canonical_command(built, builder, llm)

    result = merge(builder, args.parts, source=source, out=args.out, options=builder.options_from(args),
                   replay=lambda path: LLMRun.replay(path, stages=builder.llm_stages, prompts=prompts),
                   max_samples=args.shard_samples, max_bytes=args.shard_bytes, overwrite=args.overwrite,
                   repo_id=args.repo_id, progress=False if args.no_progress else None, command=command)
    _summary(result)
    return 0


def _summary(result: Any) -> None:
    counts = result.manifest["counts"]
    records = counts.get("records", sum(counts["samples"].values()))
    detail = ", ".join(f"{s} {n}" for s, n in counts.get("pairs", {}).items())
    print(f"built {result.manifest['pretty_name']} {result.manifest['version']} in {result.out}: {records} records"
          f"{' (' + detail + ')' if detail else ''} from {counts['images']} images; "
          f"{sum(counts['skips'].values())} skipped element(s), see build_report.json")
    report = result.report
    for kind, reasons in (("by design", {r: n for r, n in counts["skips"].items() if r in report.policy}),
                          ("for defects", {r: n for r, n in counts["skips"].items() if r not in report.policy})):
        if reasons:
            print(f"  skipped {kind}: {', '.join(f'{r} {n}' for r, n in reasons.items())}")
    print(f"  defect skip rate {100 * report.defect_rate():.1f}% (limit --max-skip-rate "
          f"{100 * result.manifest['builder']['max_skip_rate']:.0f}%)")
