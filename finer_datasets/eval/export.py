"""Exporting FINER pairs to other evaluation tools' formats.

Both exports take the rows of ``datasets.load_dataset(folder, split="test")`` -- a ``Dataset``,
``IterableDataset`` or ``DatasetDict``, or any iterable of rows with an image column (``jpg`` or
``png``) and the ``json`` record (per image; 1.x per-pair records work too) -- and write one row
per question, the positive question then the negative one of each pair (``settings`` keeps only
some settings):

- :func:`export_vlmevalkit` -- a VLMEvalKit custom MCQ TSV (``index, image, question, A-E,
  answer, category, question_id, pair_id``) with the image inlined as base64;
- :func:`export_official_csv` -- the layout of FINER's release (``image, qtype, question,
  choice1-5, gt_index``) naming the source image file.

Images are exported byte for byte: a ``datasets`` object has its image columns cast to
``datasets.Image(decode=False)`` first. A row that only carries a decoded PIL image (no original
bytes) is re-encoded losslessly as PNG.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from finer_datasets.constants import LETTERS
from finer_datasets.mcq.records import POLARITIES, pair_rows

__all__ = ["export_vlmevalkit", "export_official_csv", "VLMEVALKIT_COLUMNS", "OFFICIAL_COLUMNS", "image_bytes"]

VLMEVALKIT_COLUMNS = ("index", "image", "question", "A", "B", "C", "D", "E", "answer", "category", "question_id",
                      "pair_id")
OFFICIAL_COLUMNS = ("image", "qtype", "question", "choice1", "choice2", "choice3", "choice4", "choice5", "gt_index")
IMAGE_COLUMNS = ("jpg", "png", "jpeg", "webp")


def _undecoded(rows: Any, *, images: bool) -> Iterator[Any]:
    """Iterate the rows of ``rows``; ``datasets`` objects get their image columns undecoded
    (or dropped when ``images`` is false)."""
    if not type(rows).__module__.startswith("datasets"):
        yield from rows
        return
    import datasets

    if isinstance(rows, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        for split in rows.values():
            yield from _undecoded(split, images=images)
        return
    features = rows.features or {}
    image_columns = [name for name, f in features.items() if isinstance(f, datasets.Image)]
    if not images and "json" in features:
        rows = rows.select_columns(["json"])
    else:
        for name in image_columns:
            if features[name].decode:
                rows = rows.cast_column(name, datasets.Image(decode=False))
    yield from rows


def _record(row: Mapping[str, Any]) -> Mapping[str, Any]:
    record = row["json"] if "json" in row else row
    if isinstance(record, (str, bytes)):
        record = json.loads(record)
    return record


def image_bytes(value: Any) -> bytes:
    """The bytes of an image cell: raw bytes, a ``{"bytes", "path"}`` dict (``decode=False``),
    or a PIL image (its source file if it has one, else re-encoded losslessly as PNG)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        if value.get("path"):
            return Path(value["path"]).read_bytes()
        raise ValueError("image cell has neither bytes nor path")
    filename = getattr(value, "filename", None)
    if filename and os.path.isfile(filename):
        return Path(filename).read_bytes()
    if hasattr(value, "save"):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(f"not an image cell: {type(value).__name__}")


def _row_image(row: Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
    for name in IMAGE_COLUMNS:
        if row.get(name) is not None:
            return image_bytes(row[name])
    raise ValueError(f"pair {record.get('pair_id')!r}: no image column ({', '.join(IMAGE_COLUMNS)})")


_BREAKS = re.compile(r"[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _clean(text: Any) -> str:
    """One-line text: tabs and every kind of line break become spaces."""
    return _BREAKS.sub(" ", str(text))


def _questions(record: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for polarity, short in POLARITIES:
        question = record[polarity]
        if len(question["options"]) != 5:
            raise ValueError(f"question {question['question_id']!r} has {len(question['options'])} options, not 5")
        yield short, question


def _write_rows(path: str | Path, header: tuple[str, ...], rows: Iterable[list[Any]], delimiter: str) -> int:
    """Write a header and rows atomically (temp file, then rename); return the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


def _pairs(rows: Any, settings: Iterable[str] | None, *, images: bool) -> Iterator[tuple[Mapping[str, Any], Any]]:
    """``(pair record, row)`` for every pair of every row (optionally of some settings only)."""
    chosen = None if settings is None else tuple(settings)
    for row in _undecoded(rows, images=images):
        for pair in pair_rows(_record(row), chosen):
            yield pair, row


def export_vlmevalkit(rows: Any, path: str | Path, *, settings: Iterable[str] | None = None) -> int:
    """Write a VLMEvalKit custom MCQ TSV; return the number of questions written.

    Columns ``index, image, question, A, B, C, D, E, answer, category, question_id, pair_id``:
    ``index`` counts from 0, ``image`` is the base64 of the original image bytes, ``category`` is
    ``{setting}_pos`` / ``{setting}_neg``; ``question_id`` and ``pair_id`` are the dataset's ids,
    which VLMEvalKit carries into its result files, so that ``finer score --from vlmevalkit``
    pairs the answers by id, never by row order. Text fields are flattened to one line (tabs and
    newlines become spaces) and quoted by the csv module where needed, so no field breaks a row.
    """

    def lines() -> Iterator[list[Any]]:
        index, encoded = 0, (None, "")
        for record, row in _pairs(rows, settings, images=True):
            if encoded[0] is not row:  # the questions of one image share its base64
                encoded = (row, base64.b64encode(_row_image(row, record)).decode("ascii"))
            image = encoded[1]
            for short, question in _questions(record):
                yield [index, image, _clean(question["question"]), *(_clean(o) for o in question["options"]),
                       question["answer"], f"{record['setting']}_{short}", question["question_id"],
                       record["pair_id"]]
                index += 1

    return _write_rows(path, VLMEVALKIT_COLUMNS, lines(), "\t")


def export_official_csv(rows: Any, path: str | Path, *, settings: Iterable[str] | None = None) -> int:
    """Write FINER's release CSV layout; return the number of questions written.

    Columns ``image, qtype, question, choice1..choice5, gt_index``: ``image`` is the source image
    file name, ``qtype`` is ``{setting}_pos`` / ``{setting}_neg`` (e.g. ``multi_obj_pos``) and
    ``gt_index`` the 0-based index of the correct option; each pair gives two consecutive rows.
    """

    def lines() -> Iterator[list[Any]]:
        for record, _ in _pairs(rows, settings, images=False):
            for short, question in _questions(record):
                yield [record["image_file"], f"{record['setting']}_{short}", _clean(question["question"]),
                       *(_clean(o) for o in question["options"]), LETTERS.index(question["answer"])]

    return _write_rows(path, OFFICIAL_COLUMNS, lines(), ",")
