"""Reference DPO training on FINER-Tuning (paper section 3, Table 10) with TRL + PEFT LoRA.

    python baselines/train_dpo.py --config baselines/configs/qwen2.5-vl-7b.yaml --dataset out/tuning
    python baselines/train_dpo.py --config baselines/configs/qwen2.5-vl-7b.yaml --dataset tuples.jsonl --fast \\
        --eval compre_cap --output_dir runs/qwen25vl-finer
    accelerate launch --config_file baselines/configs/accelerate_ddp.yaml --num_processes 2 \\
        baselines/train_dpo.py --config baselines/configs/qwen2.5-vl-7b.yaml --dataset out/tuning --fast
    # CPU smoke run: a tiny random model and the built samples (baselines/README.md)
    python baselines/train_dpo.py --config baselines/configs/qwen2.5-vl-7b.yaml --model_name_or_path tiny-vlm \\
        --dataset tuning-sample --output_dir runs/smoke --max_steps 2 --max_train_samples 32 \\
        --global_batch_size 8 --logging_steps 1 --use_cpu

Options come from three dataclasses parsed by ``trl.TrlParser``: the script's own (below), TRL's
``DPOConfig`` (optimiser, schedule, batch sizes, beta, loss_type, max_length, bf16, DeepSpeed,
logging, saving, trust_remote_code) and TRL's ``ModelConfig`` (model, dtype, attention, LoRA).
``--config file.yaml`` sets any of them; flags override it. ``python baselines/train_dpo.py --help``
lists them all. A bad option or config file is one ``error: ...`` line, exit status 2. Where bf16
cannot run (``--use_cpu``, no CUDA bf16) a preset's bf16 becomes float32, with one warning line.

Data: TRL's conversational vision preference format (``images``, ``prompt``, ``chosen``,
``rejected``; see ``finer_datasets.train.data``) from a JSONL file of tuples, from
``finer_datasets.load_finer(path, view="trl")`` (a built FINER-Tuning folder or Hub id), or from any
``datasets.load_dataset`` source in that format (``--dataset_loader datasets``). Optional columns
``subset`` and ``query_type`` drive the ablation presets (paper Tables 4-5). Fewer tuples than
``--max_train_samples`` is refused unless ``--allow_fewer_samples``. Images larger than
``--image_max_pixels`` are shrunk (aspect ratio kept) before the processor, for every model.

Training: ``trl.DPOTrainer`` by default (TRL's layout); ``--fast`` runs the packed step of
``finer_datasets.train`` (one ``[prompt|chosen|rejected]`` row per tuple, the vision tower once per
image, reference log-probs cached from one inference pass, no gradient checkpointing when the
micro-batch fits) with the same loss and gradients. The LoRA adapter is saved to ``--output_dir``
(``baselines/score.py --model OUTPUT_DIR`` scores it). ``--eval compre_cap`` (or ``docci``) then
scores the trained model with ``baselines/score.py`` and writes one report (``report.json``,
``report.md``) with the training and benchmark results.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finer_datasets.train.data import QUERY_TYPES, SUBSETS  # light: no torch, no datasets

logger = logging.getLogger("finer.train_dpo")

EVAL_DATASETS = {"compre_cap": "finer/compre_cap", "docci": "finer/docci"}


@dataclass
class ScriptArguments:
    dataset: str = field(default="", metadata={
        "help": "FINER-Tuning tuples: a JSONL file, a built folder or a Hub id (see --dataset_loader)"})
    dataset_loader: str = field(default="finer", metadata={
        "help": "finer: finer_datasets.load_finer(view='trl'); datasets: datasets.load_dataset (any source in TRL's "
                "vision preference format). JSONL files are always read directly", "choices": ["finer", "datasets"]})
    dataset_split: str = field(default="train", metadata={"help": "split to train on"})
    dataset_revision: str | None = field(default=None, metadata={"help": "dataset revision (Hub tag or commit)"})
    subsets: list[str] | None = field(default=None, metadata={
        "help": "keep only these subsets (needs a 'subset' column): paper Table 5", "choices": list(SUBSETS)})
    query_types: list[str] | None = field(default=None, metadata={
        "help": "keep only these query types (needs a 'query_type' column): paper Table 4",
        "choices": list(QUERY_TYPES)})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "uniformly subsample this many tuples (seeded by --seed) before the validation split: 40K "
                "LLaVA-1.6, 120K Qwen2.5-VL, 160K InternVL3.5 (paper, Table 10). Data with fewer tuples (after "
                "the filters) is refused unless --allow_fewer_samples"})
    allow_fewer_samples: bool = field(default=False, metadata={
        "help": "train on all the tuples when there are fewer than --max_train_samples (one warning; report.json "
                "records both numbers) instead of refusing"})
    val_ratio: float = field(default=0.005, metadata={
        "help": "fraction in [0, 1) held out for validation (paper: 0.005; 0: none) when the data has no "
                "'validation' split"})
    global_batch_size: int | None = field(default=None, metadata={
        "help": "global batch (paper: 64): sets gradient_accumulation_steps = global / (micro-batch x processes)"})
    lora_language_only: bool = field(default=True, metadata={
        "help": "put LoRA on --lora_target_modules of the language model only (the vision tower stays frozen)"})
    image_max_pixels: int | None = field(default=None, metadata={
        "help": "resize every image larger than this many pixels down to at most this many (aspect ratio kept) "
                "before the processor, for every model family; the authors' LLaMA-Factory configs use 262144"})
    fast: bool = field(default=False, metadata={
        "help": "packed DPO step (finer_datasets.train): same loss and gradients as TRL, several times faster"})
    reference: str = field(default="cache", metadata={
        "help": "--fast: 'cache' (reference log-probs from one inference pass, cached on disk) or 'inline' (a no-grad "
                "forward with the adapter off in every step)", "choices": ["cache", "inline"]})
    reference_dir: str | None = field(default=None, metadata={
        "help": "--fast: folder of the reference log-prob cache (default OUTPUT_DIR/reference)"})
    margin_alpha: float = field(default=0.0, metadata={"help": "--fast, experiment: margin DPO, -log sigmoid(beta*dr - m), "
                                "m = margin_alpha * k + margin_gamma, k the elements a tuple names; 0 and 0: plain DPO"})
    margin_gamma: float = field(default=0.0, metadata={"help": "--fast, experiment: the constant part of the margin"})
    auto_micro_batch: bool = field(default=True, metadata={
        "help": "--fast on CUDA without DeepSpeed: largest micro-batch <= per_device_train_batch_size that fits "
                "without gradient checkpointing (checkpointing only if one tuple does not fit); set "
                "--global_batch_size to keep the global batch"})
    eval: str | None = field(default=None, metadata={
        "help": "after training, score the model on this FINER benchmark with baselines/score.py",
        "choices": list(EVAL_DATASETS)})
    eval_dataset: str | None = field(default=None, metadata={
        "help": "benchmark Hub id or built folder (default: finer/compre_cap or finer/docci)"})
    eval_revision: str | None = field(default=None, metadata={"help": "benchmark revision, e.g. v1.0.0"})
    eval_engine: str = field(default="generate", metadata={
        "help": "score.py engine: generate (paper protocol) or letters", "choices": ["generate", "letters"]})
    eval_limit: int | None = field(default=None, metadata={"help": "score only the first N pairs of each setting"})
    eval_batch_size: int = field(default=16, metadata={"help": "questions per forward (letters engine)"})


def parse_args(argv: list[str] | None = None) -> tuple[Any, Any, Any]:
    """``(script_args, DPOConfig, ModelConfig)`` from flags over ``--config``; every bad option is a
    one-line :class:`~finer_datasets.errors.UsageError` (:mod:`finer_datasets.train.options`)."""
    from trl import DPOConfig, ModelConfig

    from finer_datasets.errors import UsageError
    from finer_datasets.train.options import parse

    script_args, training_args, model_args = parse((ScriptArguments, DPOConfig, ModelConfig), argv,
                                                   prog="train_dpo.py", description=__doc__.split("\n\n")[0])
    if not script_args.dataset:
        raise UsageError("--dataset is required: a JSONL file of tuples, a built FINER-Tuning folder or a Hub id "
                         "(see train_dpo.py --help)")
    from finer_datasets.eval.engines import looks_like_path

    dataset = script_args.dataset
    if not Path(dataset).expanduser().exists() and (dataset.endswith(".jsonl") or looks_like_path(dataset)):
        raise UsageError(f"--dataset {dataset}: no such file or folder")
    return script_args, training_args, model_args


# -- data ---------------------------------------------------------------------------------------------

def load_tuples(args: ScriptArguments, seed: int, counts: dict | None = None) -> tuple[Any, Any]:
    """``(train, validation or None)`` after the subset / query-type filters and the subsample; the
    data's own ``validation`` split when it has one, else ``val_ratio`` of the tuples. ``counts``
    (when given) receives ``available_tuples`` (after the filters) and ``requested_tuples``."""
    import datasets

    from finer_datasets.errors import UsageError
    from finer_datasets.train.data import load_tuples_jsonl, select_tuples

    if args.dataset.endswith(".jsonl"):
        ds = load_tuples_jsonl(args.dataset)
    elif args.dataset_loader == "finer":
        from finer_datasets.hub.load import load_finer

        ds = load_finer(args.dataset, view="trl", revision=args.dataset_revision)
    else:
        ds = datasets.load_dataset(args.dataset, revision=args.dataset_revision)
    validation = None
    if isinstance(ds, (datasets.DatasetDict, dict)):
        if args.dataset_split not in ds:
            raise UsageError(f"--dataset_split {args.dataset_split!r} not in {sorted(ds)}")
        validation = ds.get("validation") if args.dataset_split != "validation" else None
        ds = ds[args.dataset_split]
    return select_tuples(ds, validation, name=args.dataset, subsets=args.subsets, query_types=args.query_types,
                         max_train_samples=args.max_train_samples, allow_fewer=args.allow_fewer_samples,
                         val_ratio=args.val_ratio, seed=seed, counts=counts)


# -- model --------------------------------------------------------------------------------------------

def load_model(model_args: Any, script_args: ScriptArguments, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """The model and processor of ``--model_name_or_path`` (a folder or a Hub id; a model that cannot be
    had is one line, fast, offline included). A local folder is recorded by its absolute path, so the
    saved adapter finds its base model from any working directory."""
    import torch

    from finer_datasets.errors import UsageError
    from finer_datasets.eval.engines import load_pretrained

    name = model_args.model_name_or_path
    if not name:
        raise UsageError("--model_name_or_path is required (a model folder or a Hub id; the presets set one)")
    if Path(name).expanduser().is_dir():
        name = str(Path(name).expanduser().resolve())
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    return load_pretrained(name, revision=model_args.model_revision, dtype=dtype, option="--model_name_or_path",
                           attn_implementation=model_args.attn_implementation,
                           trust_remote_code=trust_remote_code)


def peft_config(model_args: Any, script_args: ScriptArguments) -> Any:
    """TRL's LoRA config from ``ModelConfig``; with ``lora_language_only`` the target modules are
    matched inside the language model only (a regex), so the vision tower stays frozen."""
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is None:
        return None
    targets = model_args.lora_target_modules or ["q_proj", "v_proj"]
    if script_args.lora_language_only and isinstance(targets, (list, tuple)):
        config.target_modules = rf".*language_model.*\.({'|'.join(targets)})"
    return config


# -- training -----------------------------------------------------------------------------------------

def _set_accumulation(training_args: Any, script_args: ScriptArguments, micro_batch: int) -> None:
    from finer_datasets.errors import UsageError
    from finer_datasets.train.autobatch import accumulation_steps

    training_args.per_device_train_batch_size = micro_batch
    if script_args.global_batch_size:
        try:
            training_args.gradient_accumulation_steps = accumulation_steps(
                script_args.global_batch_size, micro_batch, training_args.world_size)
        except ValueError as e:
            raise UsageError(f"--global_batch_size: {e}") from None


def train(script_args: ScriptArguments, training_args: Any, model_args: Any, model: Any, processor: Any,
          train_ds: Any, val_ds: Any) -> Any:
    """Build the trainer (TRL or fast), train, save the adapter; return the trainer."""
    cfg = peft_config(model_args, script_args)
    if not script_args.fast:
        from trl import DPOTrainer

        _set_accumulation(training_args, script_args, training_args.per_device_train_batch_size)
        from finer_datasets.train.data import PixelCapCollator

        trainer = DPOTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=val_ds,
                             processing_class=processor, peft_config=cfg)
        if script_args.image_max_pixels:  # images shrunk before TRL's collator runs the processor
            trainer.data_collator = PixelCapCollator(trainer.data_collator, script_args.image_max_pixels)
    else:
        from peft import get_peft_model
        from transformers import set_seed

        from finer_datasets.train.autobatch import largest_micro_batch, reduce_min
        from finer_datasets.train.fast_dpo import PackedPolicy
        from finer_datasets.train.trainer import FastDPOTrainer, PackedCollator

        set_seed(training_args.seed)  # as trl.DPOTrainer: the LoRA initialisation is seeded
        plugin = training_args.deepspeed_plugin
        zero3 = plugin is not None and plugin.zero_stage == 3
        peft_model = get_peft_model(model, cfg, autocast_adapter_dtype=not zero3) if cfg is not None else model
        micro = training_args.per_device_train_batch_size
        if script_args.auto_micro_batch and training_args.device.type == "cuda" and plugin is None:
            tok = getattr(processor, "tokenizer", processor)
            collator = PackedCollator(processor, max_length=training_args.max_length,
                                      pad_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                                      max_pixels=script_args.image_max_pixels)
            micro, checkpointing = largest_micro_batch(
                PackedPolicy(peft_model), collator.collate, train_ds, start=micro, device=training_args.device,
                reference_inline=script_args.reference == "inline", reduce_min=reduce_min)
            training_args.activation_checkpointing = training_args.gradient_checkpointing = checkpointing
        _set_accumulation(training_args, script_args, micro)
        trainer = FastDPOTrainer(peft_model, training_args, train_ds, processor, eval_dataset=val_ds,
                                 reference=script_args.reference, reference_dir=script_args.reference_dir,
                                 image_max_pixels=script_args.image_max_pixels, margin_alpha=script_args.margin_alpha,
                                 margin_gamma=script_args.margin_gamma)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    return trainer


# -- evaluation and report ----------------------------------------------------------------------------

def evaluate(script_args: ScriptArguments, model_args: Any, trainer: Any, processor: Any, out_dir: Path) -> dict:
    """Score the trained model (adapter active) with ``baselines/score.py``; returns its result."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from score import ScoreArgs
    from score import main as score_main

    from finer_datasets.eval.engines import VisionLanguageModel

    model = getattr(trainer, "policy", None)
    model = model.model if model is not None else trainer.model
    model = trainer.accelerator.unwrap_model(model)
    device = str(trainer.args.device)
    vlm = VisionLanguageModel(model, processor, device=device)
    values = {"model": f"{model_args.model_name_or_path or type(model).__name__}+{trainer.args.output_dir}",
              "dataset": script_args.eval_dataset or EVAL_DATASETS[script_args.eval],
              "revision": script_args.eval_revision, "engine": script_args.eval_engine,
              "batch_size": script_args.eval_batch_size, "limit": script_args.eval_limit, "device": device,
              "out": str(out_dir / f"eval-{script_args.eval}")}
    known = ScoreArgs.__dataclass_fields__
    return score_main(ScoreArgs(**{k: v for k, v in values.items() if k in known}), vlm=vlm)


