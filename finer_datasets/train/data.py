"""FINER-Tuning preference tuples in TRL's conversational vision format, and their tokenisation.

One tuple ``(x, q, a+, a-)`` is one row with the columns of TRL's vision preference format (the
layout of ``HuggingFaceH4/rlaif-v_formatted``)::

    images    [PIL image]                                                      (exactly one)
    prompt    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
    chosen    [{"role": "assistant", "content": [{"type": "text", "text": a+}]}]
    rejected  [{"role": "assistant", "content": [{"type": "text", "text": a-}]}]

Optional columns used by the ablation presets: ``subset`` (``obj``, ``attr``, ``rel``, ``wh``) and
``query_type`` (``positive`` or ``negative``: whether ``q`` is a positive or a negative query).

:func:`render_texts` and :func:`encode_batch` reproduce TRL's own preparation (``DPOTrainer`` with a
vision dataset): the prompt is the chat template with the generation prompt, cut at the longest
common prefix with the rendered prompt+chosen and prompt+rejected conversations; each completion is
the rest of its conversation, tokenised alone without special tokens; ``prompt+completion`` is cut
at ``max_length`` tokens (``keep_start``). The exactness tests check this against TRL itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from finer_datasets.errors import SourceError, UsageError
from finer_datasets.preference.construct import QUERIES, TYPES

__all__ = [
    "TUPLE_COLUMNS",
    "EncodedTuple",
    "check_tuple",
    "load_tuples_jsonl",
    "render_texts",
    "encode_batch",
    "cap_pixels",
    "PixelCapCollator",
    "select_tuples",
    "SUBSETS",
    "QUERY_TYPES",
]

TUPLE_COLUMNS = ("images", "prompt", "chosen", "rejected")
OPTIONAL_COLUMNS = ("subset", "query_type")
#: values of the optional columns: FINER-Tuning's types (SUBSETS) and whether the question's premise holds
#: (QUERY_TYPES), as the tuples are built
SUBSETS, QUERY_TYPES = TYPES, QUERIES


@dataclass
class EncodedTuple:
    """Token ids of one tuple; ``prompt_ids`` include the image placeholder tokens."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    mm_token_type_ids: list[int] | None = None  # per prompt token, for models with multimodal rotary positions
    row: int = -1  # index of the row in its dataset (the key of its cached reference log-probs)


@dataclass
class EncodedBatch:
    """Encoded tuples plus the image tensors of their prompts, in row order (one image per tuple)."""

    tuples: list[EncodedTuple]
    image_inputs: dict[str, Any] = field(default_factory=dict)


def _check_messages(value: Any, role: str, *, path: Any, record: Any, name: str) -> None:
    if not isinstance(value, list) or not value:
        raise SourceError("must be a non-empty list of messages", path=path, record=record, field=name)
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "system"):
            raise SourceError(f"message {i} needs a role (user, assistant or system)", path=path, record=record,
                              field=name)
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not all(isinstance(c, dict) and c.get("type") in ("text", "image")
                                                    for c in content):
            raise SourceError(f"message {i}: content must be a string or a list of {{'type': 'text'|'image'}} parts",
                              path=path, record=record, field=name)
        for c in content:
            if c["type"] == "text" and not isinstance(c.get("text"), str):
                raise SourceError(f"message {i}: a text part needs a string 'text'", path=path, record=record,
                                  field=name)
    if value[-1]["role"] != role:
        raise SourceError(f"the last message must have role {role!r}", path=path, record=record, field=name)


def check_tuple(example: dict[str, Any], *, path: Any = None, record: Any = None) -> None:
    """Raise :class:`SourceError` naming ``path``, ``record`` and the field if ``example`` is not a
    valid tuple (the four columns, one image, conversational prompt and answers)."""
    for name in TUPLE_COLUMNS:
        if name not in example:
            raise SourceError("missing", path=path, record=record, field=name)
    images = example["images"]
    if not isinstance(images, list) or len(images) != 1:
        raise SourceError("must be a list of exactly one image", path=path, record=record, field="images")
    _check_messages(example["prompt"], "user", path=path, record=record, name="prompt")
    n_placeholders = sum(1 for m in example["prompt"] if isinstance(m["content"], list)
                         for c in m["content"] if c["type"] == "image")
    if n_placeholders > 1:
        raise SourceError("has more than one image placeholder", path=path, record=record, field="prompt")
    for name in ("chosen", "rejected"):
        _check_messages(example[name], "assistant", path=path, record=record, name=name)


