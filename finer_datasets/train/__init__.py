"""DPO training on FINER-Tuning tuples (torch, transformers and peft are imported lazily).

    data.py       the tuple format (TRL's conversational vision preference format), JSONL loading with
                  located errors, and the rendering/tokenisation of one tuple exactly as TRL does it
    packing.py    one packed row per tuple, ``[prompt | chosen | rejected]``, with the block attention
                  mask and the positions of ``rejected`` continuing from the prompt (Qwen2.5-VL's 3-D
                  rotary positions included); log-probabilities gathered on answer tokens only
    reference.py  reference log-probabilities computed once in an inference pass and cached on disk,
                  keyed by a model + data fingerprint (atomic writes, resumable)
    fast_dpo.py   the packed forward (vision tower once per image) and the DPO losses
    trainer.py    :class:`FastDPOTrainer`, a ``transformers.Trainer`` (so ``accelerate launch``, DDP and
                  DeepSpeed work unchanged) that runs the packed step with TRL's ``DPOConfig``
    autobatch.py  the largest micro-batch that fits without gradient checkpointing
    options.py    baselines/train_dpo.py's command line: TRL's parser with one-line errors, a checked
                  --config, numbers checked at parse time, bf16 -> float32 where bf16 cannot run

``import finer_datasets.train`` stays light; the submodules import torch when they are imported.
"""

from __future__ import annotations

__all__ = ["data", "packing", "reference", "fast_dpo", "trainer", "autobatch", "options"]
