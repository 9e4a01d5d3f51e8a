"""The fast DPO step: packed ``[prompt | chosen | rejected]`` rows, the vision tower once per image,
log-probabilities on answer tokens only, and the DPO losses.

:class:`PackedPolicy` is an ``nn.Module`` around the (PEFT) vision-language model whose
``forward`` does the whole computation, so ``accelerate`` can wrap it (DDP, DeepSpeed) and the
gradients are synchronised as for any model. Per micro-batch it

1. runs the vision encoder (+ projector) once per image, without gradient when the encoder has no
   trainable parameter (the FINER-Tuning LoRA targets the language model only);
2. runs the language model once on the packed rows (block mask, continued positions) and gathers
   the log-probabilities of the answer tokens;
3. with ``with_reference=True``, runs it once more without gradient and with the adapter
   disabled, reusing the image features: the reference log-probabilities when they are not cached.

:func:`dpo_loss` gives TRL's ``sigmoid`` (the paper's loss), ``hinge``, ``ipo`` and ``sft`` losses
with TRL's reductions, so the loss and the LoRA gradients equal those of ``trl.DPOTrainer``.

Margin DPO (an experiment, off by default): the sigmoid loss with an instance margin,
``-log σ(β·Δr − m)`` with ``m = α·g + γ`` (:func:`instance_margin`; the margin term of RP-DPO,
GranFact Eq. 11-12), g the tuple's granularity (k, the number of elements it names: the
``granularity`` column of the ``trl`` view), so that finer negatives must be separated by more.
With m = 0 it is the plain loss exactly.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from finer_datasets.errors import UsageError
from finer_datasets.train.packing import (
    block_mask,
    gather_logps,
    packed_positions,
    split_pairs,
)

__all__ = ["PackedPolicy", "dpo_loss", "instance_margin", "FAST_LOSSES", "reward_metrics", "MARGIN_COLUMN"]

FAST_LOSSES = ("sigmoid", "hinge", "ipo", "sft")
MARGIN_COLUMN = "granularity"  # the per-tuple score g of margin DPO (a column of the trl view)
_IMAGE_KEYS_SKIP = ("input_ids", "segment", "pos_shift", "mm_token_type_ids", "lp_row", "lp_src", "lp_tgt", "lp_seq",
                    "n_tokens", "rows", "ref_chosen_logps", "ref_rejected_logps", MARGIN_COLUMN)


def _is_peft(model: Any) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class PackedPolicy(nn.Module):
    """Packed forward of a vision-language model (a ``PeftModel`` or a plain ``PreTrainedModel``).

    ``forward(**packed, with_reference=False)`` returns a dict with ``chosen_logps`` and
    ``rejected_logps`` (B,), summed over answer tokens, and, with ``with_reference=True``,
    ``ref_chosen_logps`` / ``ref_rejected_logps`` computed with the adapter disabled."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        lm = self.causal_lm
        self._base_name = lm.base_model_prefix
        base = getattr(lm, self._base_name, None)
        if base is None or not hasattr(base, "get_image_features") or not hasattr(base, "language_model"):
            raise UsageError(f"--fast does not support {type(lm).__name__}: it needs a vision-language model with "
                             "get_image_features and a language_model (transformers 5 layout)")
        attn = getattr(lm.config.get_text_config(), "_attn_implementation", None) or "sdpa"
        if attn not in ("sdpa", "eager"):
            raise UsageError(f"--fast needs attn_implementation sdpa or eager (a block attention mask), not {attn}")
        self._eager = attn == "eager"

    # -- the wrapped model ------------------------------------------------------------------------

    @property
    def causal_lm(self) -> nn.Module:
        """The ``...ForConditionalGeneration`` model under the PEFT wrapper."""
        return self.model.get_base_model() if _is_peft(self.model) else self.model

    @property
    def config(self) -> Any:
        return self.causal_lm.config

    def _base(self) -> nn.Module:
        return getattr(self.causal_lm, self._base_name)

    def vision_trainable(self) -> bool:
        """Whether any parameter outside the language model and LM head is trained."""
        return any(p.requires_grad for name, p in self._base().named_parameters()
                   if not name.startswith("language_model."))

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict | None = None,
                                        every_n_layers: int = 1, offload: bool = False) -> None:
        """Checkpoint the decoder layers of the wrapped model (what ``Trainer`` calls)."""
        kwargs = activation_checkpointing_kwargs or {"use_reentrant": False}
        lm = self.causal_lm
        if hasattr(lm, "activation_checkpointing_enable"):
            lm.activation_checkpointing_enable(kwargs, every_n_layers=every_n_layers, offload=offload)
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if kwargs.get("use_reentrant", True) and hasattr(self.model, "enable_input_require_grads"):
            self.model.enable_input_require_grads()

    # -- forward ----------------------------------------------------------------------------------

    def _adapter_off(self) -> contextlib.AbstractContextManager:
        if _is_peft(self.model):
            return self.model.disable_adapter()
        raise UsageError("the reference forward needs a PEFT adapter to disable; without PEFT use the cached "
                         "reference log-probabilities (--precompute_ref_log_probs)")

    def image_features(self, packed: dict[str, torch.Tensor]) -> Any:
        """The image encoder outputs for the micro-batch (each image once)."""
        image_inputs = {k: v for k, v in packed.items() if k not in _IMAGE_KEYS_SKIP}
        return self._base().get_image_features(**image_inputs, return_dict=True)

    def _logps(self, packed: dict[str, torch.Tensor], features: Any, positions: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        out = self._base()(input_ids=packed["input_ids"], attention_mask=mask, position_ids=positions,
                           mm_encoder_outputs={"image": features}, use_cache=False)
        return gather_logps(out.last_hidden_state, self.causal_lm.get_output_embeddings(), packed,
                            2 * packed["input_ids"].shape[0])

    def forward(self, with_reference: bool = False, with_policy: bool = True, **packed: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        base = self._base()
        dtype = next(base.language_model.parameters()).dtype
        mask = block_mask(packed["segment"], dtype if self._eager else None)
        positions = packed_positions(base, packed)
        out: dict[str, torch.Tensor] = {}
        shared = not self.vision_trainable()
        features = None
        if shared or not with_policy:
            with torch.no_grad():
                features = self.image_features(packed)
        if with_policy:
            feats = features if shared else self.image_features(packed)
            out["chosen_logps"], out["rejected_logps"] = split_pairs(self._logps(packed, feats, positions, mask))
        if with_reference:
            with torch.no_grad(), self._adapter_off():
                if features is None:  # a trained vision encoder: the reference needs its own features
                    features = self.image_features(packed)
                ref = self._logps(packed, features, positions, mask)
            out["ref_chosen_logps"], out["ref_rejected_logps"] = split_pairs(ref.detach())
        return out


def instance_margin(granularity: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """The instance margin of margin DPO, ``m = alpha * g + gamma`` per tuple."""
    return alpha * granularity + gamma


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, *, beta: float, n_tokens: torch.Tensor,
             loss_types: Sequence[str] = ("sigmoid",), loss_weights: Sequence[float] | None = None,
             margin: torch.Tensor | None = None) -> torch.Tensor:
    """TRL's DPO losses, averaged over the micro-batch (``n_tokens``: (2B,) interleaved answer
    lengths, used by ``ipo`` and ``sft``). ``margin`` ((B,), :func:`instance_margin`) turns the
    ``sigmoid`` term into ``-log σ(β·Δr − m)``; the other loss types do not take it. Raises
    :class:`UsageError` for a loss not in :data:`FAST_LOSSES`."""
    chosen_ratio = chosen_logps - ref_chosen_logps.to(chosen_logps.dtype)
    rejected_ratio = rejected_logps - ref_rejected_logps.to(rejected_logps.dtype)
    delta = chosen_ratio - rejected_ratio
    n_chosen, n_rejected = split_pairs(n_tokens.to(chosen_logps.dtype))
    weights = list(loss_weights) if loss_weights else [1.0] * len(loss_types)
    if len(weights) != len(loss_types):
        raise UsageError(f"--loss_weights has {len(weights)} values for {len(loss_types)} loss types")
    total = chosen_logps.new_zeros(())
    for loss_type, weight in zip(loss_types, weights):
        if loss_type == "sigmoid":
            logits = beta * delta if margin is None else beta * delta - margin.to(delta.dtype)
            per_tuple = -F.logsigmoid(logits)
        elif loss_type == "hinge":
            per_tuple = torch.relu(1 - beta * delta)
        elif loss_type == "ipo":
            per_tuple = (chosen_ratio / n_chosen.clamp(min=1) - rejected_ratio / n_rejected.clamp(min=1)
                         - 1 / (2 * beta)) ** 2
        elif loss_type == "sft":  # mean negative log-likelihood over all chosen tokens of the micro-batch
            per_tuple = (-chosen_logps.sum() / n_chosen.sum().clamp(min=1)).expand_as(chosen_logps)
        else:
            raise UsageError(f"--fast supports the loss types {', '.join(FAST_LOSSES)}, not {loss_type!r}")
        total = total + per_tuple.mean() * weight
    return total


def reward_metrics(out: dict[str, torch.Tensor], ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
                   beta: float) -> dict[str, torch.Tensor]:
    """TRL's logged quantities for one micro-batch, as (B,) tensors (detached)."""
    chosen_rewards = beta * (out["chosen_logps"].detach() - ref_chosen)
    rejected_rewards = beta * (out["rejected_logps"].detach() - ref_rejected)
    return {"rewards/chosen": chosen_rewards, "rewards/rejected": rejected_rewards,
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
            "rewards/margins": chosen_rewards - rejected_rewards,
            "logps/chosen": out["chosen_logps"].detach(), "logps/rejected": out["rejected_logps"].detach()}
