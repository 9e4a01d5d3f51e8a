"""Score a vision-language model on a FINER dataset: a Hugging Face model, or any served model.

    python baselines/score.py finer/compre_cap --revision v1.0.0 --model Qwen/Qwen2.5-VL-7B-Instruct --out runs/qwen7b
    python baselines/score.py out/compre_cap --model PATH --engine letters --batch-size 16 --out runs/x
    python baselines/score.py out/compre_cap --model runs/smoke --out runs/smoke-eval   # a LoRA adapter folder
    python baselines/score.py out/compre_cap --engine openai --base-url http://127.0.0.1:8000/v1 \\
        --model Qwen/Qwen2.5-VL-7B-Instruct --concurrency 32 --out runs/qwen7b-vllm
    python baselines/score.py --config run.yaml          # the same fields as YAML; flags override it

The dataset (a built folder or a Hub id) is verified against its manifest first, and its questions
are read straight from its per-image shards: one image's questions are asked together (the
``letters`` engine prefills the image once and asks them all as suffixes). The prompt is the
``official`` template of FINER's released evaluation (``--prompt``; see
finer_datasets/eval/prompts.py). Engines:

* ``generate`` -- greedy decoding of at most the template's budget (2 new tokens), the paper's protocol;
* ``letters``  -- one forward pass, argmax over the five option letters, their probabilities kept;
* ``openai``   -- an OpenAI-compatible endpoint (vLLM, SGLang, hosted APIs): bounded concurrency,
  retries, a request transcript; logprobs kept when the server returns them.

Answers are appended to ``OUT/predictions.jsonl`` as they come, and ``OUT/run.json`` records the
model, engine, prompt, parser and dataset version: rerunning the same command resumes, and
resuming with another model, engine, prompt or dataset is refused. The report (``report.json``,
``report.md``, plots) is written to ``OUT`` at the end.

Several processes (``torchrun --nproc-per-node N``, ``accelerate launch``, or ``RANK``/``WORLD_SIZE``
set by hand) share the questions by whole images (a stable hash of the image id); rank r of W
appends to ``OUT/predictions.rank{r}-of{W}.jsonl``, and the last rank to finish checks that every
question is answered, merges the files into ``predictions.jsonl`` and writes the report. Resuming
with another W asks nothing twice (see finer_datasets/eval/ranks.py).

Exit status, as for ``finer``: 0 success; 2 bad usage (an option value, a model that cannot be
loaded, a dataset that is not a FINER benchmark); 3 the dataset does not verify; 5 the model server
failed or left questions unanswered; 6 ``--out`` holds another run; 7 no answer could be read
(written report, banner says why); 130 interrupted (answers so far are kept). More than 10% of
the answers unparseable gives one warning line and a banner at the top of ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from finer_datasets.constants import canonical_settings, require_kind
from finer_datasets.cli import guarded
from finer_datasets.errors import LLMError, UsageError
from finer_datasets.eval.answers import PARSER_MODES
from finer_datasets.eval.quality import DEFAULT_MAX_UNPARSEABLE, require_usable
from finer_datasets.eval.prompts import DEFAULT_PROMPT, PROMPTS, get_prompt

logger = logging.getLogger("finer.score")

ENGINES = ("generate", "letters", "openai")
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass
class ScoreArgs:
    dataset: str = field(default="finer/compre_cap", metadata={"help": "built dataset folder or Hub id"})
    model: str = field(default="", metadata={
        "help": "model id or folder, or a PEFT adapter folder such as train_dpo.py saves (HF engines); the served "
                "model id (openai)"})
    revision: str | None = field(default=None, metadata={"help": "dataset revision, e.g. v1.0.0 (Hub ids only)"})
    model_revision: str | None = field(default=None, metadata={"help": "model revision (HF engines)"})
    settings: list[str] | None = field(default=None, metadata={"help": "score only this setting (repeatable; default all)"})
    engine: str = field(default="generate", metadata={"help": "generate, letters or openai"})
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": f"prompt template: {', '.join(PROMPTS)}"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "new tokens (default: the prompt template's)"})
    batch_size: int = field(default=16, metadata={"help": "questions per forward pass (letters engine)"})
    parser: str = field(default="strict", metadata={"help": "answer parser for the report: strict or official"})
    max_unparseable: float = field(default=DEFAULT_MAX_UNPARSEABLE, metadata={
        "help": "warn (and mark the report) when more than this share of answers cannot be read"})
    limit: int | None = field(default=None, metadata={"help": "only the first N pairs of each setting"})
    dtype: str = field(default="auto", metadata={"help": "model dtype: auto, bfloat16, float16 or float32"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "let transformers run the model repository's own code (HF engines; models not in transformers)"})
    device: str | None = field(default=None, metadata={"help": "cuda, cpu, ... (default: cuda if available)"})
    base_url: str | None = field(default=None, metadata={"help": "openai engine: the endpoint, e.g. http://127.0.0.1:8000/v1"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "openai engine: variable holding the API key"})
    concurrency: int = field(default=16, metadata={"help": "openai engine: requests in flight"})
    timeout: float = field(default=120.0, metadata={"help": "openai engine: seconds per request"})
    max_retries: int = field(default=6, metadata={"help": "openai engine: retries per request (429, 5xx, timeouts)"})
    logprobs: bool = field(default=True, metadata={"help": "openai engine: ask for logprobs (--no-logprobs: text only)"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed (and the seed sent to a server)"})
    bootstrap: int = field(default=1000, metadata={"help": "bootstrap resamples for the 95%% CI (0: none)"})
    allow_unverified: bool = field(default=False, metadata={"help": "score a dataset that fails verification"})
    name: str | None = field(default=None, metadata={"help": "model name in the report title (default: --model)"})
    out: str = field(default="runs/score", metadata={"help": "output folder: predictions.jsonl, run.json, the report"})


_TYPES = {"int": int, "int | None": int, "float": float}
#: numeric options -> (what they must be, test); checked on flags and config values alike
_RANGES = {**{name: ("a positive integer", lambda v: v >= 1)
              for name in ("batch_size", "concurrency", "max_new_tokens", "limit")},
           "timeout": ("a positive number of seconds", lambda v: v > 0),
           "max_retries": ("0 or more", lambda v: v >= 0),
           "bootstrap": ("0 or more", lambda v: v >= 0),
           "max_unparseable": ("a share between 0 and 1", lambda v: 0 <= v <= 1)}


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (exit 2 through :func:`finer_datasets.cli.guarded`), not the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="score.py", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset_arg", metavar="DATASET", nargs="?", help="built dataset folder or Hub id (or --dataset)")
    p.add_argument("--config", help="YAML file with any of the fields below (flags override it)")
    for f in fields(ScoreArgs):
        flags = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
        default = f.default if f.default is not MISSING else None
        text = f"{f.metadata['help']} (default: {default})"
        if f.name == "settings":
            p.add_argument("--setting", dest="settings", action="append", default=None, help=f.metadata["help"])
            p.add_argument("--settings", dest="settings", action="extend", nargs="+", help=argparse.SUPPRESS)
        elif f.type == "bool" and f.default:
            p.add_argument(flags[0], dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.type == "bool":
            p.add_argument(*flags, dest=f.name, action="store_const", const=True, default=None, help=f.metadata["help"])
        else:
            p.add_argument(*flags, dest=f.name, type=_TYPES.get(str(f.type), str), default=None, help=text)
    return p


def parse_args(argv: list[str] | None = None) -> ScoreArgs:
    """Flags over the ``--config`` YAML over the defaults; values checked (:class:`UsageError`)."""
    ns = _parser().parse_args(argv)
    values: dict[str, Any] = {}
    if ns.config:
        from finer_datasets.core.config_file import load_yaml_mapping

        loaded = load_yaml_mapping(ns.config)
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
        if "setting" in values:
            values["settings"] = values.pop("setting")
        _check_config_types(ns.config, values)
    values.update({k: v for k, v in vars(ns).items() if k not in ("config", "dataset_arg") and v is not None})
    if ns.dataset_arg:
        values["dataset"] = ns.dataset_arg
    unknown = set(values) - {f.name for f in fields(ScoreArgs)}
    if unknown:
        raise UsageError(f"--config {ns.config}: unknown field(s) {', '.join(sorted(unknown))}")
    args = ScoreArgs(**values)
    if isinstance(args.settings, str):
        args.settings = [args.settings]
    args.settings = None if args.settings is None else list(canonical_settings(args.settings))
    if not args.model:
        raise UsageError("--model is required (a model id or folder; with --engine openai, the served model id)")
    if args.engine not in ENGINES:
        raise UsageError(f"--engine {args.engine!r}: use one of {', '.join(ENGINES)}")
    if args.engine == "openai" and not args.base_url:
        raise UsageError("--engine openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    get_prompt(args.prompt)
    if args.dtype not in DTYPES:
        raise UsageError(f"--dtype {args.dtype!r}: use one of {', '.join(DTYPES)}")
    if args.parser not in PARSER_MODES:
        raise UsageError(f"--parser {args.parser!r}: use one of {', '.join(PARSER_MODES)}")
    for name, (wanted, ok) in _RANGES.items():
        value = getattr(args, name)
        if value is not None and not ok(value):
            raise UsageError(f"--{name.replace('_', '-')} must be {wanted}, got {value}")
    return args


def _check_config_types(path: str, values: dict[str, Any]) -> None:
    """Each config value has its field's type (a number where a number goes...), else one line."""
    kinds = {f.name: str(f.type) for f in fields(ScoreArgs)}
    for name, value in values.items():
        kind = kinds.get(name)
        if kind is None or value is None:
            continue  # unknown names are reported together afterwards
        if kind == "list[str] | None":
            ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind.startswith("int"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise UsageError(f"--config {path}: {name}: {value!r} is not {_KIND_NAMES.get(kind, 'a string')}")


_KIND_NAMES = {"list[str] | None": "a setting name or a list of them", "bool": "true or false",
               "int": "an integer", "int | None": "an integer", "float": "a number"}


class _Appender:
    """Appends answers to this process's predictions file, flushed line by line, fsynced on close."""

    def __init__(self, path: Path):
        from finer_datasets.core.guard import open_append

        self.handle = open_append(path)  # never through a link

    def __call__(self, answer: dict[str, Any]) -> None:
        self.handle.write(json.dumps(answer) + "\n")
        self.handle.flush()

    def close(self) -> None:
        os.fsync(self.handle.fileno())
        self.handle.close()


def _load(args: ScoreArgs, out: Path, max_new: int, ranks: Any) -> Any:
    """The engine's model: a served endpoint or a Hugging Face model (loaded once, on this rank's GPU)."""
    if args.engine == "openai":
        from finer_datasets.eval.served import ServedModel

        return ServedModel.connect(args.base_url, args.model, transcript=out / "transcript.sqlite",
                                   max_new_tokens=max_new, api_key_env=args.api_key_env, concurrency=args.concurrency,
                                   timeout=args.timeout, max_retries=args.max_retries, seed=args.seed,
                                   logprobs=args.logprobs)
    from finer_datasets.eval.engines import VisionLanguageModel
    from finer_datasets.eval.ranks import rank_device

    extra = {"trust_remote_code": True} if args.trust_remote_code else {}
    device = rank_device(args.device, ranks.local_rank) if ranks.parallel else args.device
    return VisionLanguageModel.from_pretrained(args.model, dtype=args.dtype, device=device,
                                               revision=args.model_revision, **extra)


def _ask(args: ScoreArgs, model: Any, questions: Any, todo: int, write: _Appender, own: Path, max_new: int) -> None:
    """Run the engine over ``questions``, writing each answer as it comes."""
    from tqdm.auto import tqdm

    if args.engine == "openai":
        summary = model.answer(questions, write, total=todo)
        if summary.failed:
            shown = "; ".join(f"{qid}: {reason}" for qid, reason in summary.failed[:3])
            raise LLMError(f"{len(summary.failed)} question(s) got no answer ({shown}); the {summary.answered} answers "
                           f"received are kept in {own}: run the same command again to ask the rest")
        return
    if args.engine == "generate":
        answers = ({"question_id": qid, "response": text}
                   for qid, text, _ in model.generate(questions, max_new_tokens=max_new))
    else:
        answers = ({"question_id": qid, "response": letter, "probs": [round(p, 6) for p in probs]}
                   for qid, letter, probs in model.letters(questions, batch_size=args.batch_size))
    for answer in tqdm(answers, total=todo, desc=args.engine, unit="q"):
        write(answer)


def main(args: ScoreArgs, *, vlm: Any = None, ranks: Any = None) -> dict[str, Any] | None:
    """Answer every question still unanswered in ``args.out``, then score and report.

    ``ranks`` (:class:`finer_datasets.eval.ranks.Ranks`; the command line reads it from ``RANK`` /
    ``WORLD_SIZE``): answer only this rank's images, into its own file; the rank that finds every
    question answered merges them and reports, the others return ``None``."""
    from contextlib import ExitStack

    from finer_datasets.core.guard import as_output_error
    from finer_datasets.eval.questions import image_questions, select_pairs
    from finer_datasets.eval.ranks import PREDICTIONS, Ranks, answered, cut_partial_line, writer_lock
    from finer_datasets.eval.report import check_report_out
    from finer_datasets.eval.runinfo import claim_run, run_record
    from finer_datasets.hub.resolve import resolve_dataset
    from finer_datasets.core.reader import iter_records, iter_samples

    ranks = ranks or Ranks()
    out = Path(args.out)  # never into a dataset, over files another run or the user wrote, or through a link
    own = out / ranks.file_name
    check_report_out(out, also=(PREDICTIONS, own.name), links=("transcript.sqlite",), what="baselines/score.py")
    dataset = resolve_dataset(args.dataset, revision=args.revision, allow_unverified=args.allow_unverified)
    require_kind(next(iter_records(dataset.folder, dataset.manifest), None), "benchmark", subject=args.dataset,
                 action="baselines/score.py")
    template = get_prompt(args.prompt)
    max_new = args.max_new_tokens or template.max_new_tokens
    served = args.engine == "openai"
    with ExitStack() as locks:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise as_output_error(exc, out) from exc
        locks.enter_context(writer_lock(own))  # a second process of the same rank waits for this one
        cut_partial_line(own)
        done = set(answered(out))  # every predictions file, of any number of ranks
        record = run_record(engine=args.engine, model=args.model,
                            model_revision=None if served else args.model_revision,
                            endpoint=args.base_url if served else None, prompt=template.name,
                            max_new_tokens=None if args.engine == "letters" else max_new,
                            dtype=None if served else args.dtype, parser=args.parser, dataset=dataset.provenance(),
                            seed=args.seed, settings=args.settings, limit=args.limit)
        record = claim_run(out, record, has_answers=bool(done))

        pairs = select_pairs(iter_records(dataset.folder, dataset.manifest), args.settings, args.limit)
        wanted = {pair[p]["question_id"] for pair in pairs for p in ("positive", "negative")}
        mine = [pair for pair in pairs if ranks.owns(pair["image_id"])] if ranks.parallel else pairs
        todo = len({pair[p]["question_id"] for pair in mine for p in ("positive", "negative")} - done)
        share = f"{ranks.label}: " if ranks.parallel else ""
        logger.info("%s%d questions, %d already answered, %d to go", share, len(wanted), len(wanted & done), todo)
        if todo:
            model = vlm if vlm is not None else _load(args, out, max_new, ranks)
            try:
                commit = getattr(model, "commit", None)
                if isinstance(commit, str):  # the weights' Hub commit: a resumed run must use the same
                    record = claim_run(out, {**record, "model_commit": commit}, has_answers=bool(done))
                questions = image_questions(iter_samples(dataset.folder, dataset.manifest), mine, template, skip=done)
                write = _Appender(own)
                try:
                    _ask(args, model, questions, todo, write, own, max_new)
                finally:
                    write.close()
            finally:
                if vlm is None and hasattr(model, "close"):
                    model.close()
        if ranks.parallel:
            locks.enter_context(writer_lock(out / PREDICTIONS))  # one merge at a time
        return _merge_and_report(args, ranks, out, pairs, wanted, asked=bool(todo), template=template,
                                 record=record, dataset=dataset)


def _merge_and_report(args: ScoreArgs, ranks: Any, out: Path, pairs: list, wanted: set[str], *, asked: bool,
                      template: Any, record: dict, dataset: Any) -> dict[str, Any] | None:
    """With every question answered: ``predictions.jsonl`` holding every rank's answers, and the
    report. A rank that finds questions unanswered (another rank still at work) returns ``None``,
    as does one that asked nothing (rank 0 or the last rank that asked merges then)."""
    from finer_datasets.eval.quality import assess, warn
    from finer_datasets.eval.ranks import PREDICTIONS, answered, merge_predictions, question_order
    from finer_datasets.eval.report import report_title, write_report
    from finer_datasets.eval.scoring import load_predictions, score

    answers = answered(out)
    if ranks.parallel:
        missing = len(wanted - answers.keys())
        if missing:
            logger.info("%s: its share is answered (%s); %d question(s) of other ranks are not yet: the last rank to "
                        "finish writes %s and the report", ranks.label, ranks.file_name, missing, PREDICTIONS)
            return None
        if not asked and ranks.rank != 0:
            logger.info("%s: nothing was left to ask; rank 0 or the rank that asked last writes %s and the report",
                        ranks.label, PREDICTIONS)
            return None
    added = merge_predictions(out, answers, question_order(pairs))
    if added:
        logger.info("%d answers of the rank files merged into %s", added, out / PREDICTIONS)
    answers = {qid: text for qid, text in load_predictions(out / PREDICTIONS).items() if qid in wanted}
    result = score(pairs, answers, parser=args.parser, bootstrap=args.bootstrap, seed=args.seed, keep_pairs=True)
    notes = [f"settings {', '.join(args.settings)} only (--setting)"] if args.settings else []
    notes += [f"the first {args.limit} pairs of each setting (--limit {args.limit})"] if args.limit else []
    result.update(model=args.name or args.model, engine=args.engine, prompt=template.describe(), run=record,
                  dataset={**dataset.provenance(), "pretty_name": dataset.manifest.get("pretty_name")},
                  selection_notes=notes)
    result["prompt"]["max_new_tokens"] = record["max_new_tokens"]
    result["quality"] = assess(result, args.max_unparseable)
    write_report(result, out, title=report_title(result))
    warn(result["quality"])  # one line when many answers are unparseable; cli() exits 7 when none is readable
    return result


def cli(argv: list[str] | None = None) -> int:
    """The command line: errors are one ``error: ...`` line and the exit status of ``finer``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    def run() -> int:
        from finer_datasets.eval.ranks import Ranks

        args = parse_args(argv)
        result = main(args, ranks=Ranks.from_env())  # RANK / WORLD_SIZE of torchrun, accelerate launch, ...
        if result is None:
            return 0  # another rank merges and reports
        for name, block in result["settings"].items():
            print(f"{name:>10}: paired accuracy {block['paired_accuracy']:.1f}% ({block['n_pairs']} pairs)")
        print(f"report: {Path(args.out) / 'report.md'}")
        require_usable(result["quality"], args.out)  # exit 7: no answer could be read
        return 0

    return guarded(run, interrupted="interrupted; the answers so far are kept: rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(cli())