def write_report(out_dir: Path, summary: dict) -> None:
    """``report.json`` and ``report.md`` in ``out_dir`` (atomic writes)."""
    lines = [f"# FINER-Tuning DPO: {summary['model']}", "",
             f"- data: {summary['dataset']} ({summary['train_tuples']} training tuples, "
             f"{summary['validation_tuples']} validation)", f"- trainer: {summary['trainer']}",
             f"- adapter: {summary['adapter']}", ""]
    lines += ["| training metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in summary["train"].items()]
    if summary.get("eval"):
        lines += ["", f"## {summary['eval']['benchmark']}", "", "| setting | paired accuracy | pairs |",
                  "| --- | --- | --- |"]
        lines += [f"| {name} | {b['paired_accuracy']:.1f}% | {b['n_pairs']} |"
                  for name, b in summary["eval"]["settings"].items()]
    from finer_datasets.core.guard import write_file

    for name, text in (("report.json", json.dumps(summary, indent=2, default=str) + "\n"),
                       ("report.md", "\n".join(lines) + "\n")):
        write_file(out_dir / name, text)  # a temp file of this run's own, then a rename



def claim_output_dir(script_args: ScriptArguments, training_args: Any, create: bool = True) -> None:
    """The output guard (rank 0): --output_dir new, empty or claimed by this script before (resumable), never
    a dataset, inside one or around the data, never a link (else exit 6); ``create`` claims it."""
    from finer_datasets.core.guard import claim_folder

    if int(os.environ.get("RANK", "0")) == 0:
        inputs = [Path(p).expanduser() for p in (script_args.dataset, script_args.eval_dataset) if p]
        claim_folder(Path(training_args.output_dir), "baselines/train_dpo.py", option="--output_dir",
                     protected=[p for p in inputs if p.exists()], create=create)


def main(script_args: ScriptArguments, training_args: Any, model_args: Any, *, model: Any = None,
         processor: Any = None) -> dict:
    """Train (and score with ``--eval``); returns the report dict. ``model`` / ``processor`` may be
    given already built (e.g. a tiny offline model); otherwise ``model_name_or_path`` is loaded."""
    from finer_datasets.errors import UsageError

    plugin = training_args.deepspeed_plugin
    if script_args.eval and plugin is not None and plugin.zero_stage == 3:
        raise UsageError("--eval scores on one device, not under DeepSpeed ZeRO-3: train without --eval, then score "
                         "the saved adapter with baselines/score.py --model OUTPUT_DIR")
    claim_output_dir(script_args, training_args, create=False)  # checked before anything is loaded or written
    if model is None:  # a model that cannot be had fails before the data is read
        from finer_datasets.eval.engines import check_model_source

        if not model_args.model_name_or_path:
            raise UsageError("--model_name_or_path is required (a model folder or a Hub id; the presets set one)")
        check_model_source(model_args.model_name_or_path, revision=model_args.model_revision,
                           option="--model_name_or_path")
    counts: dict[str, Any] = {}
    train_ds, val_ds = load_tuples(script_args, training_args.seed, counts)
    if model is None:
        model, processor = load_model(model_args, script_args, training_args.trust_remote_code)
    claim_output_dir(script_args, training_args)
    start = time.perf_counter()
    trainer = train(script_args, training_args, model_args, model, processor, train_ds, val_ds)
    seconds = time.perf_counter() - start
    history = [h for h in trainer.state.log_history if "loss" in h]
    last = history[-1] if history else {}
    out_dir = Path(training_args.output_dir)
    summary: dict[str, Any] = {
        "model": model_args.model_name_or_path or type(model).__name__, "dataset": script_args.dataset,
        "trainer": "fast (packed)" if script_args.fast else "trl.DPOTrainer", "adapter": str(out_dir),
        "train_tuples": len(train_ds), "validation_tuples": len(val_ds) if val_ds is not None else 0,
        **counts, "train": {"steps": trainer.state.global_step, "seconds": round(seconds, 2),
                  **{k: v for k, v in last.items() if k.startswith(("loss", "rewards/", "logps/"))}},
        "history": history, "eval_history": [h for h in trainer.state.log_history if "eval_loss" in h],
        "script_args": asdict(script_args),
    }
    if script_args.eval and trainer.accelerator.is_main_process:  # one process scores
        result = evaluate(script_args, model_args, trainer, processor, out_dir)
        summary["eval"] = {"benchmark": script_args.eval, "report": str(out_dir / f"eval-{script_args.eval}"),
                           "settings": {k: {"paired_accuracy": v["paired_accuracy"], "n_pairs": v["n_pairs"]}
                                        for k, v in result["settings"].items()}}
    if trainer.accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_report(out_dir, summary)
    return summary


def cli(argv: list[str] | None = None) -> int:
    """The command line: errors are one ``error: ...`` line and the exit status of ``finer``."""
    import warnings

    from finer_datasets.cli import guarded

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # noise from the libraries' own calls, not from anything the user set
    warnings.filterwarnings("ignore", message=r"`\w*gradient_checkpointing\w*` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="'pin_memory' argument is set as true but no accelerator")

    def run() -> int:
        report = main(*parse_args(argv))
        print(json.dumps({"adapter": report["adapter"], **report["train"],
                          **({"eval": report["eval"]["settings"]} if report.get("eval") else {})}, indent=1))
        return 0

    return guarded(run, interrupted="interrupted; checkpoints saved so far are kept (--resume_from_checkpoint)")


if __name__ == "__main__":
    sys.exit(cli())
