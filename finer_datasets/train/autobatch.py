"""The largest micro-batch that trains without gradient checkpointing on this accelerator.

Gradient checkpointing recomputes every layer's forward during the backward pass (about a third
more compute); on an H100 a 7B model with LoRA and FINER-size tuples fits useful micro-batches
without it. :func:`largest_micro_batch` tries one forward + backward of the packed step on the
longest rows of the data, halving the micro-batch on out-of-memory, and switches gradient
checkpointing on only when not even one tuple fits.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch

__all__ = ["largest_micro_batch", "accumulation_steps", "reduce_min"]

logger = logging.getLogger("finer.train.autobatch")


def accumulation_steps(global_batch: int, micro_batch: int, world: int) -> int:
    """Gradient-accumulation steps giving ``global_batch`` = micro x steps x processes.
    Raises ``ValueError`` when it does not divide."""
    per_step = micro_batch * world
    if global_batch % per_step:
        raise ValueError(f"global batch {global_batch} is not a multiple of micro-batch {micro_batch} x {world} "
                         f"process(es)")
    return global_batch // per_step


def reduce_min(value: int) -> int:
    """The smallest ``value`` over the processes of a ``torch.distributed`` run (``value`` alone)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], device="cuda" if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def _fits(policy: Any, packed: dict[str, torch.Tensor], reference_inline: bool) -> bool:
    try:
        out = policy(with_reference=reference_inline, **packed)
        (out["chosen_logps"].sum() - out["rejected_logps"].sum()).backward()
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        policy.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


def largest_micro_batch(policy: Any, collate: Callable[[list[dict[str, Any]], Sequence[int]], dict],
                        dataset: Any, *, start: int, device: torch.device | str, reference_inline: bool = False,
                        probe_rows: int = 256, reduce_min: Callable[[int], int] | None = None) -> tuple[int, bool]:
    """``(micro_batch, gradient_checkpointing)``: the largest power-of-two fraction of ``start``
    whose packed step fits in memory on the longest of the first ``probe_rows`` rows (by text
    length), gradient checkpointing only if even 1 does not fit. Without CUDA it returns
    ``(start, False)`` untried. ``reduce_min`` makes all processes agree (the smallest wins)."""
    if not torch.cuda.is_available() or torch.device(device).type != "cuda":
        return start, False
    n = min(probe_rows, len(dataset))
    texts = [len(str(dataset[i]["prompt"])) + max(len(str(dataset[i]["chosen"])), len(str(dataset[i]["rejected"])))
             for i in range(n)]
    longest = sorted(range(n), key=lambda i: -texts[i])
    policy.to(device).train()
    checkpointing = False
    size = start
    while True:
        rows = [longest[i % len(longest)] for i in range(size)]
        packed = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                  for k, v in collate([dataset[r] for r in rows], rows).items()}
        if _fits(policy, packed, reference_inline):
            break
        if size > 1:
            size //= 2
            continue
        if checkpointing:
            raise torch.cuda.OutOfMemoryError("one tuple does not fit even with gradient checkpointing")
        logger.warning("one tuple does not fit without gradient checkpointing: turning it on")
        policy.activation_checkpointing_enable({"use_reentrant": False})
        checkpointing, size = True, start
    if reduce_min is not None:
        size = reduce_min(size)
    logger.info("micro-batch %d (gradient checkpointing %s)", size, "on" if checkpointing else "off")
    return size, checkpointing
