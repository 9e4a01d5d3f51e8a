"""One packed row per preference tuple: ``[prompt | chosen | rejected]``.

Chosen and rejected answers share their prompt (image + question, ~93% of the tokens of a FINER
tuple), so the prompt is run once. Within a row:

* prompt and chosen tokens attend causally, as in the sequence ``prompt + chosen``;
* rejected tokens attend to the prompt and causally to earlier rejected tokens, never to chosen;
* rejected positions continue from the end of the prompt (the positions of ``prompt + rejected``);
  for multimodal rotary positions (Qwen2-VL / Qwen2.5-VL) every text position after the prompt is
  ``last prompt position + 1 + k`` in all three sections, so the same shift applies.

So every chosen and rejected token sees exactly the context it has in TRL's layout (two separate
sequences), and its log-probability is the same up to floating-point rounding. The first token of
both answers is predicted from the hidden state of the last prompt token. Log-probabilities are
computed for answer tokens only: the LM head runs on the gathered hidden states of the tokens that
predict them, never on the prompt.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from finer_datasets.train.data import EncodedBatch

__all__ = ["SEG_PAD", "SEG_PROMPT", "SEG_CHOSEN", "SEG_REJECTED", "pack", "block_mask", "packed_positions",
           "gather_logps"]

SEG_PAD, SEG_PROMPT, SEG_CHOSEN, SEG_REJECTED = -1, 0, 1, 2


def pack(batch: EncodedBatch, *, pad_id: int, pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """The packed, right-padded micro-batch.

    Returns ``input_ids`` and ``segment`` (B, L); ``pos_shift`` (B, L): what to subtract from the
    positions of ``prompt+chosen+rejected`` read as one sequence (the chosen length, on rejected
    tokens); ``mm_token_type_ids`` when the processor gives them; the image tensors; and the
    answer-token index: ``lp_row``, ``lp_src`` (position of the hidden state that predicts the
    token), ``lp_tgt`` (the token id), ``lp_seq`` (``2*b`` for chosen, ``2*b+1`` for rejected) and
    ``n_tokens`` (2B,), the answer lengths; ``rows`` (B,) the dataset rows."""
    tuples = batch.tuples
    lengths = [len(t.prompt_ids) + len(t.chosen_ids) + len(t.rejected_ids) for t in tuples]
    width = max(lengths)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    n = len(tuples)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    segment = torch.full((n, width), SEG_PAD, dtype=torch.int8)
    pos_shift = torch.zeros((n, width), dtype=torch.long)
    has_types = tuples[0].mm_token_type_ids is not None
    mm_types = torch.zeros((n, width), dtype=torch.long) if has_types else None
    lp_row, lp_src, lp_tgt, lp_seq, n_tokens = [], [], [], [], []
    for b, t in enumerate(tuples):
        p, c, r = len(t.prompt_ids), len(t.chosen_ids), len(t.rejected_ids)
        input_ids[b, : p + c + r] = torch.tensor(t.prompt_ids + t.chosen_ids + t.rejected_ids)
        segment[b, :p] = SEG_PROMPT
        segment[b, p: p + c] = SEG_CHOSEN
        segment[b, p + c: p + c + r] = SEG_REJECTED
        pos_shift[b, p + c: p + c + r] = c
        if has_types:
            mm_types[b, :p] = torch.tensor(t.mm_token_type_ids)
        # chosen token k (position p+k) is predicted by position p+k-1
        lp_src += list(range(p - 1, p + c - 1))
        lp_tgt += t.chosen_ids
        lp_seq += [2 * b] * c
        # rejected token 0 is predicted by the last prompt token, token k>0 by the previous rejected one
        lp_src += [p - 1] + list(range(p + c, p + c + r - 1))
        lp_tgt += t.rejected_ids
        lp_seq += [2 * b + 1] * r
        lp_row += [b] * (c + r)
        n_tokens += [c, r]
    out = {"input_ids": input_ids, "segment": segment, "pos_shift": pos_shift,
           "lp_row": torch.tensor(lp_row), "lp_src": torch.tensor(lp_src), "lp_tgt": torch.tensor(lp_tgt),
           "lp_seq": torch.tensor(lp_seq), "n_tokens": torch.tensor(n_tokens),
           "rows": torch.tensor([t.row for t in tuples])}
    if has_types:
        out["mm_token_type_ids"] = mm_types
    out.update(batch.image_inputs)
    return out


def block_mask(segment: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The (B, 1, L, L) attention mask of packed rows: ``True`` where a query may attend a key.

    With ``dtype`` (for eager attention) the mask is additive: 0 where allowed, the dtype's
    minimum elsewhere. Padding queries attend to the prompt only (their outputs are never read)."""
    width = segment.shape[1]
    q = segment[:, :, None].long()
    k = segment[:, None, :].long()
    causal = torch.ones(width, width, dtype=torch.bool, device=segment.device).tril()
    allowed = causal[None] & (k != SEG_PAD) & ((k == SEG_PROMPT) | (k == q))
    allowed = allowed[:, None]
    if dtype is None:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=segment.device).masked_fill(~allowed, torch.finfo(dtype).min)


def packed_positions(model: Any, packed: dict[str, torch.Tensor]) -> torch.Tensor:
    """Position ids for packed rows: (B, L), or (3, B, L) for models with ``get_rope_index``
    (multimodal rotary positions), with rejected positions continuing from the prompt."""
    input_ids, segment, shift = packed["input_ids"], packed["segment"], packed["pos_shift"]
    if hasattr(model, "get_rope_index") and "mm_token_type_ids" in packed:
        positions, _ = model.get_rope_index(
            input_ids, mm_token_type_ids=packed["mm_token_type_ids"], image_grid_thw=packed.get("image_grid_thw"),
            attention_mask=(segment != SEG_PAD).long())
        return positions - shift[None]
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
    return positions - shift


def gather_logps(hidden: torch.Tensor, lm_head: Any, packed: dict[str, torch.Tensor], n_sequences: int,
                 *, chunk: int = 4096) -> torch.Tensor:
    """Summed log-probabilities of each answer (``n_sequences`` = 2B: chosen, rejected per tuple).

    Only the hidden states that predict answer tokens go through the LM head, in chunks of
    ``chunk`` tokens, and the log-softmax is taken in float32."""
    src = hidden[packed["lp_row"], packed["lp_src"]]
    targets = packed["lp_tgt"]
    pieces = []
    for start in range(0, src.shape[0], chunk):
        logits = lm_head(src[start: start + chunk]).float()
        tgt = targets[start: start + chunk]
        pieces.append(logits.gather(1, tgt[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1))
    per_token = torch.cat(pieces)
    sums = torch.zeros(n_sequences, dtype=per_token.dtype, device=per_token.device)
    return sums.index_add(0, packed["lp_seq"], per_token)


def split_pairs(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(2B,) interleaved ``[c0, r0, c1, r1, ...]`` -> ``(chosen (B,), rejected (B,))``."""
    return values[0::2], values[1::2]


def lengths(packed: dict[str, torch.Tensor]) -> Sequence[int]:
    """Real (unpadded) length of each packed row."""
    return (packed["segment"] != SEG_PAD).sum(1).tolist()