def load_tuples_jsonl(path: str | Path) -> Any:
    """A ``datasets.Dataset`` of tuples from a JSONL file (one tuple per line, the columns above;
    ``images`` holds paths relative to the file). Every line is checked first: a bad line raises
    :class:`SourceError` naming the file, the line number and the field."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--dataset {path}: no such file")
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"not JSON ({e.msg})", path=path, record=f"line {number}") from None
            if not isinstance(row, dict):
                raise SourceError("not a JSON object", path=path, record=f"line {number}")
            check_tuple(row, path=path, record=f"line {number}")
            image = row["images"][0]
            if not isinstance(image, str):
                raise SourceError("must be a path (relative to the file)", path=path, record=f"line {number}",
                                  field="images")
            image_path = (path.parent / image).resolve()
            if not image_path.is_file():
                raise SourceError(f"image file {image} not found", path=path, record=f"line {number}", field="images")
            out = {name: row[name] for name in TUPLE_COLUMNS}
            out["images"] = [str(image_path)]
            for name in OPTIONAL_COLUMNS:
                if name in row:
                    out[name] = row[name]
            rows.append(out)
    if not rows:
        raise SourceError("no tuples", path=path)
    present = [name for name in OPTIONAL_COLUMNS if name in rows[0]]
    for number, row in enumerate(rows, start=1):
        if [name for name in OPTIONAL_COLUMNS if name in row] != present:
            raise SourceError(f"every line must have the same optional columns ({present})", path=path,
                              record=f"tuple {number}")
    messages = [{"role": datasets.Value("string"),
                 "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}]
    features = datasets.Features({"images": datasets.List(datasets.Image()), "prompt": messages,
                                  "chosen": messages, "rejected": messages,
                                  **{name: datasets.Value("string") for name in present}})
    for row in rows:  # one schema for every content part: text parts and image placeholders
        for name in ("prompt", "chosen", "rejected"):
            row[name] = [{"role": m["role"], "content": _structured(m["content"])} for m in row[name]]
    return datasets.Dataset.from_list(rows, features=features)


def _structured(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [{"type": c["type"], "text": c.get("text") if c["type"] == "text" else None} for c in content]


def _messages(messages: Sequence[dict[str, Any]], n_images: int) -> list[dict[str, Any]]:
    """Messages with list contents; string contents of the first user turn get the image
    placeholders in front (what TRL does for string prompts). ``None`` texts of image parts go."""
    out, placed = [], any(isinstance(m["content"], list) and any(c["type"] == "image" for c in m["content"])
                          for m in messages)
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
            if m["role"] == "user" and not placed:
                parts = [{"type": "image"}] * n_images + parts
                placed = True
        else:
            parts = [{"type": "image"} if c["type"] == "image" else {"type": "text", "text": c["text"]} for c in content]
        out.append({"role": m["role"], "content": parts})
    return out


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def render_texts(processor: Any, example: dict[str, Any]) -> tuple[str, str, str]:
    """``(prompt, chosen, rejected)`` as text: the prompt with the generation prompt, cut at its
    longest common prefix with both full conversations, and each completion as the rest."""
    n_images = len(example.get("images") or [])
    prompt = _messages(example["prompt"], n_images)
    chosen, rejected = _messages(example["chosen"], 0), _messages(example["rejected"], 0)
    prompt_text = processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_chosen = processor.apply_chat_template(prompt + chosen, tokenize=False)
    full_rejected = processor.apply_chat_template(prompt + rejected, tokenize=False)
    prompt_text = _common_prefix(_common_prefix(prompt_text, full_chosen), full_rejected)
    return prompt_text, full_chosen[len(prompt_text):], full_rejected[len(prompt_text):]


def cap_pixels(image: Any, max_pixels: int | None) -> Any:
    """``image`` (PIL) shrunk to at most ``max_pixels`` pixels, aspect ratio kept (both sides scaled by
    sqrt(max_pixels / pixels), rounded down; bicubic), as LLaMA-Factory's ``image_max_pixels`` does
    before the processor; an image within the cap, or no cap, is returned as it is."""
    if not max_pixels:
        return image
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    width, height = max(1, int(width * scale)), max(1, int(height * scale))
    if width * height > max_pixels:  # a side held at 1 pixel (extreme aspect ratio): shorten the other
        width, height = (width, max_pixels // width) if height > width else (max_pixels // height, height)
    from PIL import Image

    return image.resize((width, height), Image.Resampling.BICUBIC)


class PixelCapCollator:
    """A collator that first caps every image of the examples (:func:`cap_pixels`) and then calls
    ``collator`` (e.g. TRL's vision preference collator); the dataset itself is not rewritten."""

    def __init__(self, collator: Any, max_pixels: int | None):
        self.collator, self.max_pixels = collator, max_pixels

    def __call__(self, examples: list[dict[str, Any]]) -> Any:
        capped = []
        for ex in examples:
            ex = dict(ex)
            if "images" in ex:
                ex["images"] = [cap_pixels(img, self.max_pixels) for img in ex["images"]]
            if "image" in ex:
                ex["image"] = cap_pixels(ex["image"], self.max_pixels)
            capped.append(ex)
        return self.collator(capped)


def encode_batch(processor: Any, examples: Sequence[dict[str, Any]], *, max_length: int | None = None,
                 rows: Sequence[int] | None = None, max_pixels: int | None = None) -> EncodedBatch:
    """Tokenise a micro-batch of tuples: the prompts with their images in one processor call (so
    processors that pad image patches within a batch keep working), the completions as plain text.

    ``prompt + completion`` is cut at ``max_length`` tokens from the end of the completion; a prompt
    that alone reaches ``max_length`` raises :class:`UsageError` (its image tokens would be cut).
    Images larger than ``max_pixels`` are shrunk first (:func:`cap_pixels`)."""
    texts = [render_texts(processor, ex) for ex in examples]
    images = [cap_pixels(ex["images"][0], max_pixels) for ex in examples]
    images = [img.convert("RGB") if hasattr(img, "convert") and getattr(img, "mode", "RGB") != "RGB" else img
              for img in images]
    prompts = processor(images=images, text=[t[0] for t in texts], padding=True, padding_side="right",
                        add_special_tokens=False, return_tensors="pt")
    tokenizer = getattr(processor, "tokenizer", processor)
    chosen = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
    rejected = tokenizer([t[2] for t in texts], add_special_tokens=False)["input_ids"]
    lengths = prompts["attention_mask"].sum(1).tolist()
    mm_types = prompts.get("mm_token_type_ids")
    tuples = []
    for i, n in enumerate(lengths):
        row = -1 if rows is None else int(rows[i])
        c, r = list(chosen[i]), list(rejected[i])
        if max_length is not None:
            if n >= max_length:
                raise UsageError(f"tuple {row if row >= 0 else i}: the prompt alone has {n} tokens (image included), "
                                 f"max_length is {max_length}; raise --max_length")
            c, r = c[: max_length - n], r[: max_length - n]
        if not c or not r:
            raise UsageError(f"tuple {row if row >= 0 else i}: an empty chosen or rejected answer after tokenisation")
        types = None if mm_types is None else mm_types[i, :n].tolist()
        tuples.append(EncodedTuple(prompts["input_ids"][i, :n].tolist(), c, r, types, row))
    image_inputs = {k: v for k, v in prompts.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids",
                                                                   "token_type_ids")}
    return EncodedBatch(tuples, image_inputs)


