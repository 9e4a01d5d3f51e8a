"""The questions a scoring run asks, one image at a time, straight from the per-image samples.

A FINER dataset stores one sample per image: the image once and every pair about it. That is the
unit the engines want: the ``letters`` engine prefills an image once and asks all its questions as
suffixes, a served model gets the image's bytes once per question without re-reading the shard.
:func:`select_pairs` picks the pairs of a run (settings, ``--limit``) from the ``json`` records;
:func:`image_questions` then walks the samples again and yields, image by image, a
:class:`RunQuestion` per question still to answer, with the prompt of the chosen template and the
original image bytes (decoded once per image, on first access, for engines that need pixels).
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from finer_datasets.eval.prompts import PromptTemplate
from finer_datasets.mcq.records import POLARITIES, pair_rows

__all__ = ["ImageRef", "RunQuestion", "select_pairs", "image_questions", "IMAGE_MEMBERS"]

IMAGE_MEMBERS = ("jpg", "png", "jpeg", "webp")
_MIME = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@dataclass
class ImageRef:
    """One image's original bytes; :attr:`pil` decodes them (RGB) once, when first asked."""

    key: str
    data: bytes
    extension: str
    _decoded: Any = field(default=None, repr=False)

    @property
    def mime(self) -> str:
        return _MIME.get(self.extension, "image/jpeg")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pil(self) -> Any:
        if self._decoded is None:
            from PIL import Image

            with Image.open(io.BytesIO(self.data)) as image:
                self._decoded = image.convert("RGB")
        return self._decoded


@dataclass(frozen=True)
class RunQuestion:
    """A question to answer: its id, the image it is about and the prompt text.

    ``image`` is the decoded PIL image (what the Hugging Face engines read), ``image_ref`` the
    original bytes (what a served model is sent)."""

    question_id: str
    image_key: str
    prompt: str
    image_ref: ImageRef

    @property
    def image(self) -> Any:
        return self.image_ref.pil


def _record(sample: Mapping[str, Any]) -> Mapping[str, Any]:
    return sample["json"] if "json" in sample else sample


def select_pairs(records: Iterable[Mapping[str, Any]], settings: Iterable[str] | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """The pair records of a run, in dataset order: those of ``settings`` (all when ``None``),
    at most the first ``limit`` pairs of each setting."""
    chosen = None if settings is None else tuple(settings)
    taken: Counter[str] = Counter()
    out = []
    for record in records:
        for pair in pair_rows(_record(record), chosen):
            if limit is not None and taken[pair["setting"]] >= limit:
                continue
            taken[pair["setting"]] += 1
            out.append(pair)
    return out


def _image_of(sample: Mapping[str, Any], key: str) -> ImageRef:
    for extension in IMAGE_MEMBERS:
        cell = sample.get(extension)
        if cell is not None:
            data = cell.get("bytes") if isinstance(cell, Mapping) else cell
            if data is None and isinstance(cell, Mapping) and cell.get("path"):
                with open(cell["path"], "rb") as handle:
                    data = handle.read()
            if data is not None:
                return ImageRef(key, bytes(data), extension)
    raise ValueError(f"image {key!r}: the sample has no image member ({', '.join(IMAGE_MEMBERS)})")


def image_questions(samples: Iterable[Mapping[str, Any]], pairs: Iterable[Mapping[str, Any]],
                    template: PromptTemplate, *, skip: Iterable[str] = ()) -> Iterator[RunQuestion]:
    """The questions of ``pairs`` (positive then negative, pairs in id order) grouped by image,
    images in sample order; questions whose id is in ``skip`` (already answered) are left out and
    an image none of whose questions is left is not decoded. (In a 1.x dataset an image is the
    subject of several samples, one per pair: its questions are asked once, at its first sample.)"""
    skip = set(skip)
    by_image: dict[str, list[Mapping[str, Any]]] = {}
    for pair in pairs:
        by_image.setdefault(pair["image_id"], []).append(pair)
    for sample in samples:
        image_id = _record(sample)["image_id"]
        if image_id not in by_image:
            continue
        wanted = [(pair, pair[polarity]) for pair in sorted(by_image.get(image_id, ()), key=lambda p: p["pair_id"])
                  for polarity, _ in POLARITIES if pair[polarity]["question_id"] not in skip]
        del by_image[image_id]
        if not wanted:
            continue
        ref = _image_of(sample, image_id)
        for _, question in wanted:
            yield RunQuestion(question["question_id"], image_id, template.format(question["question"], question["options"]),
                              ref)
