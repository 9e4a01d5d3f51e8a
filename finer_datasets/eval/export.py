"""Exporting FINER pairs to other evaluation tools' formats.

Both exports take the rows of ``datasets.load_dataset(folder, split="test")`` -- a ``Dataset``,
``IterableDataset`` or ``DatasetDict``, or any iterable of rows with an image column (``jpg`` or
``png``) and the ``json`` record (per image; 1.x per-pair records work too) -- and write one row
per question, the positive question then the negative one of each pair (``settings`` keeps only
some settings):

- :func:`export_vlmevalkit` -- a VLMEvalKit custom MCQ TSV (``index, image, question, A-E,
  answer, category, question_id, pair_id``) with each image inlined once as base64: the first row
  of an image carries it, later rows of the same image carry that row's ``index`` (the space-saving
  reference VLMEvalKit's own MMBench TSVs use; see :func:`resolve_image_references`);
- :func:`export_official_csv` -- the layout of FINER's release (``image, qtype, question,
  choice1-5, gt_index``) naming the source image file. A spreadsheet opens this file, so every
  text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written
  with a leading single quote (OWASP's advice against CSV formula injection): ``=1+2.jpg`` is
  written ``'=1+2.jpg``, shown as text and never evaluated.

The VLMEvalKit TSV is **not** escaped that way: VLMEvalKit builds the model's prompt from its
``question`` and ``A``-``E`` cells, so a quote added there would change what the model is asked
(and the scores); its reader is pandas, not a spreadsheet. Its other cells are safe by
construction: ``index`` is a number, ``image`` base64 of an image (JPEG, PNG and WebP encode to
a first character in ``/``, ``i``, ``U``) or a row index, ``category`` is ``<setting>_pos|neg``,
and the ids follow the schema's ``^[A-Za-z0-9_-]+$``; an id that begins with ``-`` is refused.

Images are exported byte for byte: a ``datasets`` object has its image columns cast to
``datasets.Image(decode=False)`` first. A row that only carries a decoded PIL image (no original
bytes) is re-encoded losslessly as PNG.

:func:`check_export_out` is where ``finer export`` may write: never inside (or over) the dataset,
and an existing output only with ``overwrite`` and only when an export wrote it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from finer_datasets.constants import LETTERS, require_kind
from finer_datasets.core.guard import EXPORT_TOOL, check_replace, owned_folder, replacing
from finer_datasets.errors import SourceError, UsageError
from finer_datasets.mcq.records import POLARITIES, pair_rows

__all__ = ["export_vlmevalkit", "export_official_csv", "VLMEVALKIT_COLUMNS", "OFFICIAL_COLUMNS", "image_bytes",
           "resolve_image_references", "IMAGE_REFERENCE_MAX", "check_export_out", "EXPORT_HEADERS", "spreadsheet_safe"]

VLMEVALKIT_COLUMNS = ("index", "image", "question", "A", "B", "C", "D", "E", "answer", "category", "question_id",
                      "pair_id")
OFFICIAL_COLUMNS = ("image", "qtype", "question", "choice1", "choice2", "choice3", "choice4", "choice5", "gt_index")
IMAGE_COLUMNS = ("jpg", "png", "jpeg", "webp")
#: VLMEvalKit reads an ``image`` cell of at most this many characters as the ``index`` of the row
#: that holds the image (its dataset loader, ``ImageBaseDataset``); a base64 image is always longer
IMAGE_REFERENCE_MAX = 64
#: the first line of each file export, by which a previous export is recognised
EXPORT_HEADERS = {"vlmevalkit": ("\t", VLMEVALKIT_COLUMNS), "official-csv": (",", OFFICIAL_COLUMNS)}


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


#: what a spreadsheet reads as the start of a formula (OWASP, "CSV Injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: one that begins with ``=``, ``+``, ``-``, ``@``, a
    tab or a carriage return gets a leading single quote; other values are returned as they are."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _safe_id(value: Any, record: Mapping[str, Any], field: str) -> str:
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        raise SourceError(f"id {text[:40]!r} begins with {text[0]!r}, which a spreadsheet reads as a formula",
                          record=record.get("pair_id"), field=field)
    return text


def _questions(record: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for polarity, short in POLARITIES:
        question = record[polarity]
        if len(question["options"]) != 5:
            raise UsageError(f"question {question['question_id']!r} has {len(question['options'])} options: the "
                             "vlmevalkit and official-csv formats hold five-option questions (a FINER-Ladder yes/no "
                             "pair has two); export it with --format lmms-eval, or read it with load_finer")
        yield short, question


def _write_rows(path: str | Path, header: tuple[str, ...], rows: Iterable[list[Any]], delimiter: str) -> int:
    """Write a header and rows atomically (a temp file of this run's own, then rename); return the row count."""
    count = 0
    with replacing(Path(path)) as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                count += 1
    return count


def _pairs(rows: Any, settings: Iterable[str] | None, *, images: bool) -> Iterator[tuple[Mapping[str, Any], Any]]:
    """``(pair record, row)`` for every pair of every row (optionally of some settings only)."""
    chosen = None if settings is None else tuple(settings)
    for number, row in enumerate(_undecoded(rows, images=images)):
        record = _record(row)
        if number == 0:
            require_kind(record, "benchmark", subject="this data", action="a VLMEvalKit or FINER CSV export")
        for pair in pair_rows(record, chosen):
            yield pair, row


def export_vlmevalkit(rows: Any, path: str | Path, *, settings: Iterable[str] | None = None) -> int:
    """Write a VLMEvalKit custom MCQ TSV; return the number of questions written.

    Columns ``index, image, question, A, B, C, D, E, answer, category, question_id, pair_id``:
    ``index`` counts from 0; ``image`` is the base64 of the original image bytes on the first row
    of each image and, on every later row of the same image (same bytes), the ``index`` of that
    first row -- VLMEvalKit's loader takes an ``image`` cell of at most 64 characters as the index
    of the row holding the image, so each image is stored once. ``category`` is
    ``{setting}_pos`` / ``{setting}_neg``; ``question_id`` and ``pair_id`` are the dataset's ids,
    which VLMEvalKit carries into its result files, so that ``finer score --from vlmevalkit``
    pairs the answers by id, never by row order. Text fields are flattened to one line (tabs and
    newlines become spaces) and quoted by the csv module where needed, so no field breaks a row.
    """

    def lines() -> Iterator[list[Any]]:
        index, current, first = 0, (None, ""), {}
        for record, row in _pairs(rows, settings, images=True):
            if current[0] is not row:  # the questions of one image share it
                data = _row_image(row, record)
                current = (row, hashlib.sha256(data).hexdigest(), data)
            digest = current[1]
            for short, question in _questions(record):
                if digest in first:
                    image = str(first[digest])
                else:
                    first[digest], image = index, base64.b64encode(current[2]).decode("ascii")
                    if len(image) <= IMAGE_REFERENCE_MAX:
                        raise SourceError(f"the image is only {len(current[2])} bytes: VLMEvalKit would read its "
                                          "base64 as a row index", record=record["pair_id"], field="image")
                # question and options as the dataset has them (one line): they are the model's prompt
                yield [index, image, _clean(question["question"]), *(_clean(o) for o in question["options"]),
                       question["answer"], f"{record['setting']}_{short}",
                       _safe_id(question["question_id"], record, "question_id"),
                       _safe_id(record["pair_id"], record, "pair_id")]
                index += 1

    return _write_rows(path, VLMEVALKIT_COLUMNS, lines(), "\t")


def resolve_image_references(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The base64 image of every row of a VLMEvalKit TSV, references followed: a cell of at most
    :data:`IMAGE_REFERENCE_MAX` characters names (as text) the ``index`` of the row that holds the
    image -- the rule of VLMEvalKit's dataset loader. A reference to a missing row or to another
    reference is a :class:`SourceError`."""
    rows = list(rows)
    by_index = {str(row["index"]): str(row["image"]) for row in rows}
    images = []
    for row in rows:
        cell = str(row["image"])
        if len(cell) <= IMAGE_REFERENCE_MAX:
            target = by_index.get(cell)
            if target is None or len(target) <= IMAGE_REFERENCE_MAX:
                raise SourceError(f"image cell {cell!r} names no row holding an image", record=row["index"],
                                  field="image")
            cell = target
        images.append(cell)
    return images


def export_official_csv(rows: Any, path: str | Path, *, settings: Iterable[str] | None = None) -> int:
    """Write FINER's release CSV layout; return the number of questions written.

    Columns ``image, qtype, question, choice1..choice5, gt_index``: ``image`` is the source image
    file name, ``qtype`` is ``{setting}_pos`` / ``{setting}_neg`` (e.g. ``multi_obj_pos``) and
    ``gt_index`` the 0-based index of the correct option; each pair gives two consecutive rows.
    Text cells that a spreadsheet would read as a formula get a leading ``'`` (:func:`spreadsheet_safe`).
    """

    def lines() -> Iterator[list[Any]]:
        for record, _ in _pairs(rows, settings, images=False):
            for short, question in _questions(record):
                cells = [record["image_file"], f"{record['setting']}_{short}", _clean(question["question"]),
                         *(_clean(o) for o in question["options"])]
                yield [*(spreadsheet_safe(c) for c in cells), LETTERS.index(question["answer"])]

    return _write_rows(path, OFFICIAL_COLUMNS, lines(), ",")


def _previous_export(path: Path, fmt: str) -> bool:
    """Whether ``path`` is a file export of ``fmt``: its first line is that format's header."""
    delimiter, header = EXPORT_HEADERS[fmt]
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            first = handle.readline(1 << 16)
    except (OSError, UnicodeDecodeError):
        return False
    return first.rstrip("\r\n") == delimiter.join(header)


def check_export_out(out: str | Path, *, dataset: str | Path, fmt: str, overwrite: bool = False) -> Path:
    """Refuse (:class:`OutputError`, one line saying what to do) an export target that could lose
    data; return it resolved.

    ``--out`` may never be, sit inside or contain the ``dataset`` folder, sit inside any other
    dataset, or be a symbolic link (:func:`finer_datasets.core.guard.check_replace`). An existing
    output is replaced only with ``overwrite``, and only when an export wrote it: a file export of
    the same ``fmt`` (its first line is the header, :data:`EXPORT_HEADERS`), or for a folder
    export an empty folder or one holding the marker of a ``fmt`` export and nothing it does not
    list (:func:`finer_datasets.core.guard.owned_folder`).
    """
    if fmt in EXPORT_HEADERS:
        def owned(path: Path) -> tuple[bool, str]:
            return _previous_export(path, fmt), f"it does not start with the {fmt} export's header, so no export wrote it"
    else:
        def owned(path: Path) -> tuple[bool, str]:
            return owned_folder(path, EXPORT_TOOL)
    return check_replace(Path(out), owned=owned, folder=fmt not in EXPORT_HEADERS, overwrite=overwrite,
                         dataset=Path(dataset), writer=f"--format {fmt}")