def select_tuples(ds: Any, validation: Any, *, name: str, subsets: Sequence[str] | None,
                  query_types: Sequence[str] | None, max_train_samples: int | None, allow_fewer: bool,
                  val_ratio: float, seed: int, counts: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """``(train, validation or None)`` of a tuple ``datasets.Dataset``: the subset / query-type filters
    (paper, Tables 4-5), the seeded subsample to ``max_train_samples`` (fewer tuples than asked is a
    :class:`UsageError` unless ``allow_fewer``), then the data's own ``validation`` split when it has
    one, else ``val_ratio`` of the tuples. ``counts`` receives ``available_tuples`` (after the filters)
    and ``requested_tuples``."""
    import logging

    for column, wanted, allowed in (("subset", subsets, SUBSETS), ("query_type", query_types, QUERY_TYPES)):
        if not wanted:
            continue
        bad = sorted(set(wanted) - set(allowed))
        if bad:
            raise UsageError(f"--{column}s: "
                             f"unknown {bad}; choose from {list(allowed)}")
        if column not in ds.column_names:
            raise UsageError(f"--{column}s needs a {column!r} column, which {name} does not have")
        keep = set(wanted)
        ds = ds.select([i for i, v in enumerate(ds[column]) if v in keep])
        if validation is not None and column in validation.column_names:
            validation = validation.select([i for i, v in enumerate(validation[column]) if v in keep])
    if len(ds) == 0:
        raise UsageError("no tuples left after the subset / query-type filters")
    if counts is not None:
        counts.update(available_tuples=len(ds), requested_tuples=max_train_samples)
    if max_train_samples is not None and len(ds) < max_train_samples:
        if not allow_fewer:
            raise UsageError(f"--max_train_samples {max_train_samples}: {name} has only {len(ds)} tuples after the "
                             f"filters; lower it, or pass --allow_fewer_samples to train on all {len(ds)}")
        logging.getLogger("finer.train_dpo").warning(
            "--allow_fewer_samples: training on all %d tuples, fewer than --max_train_samples %d", len(ds),
            max_train_samples)
    elif max_train_samples is not None:
        ds = ds.shuffle(seed=seed).select(range(max_train_samples))
    if validation is not None:  # the builder's own held-out split
        return ds, (validation if len(validation) else None)
    n_val = int(len(ds) * val_ratio)
    if n_val < 1:
        return ds, None
    split = ds.train_test_split(test_size=n_val, seed=seed)
    return split["train"], split["test"]

