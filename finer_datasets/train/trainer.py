"""``FastDPOTrainer``: a ``transformers.Trainer`` running the packed DPO step of :mod:`fast_dpo`.

It takes the same ``trl.DPOConfig`` as ``trl.DPOTrainer`` (learning rate, schedule, batch sizes,
``beta``, ``loss_type``, ``max_length``, bf16, DeepSpeed, logging, saving...) and the same
dataset (TRL's conversational vision preference format), and logs TRL's metrics
(``rewards/chosen``, ``rewards/margins``, ...). Differences, all about speed:

* ``reference="cache"``: reference log-probabilities come from one inference pass before training,
  cached on disk (:mod:`reference`); ``reference="inline"`` computes them in each step, in a
  second no-grad forward with the adapter disabled that reuses the image features;
* the model runs on packed ``[prompt | chosen | rejected]`` rows (:mod:`packing`);
* gradient checkpointing is off unless ``DPOConfig.gradient_checkpointing`` asks for it (pick the
  micro-batch with :func:`finer_datasets.train.autobatch.largest_micro_batch`).

``margin_alpha`` / ``margin_gamma`` (default 0: plain DPO) turn on margin DPO, an experiment: the
sigmoid loss with the instance margin ``m = alpha * g + gamma``, g the ``granularity`` column of
the rows (:func:`~finer_datasets.train.fast_dpo.instance_margin`); the mean margin is logged as
``margin``.

The saved checkpoint is the PEFT adapter (``adapter_model.safetensors``), as with TRL.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any, Sequence

import torch
from transformers import Trainer

from finer_datasets.errors import UsageError
from finer_datasets.train.data import encode_batch
from finer_datasets.train.fast_dpo import (
    FAST_LOSSES,
    MARGIN_COLUMN,
    PackedPolicy,
    dpo_loss,
    instance_margin,
    reward_metrics,
)
from finer_datasets.train.packing import pack
from finer_datasets.train.reference import (
    ReferenceCache,
    cache_key,
    compute_reference_logps,
    data_fingerprint,
    model_fingerprint,
)

__all__ = ["PackedCollator", "FastDPOTrainer", "ROW_COLUMN"]

logger = logging.getLogger("finer.train")
ROW_COLUMN = "__row__"


class PackedCollator:
    """Rows of the dataset -> one packed micro-batch (tokenised here, as TRL's vision collator does).

    When ``reference`` holds the cached ``(chosen, rejected)`` log-probabilities of the training
    rows, the batch carries them as ``ref_chosen_logps`` / ``ref_rejected_logps``; rows with a
    ``granularity`` column carry it as a (B,) float tensor (margin DPO)."""

    def __init__(self, processor: Any, *, max_length: int | None, pad_id: int, max_pixels: int | None = None):
        self.processor = processor
        self.max_length = max_length
        self.pad_id = pad_id
        self.max_pixels = max_pixels
        self.reference: tuple[torch.Tensor, torch.Tensor] | None = None

    def collate(self, examples: list[dict[str, Any]], rows: Sequence[int]) -> dict[str, torch.Tensor]:
        examples = [{**ex, "images": [ex["image"]]} if "image" in ex and "images" not in ex else ex for ex in examples]
        encoded = encode_batch(self.processor, examples, max_length=self.max_length, rows=rows,
                               max_pixels=self.max_pixels)
        return pack(encoded, pad_id=self.pad_id)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [int(ex.get(ROW_COLUMN, -1)) for ex in examples]
        packed = self.collate(examples, rows)
        if self.reference is not None and rows and min(rows) >= 0:
            index = torch.tensor(rows)
            packed["ref_chosen_logps"] = self.reference[0][index]
            packed["ref_rejected_logps"] = self.reference[1][index]
        if examples and all(ex.get(MARGIN_COLUMN) is not None for ex in examples):
            packed[MARGIN_COLUMN] = torch.tensor([float(ex[MARGIN_COLUMN]) for ex in examples])
        return packed


class _WithRows(torch.utils.data.Dataset):
    """The training rows with their index (the key of their cached reference log-probs), without
    rewriting the dataset (views built with ``set_transform`` stay as they are). Evaluation rows
    carry none, so their reference is computed in the step."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[int(index)], ROW_COLUMN: int(index)}


def check_fast_config(args: Any) -> None:
    """Refuse ``DPOConfig`` options the packed step does not implement (one line naming the option)."""
    unsupported = [name for name in args.loss_type if name not in FAST_LOSSES]
    if unsupported:
        raise UsageError(f"--fast supports --loss_type {', '.join(FAST_LOSSES)}; not {', '.join(unsupported)}")
    for name, default in (("ld_alpha", None), ("use_weighting", False), ("f_divergence_type", "reverse_kl"),
                          ("sync_ref_model", False), ("padding_free", False), ("use_liger_kernel", False)):
        if getattr(args, name, default) != default:
            raise UsageError(f"--fast does not implement --{name}; drop it or train without --fast")


def _check_margin(args: Any, dataset: Any, alpha: float, gamma: float) -> tuple[float, float] | None:
    """``(alpha, gamma)`` of margin DPO, ``None`` when both are 0 (plain DPO); refuses (one line) a
    margin without a sigmoid loss term, or ``alpha`` on rows without a ``granularity`` column."""
    if not alpha and not gamma:
        return None
    if "sigmoid" not in args.loss_type:
        raise UsageError("--margin_alpha / --margin_gamma apply to the sigmoid loss; add sigmoid to --loss_type")
    if alpha and MARGIN_COLUMN not in (getattr(dataset, "column_names", None) or ()):
        raise UsageError(f"--margin_alpha needs a {MARGIN_COLUMN!r} column (k, the number of elements a tuple names), "
                         f"which the trl view of FINER-Tuning has and this data has not; use --margin_gamma alone "
                         "or load the tuples with load_finer(..., view='trl')")
    return float(alpha), float(gamma)


class FastDPOTrainer(Trainer):
    """DPO with the packed step. ``model`` is a PEFT model (or a plain model with
    ``reference="cache"``); ``reference`` is ``"cache"`` (one inference pass, cached under
    ``reference_dir``, default ``<output_dir>/reference``) or ``"inline"``. Images larger than
    ``image_max_pixels`` are shrunk before the processor (:func:`~finer_datasets.train.data.cap_pixels`).
    ``margin_alpha`` / ``margin_gamma``: margin DPO (module docstring)."""

    loss_is_scaled_for_ga = False

    def __init__(self, model: Any, args: Any, train_dataset: Any, processing_class: Any, *,
                 eval_dataset: Any = None, reference: str = "cache", reference_dir: str | None = None,
                 callbacks: list | None = None, image_max_pixels: int | None = None, margin_alpha: float = 0.0,
                 margin_gamma: float = 0.0):
        check_fast_config(args)
        self._margin_params = _check_margin(args, train_dataset, margin_alpha, margin_gamma)
        if reference not in ("cache", "inline"):  # "none" is set below for a pure SFT loss
            raise UsageError(f"--reference must be cache or inline, not {reference!r}")
        args.remove_unused_columns = False
        args.label_names = []
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.policy = PackedPolicy(model)
        if getattr(args, "disable_dropout", False):  # as trl.DPOTrainer: LoRA dropout included
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        self.collator = PackedCollator(processing_class, max_length=args.max_length, pad_id=pad_id,
                                       max_pixels=image_max_pixels)
        self.raw_train_dataset = train_dataset
        super().__init__(model=self.policy, args=args, data_collator=self.collator,
                         train_dataset=_WithRows(train_dataset), eval_dataset=eval_dataset,
                         processing_class=processing_class, callbacks=callbacks)
        self.model_accepts_loss_kwargs = False
        self.beta, self.loss_types, self.loss_weights = args.beta, list(args.loss_type), args.loss_weights
        self.reference_mode = reference if any(t != "sft" for t in self.loss_types) else "none"  # SFT: no reference
        self.reference_dir = reference_dir or os.path.join(args.output_dir, "reference")
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    # -- reference pass ---------------------------------------------------------------------------

    def reference_cache(self) -> ReferenceCache:
        settings = {"processor": type(self.processing_class).__name__, "max_length": self.args.max_length,
                    **({"image_max_pixels": self.collator.max_pixels} if self.collator.max_pixels else {}),
                    "chat_template": getattr(self.processing_class, "chat_template", None),
                    "image_processor": getattr(getattr(self.processing_class, "image_processor", None), "to_dict",
                                               lambda: None)(),
                    "dtype": str(next(self.policy.parameters()).dtype), "bf16": self.args.bf16, "fp16": self.args.fp16}
        key = cache_key(model_fingerprint(self.policy.causal_lm), data_fingerprint(self.raw_train_dataset,
                                                                                   settings=settings))
        return ReferenceCache(self.reference_dir, key)

    def precompute_reference(self) -> None:
        """Fill the collator's reference log-probabilities from the cache or one inference pass."""
        if self.reference_mode != "cache" or self.collator.reference is not None:
            return
        if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
            logger.warning("DeepSpeed ZeRO-3 shards the model before training: reference log-probs are computed "
                           "inline instead of cached")
            self.reference_mode = "inline"
            return
        device = self.args.device
        self.policy.to(device)
        was_training = self.policy.training
        self.policy.eval()
        peft = hasattr(self.policy.model, "disable_adapter")

        def reference_fn(packed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            with self.accelerator.autocast():
                out = self.policy(with_policy=not peft, with_reference=peft, **packed)
            if peft:
                return out["ref_chosen_logps"], out["ref_rejected_logps"]
            return out["chosen_logps"], out["rejected_logps"]

        from accelerate.utils import gather_object

        state = self.accelerator.state
        batch = self.args.precompute_ref_batch_size or self.args.per_device_train_batch_size
        self.collator.reference = compute_reference_logps(
            reference_fn, self.collator.collate, self.raw_train_dataset, cache=self.reference_cache(),
            batch_size=batch, device=device, rank=state.process_index, world=state.num_processes,
            gather=gather_object, barrier=self.accelerator.wait_for_everyone,
            is_writer=self.accelerator.is_local_main_process, progress=self.accelerator.is_local_main_process)
        self.policy.train(was_training)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self.precompute_reference()
        return super().train(*args, **kwargs)

    # -- loss and metrics -------------------------------------------------------------------------

    def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        mode = "train" if self.policy.training else "eval"
        cached = "ref_chosen_logps" in inputs
        needed = self.reference_mode != "none"
        batch = {k: v for k, v in inputs.items() if k not in ("ref_chosen_logps", "ref_rejected_logps", MARGIN_COLUMN)}
        out = model(with_reference=needed and not cached, **batch)
        if not needed:
            ref_chosen = ref_rejected = torch.zeros_like(out["chosen_logps"]).detach()
        else:
            ref_chosen = inputs["ref_chosen_logps"] if cached else out["ref_chosen_logps"]
            ref_rejected = inputs["ref_rejected_logps"] if cached else out["ref_rejected_logps"]
        margin = self._margin(inputs, out["chosen_logps"])
        loss = dpo_loss(out["chosen_logps"], out["rejected_logps"], ref_chosen, ref_rejected, beta=self.beta,
                        n_tokens=inputs["n_tokens"], loss_types=self.loss_types, loss_weights=self.loss_weights,
                        margin=margin)
        if margin is not None:
            self._metrics[mode]["margin"].append(self.accelerator.gather_for_metrics(margin).float().mean().item())
        for name, value in reward_metrics(out, ref_chosen.to(out["chosen_logps"].dtype),
                                          ref_rejected.to(out["rejected_logps"].dtype), self.beta).items():
            self._metrics[mode][name].append(self.accelerator.gather_for_metrics(value).float().mean().item())
        return (loss, out) if return_outputs else loss

    def _margin(self, inputs: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor | None:
        """The (B,) instance margins of the micro-batch, or ``None`` for plain DPO."""
        if self._margin_params is None:
            return None
        alpha, gamma = self._margin_params
        if not alpha:
            return torch.full_like(like, gamma).detach()
        if MARGIN_COLUMN not in inputs:
            raise UsageError(f"--margin_alpha needs a {MARGIN_COLUMN!r} in every row; a batch came without it")
        return instance_margin(inputs[MARGIN_COLUMN].to(like.device, like.dtype), alpha, gamma)

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[torch.Tensor, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.policy.training else "eval"
        metrics = {k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v}
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)
        self._metrics[mode].clear()

    # -- saving: the PEFT adapter, as trl.DPOTrainer saves it ---------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        if state_dict is not None:  # the wrapper's state dict (DeepSpeed gathers it): strip "model."
            state_dict = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
        self.policy.model.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = os.path.join(resume_from_checkpoint, "adapter_model.safetensors")
        if not hasattr(self.policy.model, "peft_config") or not os.path.exists(path):
            raise UsageError(f"--resume_from_checkpoint {resume_from_checkpoint}: no adapter_model.safetensors")
        set_peft_model_state_dict(self.policy.model, load_file(path))
