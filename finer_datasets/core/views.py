"""Flat views of per-image datasets that never copy image bytes (used by ``hub.load`` and the
lmms-eval tasks of ``eval``).

A per-image ``datasets.Dataset`` (one row: image column + ``json`` record) becomes a flat
``Dataset`` of text rows, one or more per record, given by ``rows_of(record)``. The flat table
holds an index into the per-image dataset instead of the image; the image is decoded when a row
is read (``Dataset.set_transform``), once for consecutive rows of the same image. A streaming
``IterableDataset`` is expanded on the fly instead.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["IMAGE_COLUMNS", "image_columns", "records_of", "decode_image", "flat_view", "flat_stream"]

#: image members a FINER sample may hold (a build with JPEG and PNG sources has both columns)
IMAGE_COLUMNS = ("jpg", "png", "jpeg", "webp")
RowsOf = Callable[[Any], Iterable[Mapping[str, Any]]]


def image_columns(features: Any) -> list[str]:
    """Every image column of a FINER dataset's features; each row fills one of them."""
    names = list(features or ())
    return [c for c in IMAGE_COLUMNS if c in names]


def records_of(ds: Any) -> list[Any]:
    """The ``json`` records of a ``Dataset`` without decoding any image."""
    return list(ds.select_columns(["json"])["json"]) if hasattr(ds, "select_columns") else [r["json"] for r in ds]


def decode_image(cell: Any) -> Any:
    """A PIL image from an image cell: ``{"bytes", "path"}`` (``decode=False``), raw bytes, or
    an already decoded image (returned as it is)."""
    from PIL import Image

    if cell is None or hasattr(cell, "convert"):
        return cell
    data = cell.get("bytes") if isinstance(cell, Mapping) else cell
    return Image.open(cell["path"]) if data is None else Image.open(io.BytesIO(data))


def flat_view(ds: Any, rows_of: RowsOf, *, image_key: str = "image", as_list: bool = False,
              index_key: str = "image_index", empty: Sequence[str] = ()) -> Any:
    """The flat view of one per-image ``Dataset``.

    Each flat row carries ``index_key`` (the row of its image in ``ds``) and, on access,
    ``image_key`` (the decoded image, or ``[image]`` with ``as_list``). With ``index_key ==
    image_key`` the index is stored in the image column itself and replaced on access (trainers
    that drop unknown columns keep it). ``empty`` names the columns of a view with no rows.
    """
    import datasets

    columns = image_columns(ds.features)
    table: dict[str, list[Any]] = {}
    index: list[int] = []
    for i, record in enumerate(records_of(ds)):
        for row in rows_of(record):
            for key, value in row.items():
                table.setdefault(key, []).append(value)
            index.append(i)
    if not index:
        table = {name: [] for name in empty}
    flat = datasets.Dataset.from_dict({**table, index_key: index})
    if not columns:
        return flat
    raw = ds.select_columns(columns)
    for column in columns:
        raw = raw.cast_column(column, datasets.Image(decode=False))
    last: dict[int, Any] = {}

    def attach(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        images = []
        for i in batch[index_key]:
            if i not in last:  # consecutive rows share their image: decode it once
                last.clear()
                row = raw[int(i)]
                last[i] = decode_image(next((row[c] for c in columns if row[c] is not None), None))
            images.append([last[i]] if as_list else last[i])
        return {**batch, image_key: images}

    flat.set_transform(attach)
    return flat


def flat_stream(ds: Any, rows_of: RowsOf, *, image_key: str = "image", as_list: bool = False) -> Any:
    """The same view of a streaming ``IterableDataset`` (rows expanded as they arrive)."""
    columns = image_columns(ds.features) or ["jpg"]

    def expand(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        cells = zip(*(batch.get(c) or [None] * len(batch["json"]) for c in columns))
        for record, row_cells in zip(batch["json"], cells):
            image = next((c for c in row_cells if c is not None), None)
            for row in rows_of(record):
                for key, value in row.items():
                    out.setdefault(key, []).append(value)
                out.setdefault(image_key, []).append([image] if as_list else image)
        return out

    return ds.map(expand, batched=True, remove_columns=list(ds.column_names or ["json", *columns, "__key__", "__url__"]))
