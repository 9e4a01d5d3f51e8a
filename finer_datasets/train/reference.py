"""Reference log-probabilities, computed once in an inference pass and cached on disk.

The reference model of DPO is frozen, so ``log pi_ref(a+|x,q)`` and ``log pi_ref(a-|x,q)`` are
fixed numbers per tuple: they are computed once, packed, without gradient and with the adapter
disabled, instead of in every training step. The cache file is keyed by a fingerprint of the model
(class, config, a sample of the base weights, dtype) and of the data (the dataset fingerprint and
the tokenisation settings): another model or other data never reads a stale cache.

Writes are atomic (temporary file + ``os.replace``). Each process saves its progress every
``flush_every`` batches, so a killed pass resumes where it stopped; the finished cache is one file
``ref-logps-<key>.pt`` and the progress files are then removed. Under ``accelerate`` every process
computes a strided share of the rows and the shares are gathered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

__all__ = ["model_fingerprint", "data_fingerprint", "cache_key", "ReferenceCache", "compute_reference_logps"]

logger = logging.getLogger("finer.train.reference")


def model_fingerprint(model: torch.nn.Module, *, samples: int = 16, elements: int = 1024) -> str:
    """A hash of the model class, its config, the dtype and a sample of the frozen weights
    (``samples`` tensors spread over the model, their first ``elements`` values; adapters excluded)."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    h.update(type(model).__name__.encode())
    if config is not None:
        h.update(config.to_json_string(use_diff=False).encode())
    named = [(n, p) for n, p in model.named_parameters() if "lora_" not in n and "modules_to_save" not in n]
    picks = sorted({round(i * (len(named) - 1) / max(samples - 1, 1)) for i in range(min(samples, len(named)))})
    for i in picks:
        name, p = named[i]
        h.update(name.encode())
        h.update(str(p.dtype).encode())
        h.update(p.detach().reshape(-1)[:elements].float().cpu().numpy().tobytes())
    return h.hexdigest()


def data_fingerprint(dataset: Any, *, settings: dict[str, Any]) -> str:
    """A hash of the dataset (its ``datasets`` fingerprint and length) and the tokenisation
    ``settings`` (chat template, max_length, processor configuration...)."""
    h = hashlib.sha256()
    h.update(str(getattr(dataset, "_fingerprint", None)).encode())
    h.update(str(len(dataset)).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_key(model_fp: str, data_fp: str) -> str:
    return hashlib.sha256(f"{model_fp}:{data_fp}".encode()).hexdigest()[:20]


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class ReferenceCache:
    """The cache files of one key in ``directory``."""

    def __init__(self, directory: str | Path, key: str):
        self.directory = Path(directory)
        self.key = key
        self.path = self.directory / f"ref-logps-{key}.pt"

    def part(self, rank: int, world: int) -> Path:
        return self.directory / f"ref-logps-{self.key}.part{rank}of{world}.pt"

    def load(self, n_rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(chosen, rejected)`` float32 (n_rows,) if the finished cache exists and matches."""
        if not self.path.exists():
            return None
        data = torch.load(self.path, weights_only=True)
        if data["key"] != self.key or data["chosen"].shape[0] != n_rows:
            logger.warning("ignoring %s: it does not match this model and data", self.path)
            return None
        return data["chosen"], data["rejected"]

    def save(self, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_save({"key": self.key, "chosen": chosen.float().cpu(), "rejected": rejected.float().cpu()}, self.path)

    def load_part(self, rank: int, world: int) -> dict[int, tuple[float, float]]:
        path = self.part(rank, world)
        if not path.exists():
            return {}
        data = torch.load(path, weights_only=True)
        return {int(r): (float(c), float(j)) for r, c, j in zip(data["rows"], data["chosen"], data["rejected"])}

    def save_part(self, rank: int, world: int, done: dict[int, tuple[float, float]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        rows = sorted(done)
        _atomic_save({"rows": torch.tensor(rows, dtype=torch.long),
                      "chosen": torch.tensor([done[r][0] for r in rows]),
                      "rejected": torch.tensor([done[r][1] for r in rows])}, self.part(rank, world))

    def remove_parts(self) -> None:
        for path in self.directory.glob(f"ref-logps-{self.key}.part*of*.pt"):
            path.unlink(missing_ok=True)


def compute_reference_logps(
    reference_fn: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
    collate: Callable[[list[dict[str, Any]], Sequence[int]], dict[str, torch.Tensor]],
    dataset: Any,
    *,
    cache: ReferenceCache | None,
    batch_size: int,
    device: torch.device | str,
    rank: int = 0,
    world: int = 1,
    gather: Callable[[list], list] | None = None,
    barrier: Callable[[], None] | None = None,
    is_writer: bool = True,
    flush_every: int = 50,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference ``(chosen, rejected)`` log-probabilities of every row of ``dataset``, float32 on the CPU.

    ``reference_fn(packed)`` returns them for one packed micro-batch (on ``device``);
    ``collate(examples, rows)`` packs rows. With a ``cache`` a finished cache is read instead of
    computing, and progress is saved every ``flush_every`` batches; ``gather`` (e.g.
    ``accelerate.utils.gather_object``) and ``barrier`` combine the shares of ``world`` processes;
    only ``is_writer`` writes the finished file."""
    from tqdm.auto import tqdm

    n = len(dataset)
    if cache is not None:
        found = cache.load(n)
        if found is not None:
            logger.info("reference log-probs read from %s", cache.path)
            return found
    done = cache.load_part(rank, world) if cache is not None else {}
    todo = [r for r in range(rank, n, world) if r not in done]
    if done:
        logger.info("reference pass resumes: %d rows done, %d to go", len(done), len(todo))
    batches = [todo[i: i + batch_size] for i in range(0, len(todo), batch_size)]
    with torch.no_grad():
        for count, rows in enumerate(tqdm(batches, desc="reference log-probs", unit="batch", disable=not progress), 1):
            packed = collate([dataset[r] for r in rows], rows)
            packed = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in packed.items()}
            chosen, rejected = reference_fn(packed)
            for r, c, j in zip(rows, chosen.float().tolist(), rejected.float().tolist()):
                done[r] = (c, j)
            if cache is not None and count % flush_every == 0:
                cache.save_part(rank, world, done)
    if cache is not None and todo:
        cache.save_part(rank, world, done)
    items = list(done.items())
    if gather is not None and world > 1:
        items = gather(items)
    values = dict(items)
    missing = [r for r in range(n) if r not in values]
    if missing:
        raise RuntimeError(f"reference pass incomplete: {len(missing)} rows missing (first {missing[:5]})")
    chosen = torch.tensor([values[r][0] for r in range(n)], dtype=torch.float32)
    rejected = torch.tensor([values[r][1] for r in range(n)], dtype=torch.float32)
    if cache is not None:
        if is_writer:
            cache.save(chosen, rejected)
        if barrier is not None:
            barrier()
        if is_writer:
            cache.remove_parts()
    return chosen, rejected
