"""Flat views of per-image datasets whose ``image`` is a real, lazily decoded column (used by
``hub.load`` and the lmms-eval tasks of ``eval``).

A per-image ``datasets.Dataset`` (one row: image column + ``json`` record) becomes a flat
``Dataset`` of rows, one or more per record, given by ``rows_of(record)``, plus an image column
declared as ``datasets.Image()`` (or ``List(Image())`` for TRL's ``images``). Each image cell holds
only a path: every image is written once into a content-addressed store (``<datasets
cache>/finer_images/<sha256>.<ext>``, written atomically, shared by every view, rebuild and
version that holds the same image) and decoded when a row is read. So the view is plain columns:
it pickles (``DataLoader`` workers under ``spawn``), survives ``select_columns``,
``with_format("torch")`` and ``save_to_disk``, and an image asked about 30 times is stored once,
never copied per question. A streaming ``IterableDataset`` is expanded on the fly instead.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from finer_datasets.core.guard import write_file

__all__ = ["IMAGE_COLUMNS", "STORE_DIR", "image_columns", "records_of", "decode_image", "image_store", "flat_view",
           "flat_stream"]

#: image members a FINER sample may hold (a build with JPEG and PNG sources has both columns)
IMAGE_COLUMNS = ("jpg", "png", "jpeg", "webp")
#: the image store's folder name inside the datasets cache
STORE_DIR = "finer_images"
RowsOf = Callable[[Any], Iterable[Mapping[str, Any]]]
_BATCH = 64


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


def _store_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir) / STORE_DIR
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / STORE_DIR


def _put(root: Path, data: bytes, extension: str) -> str:
    """Write ``data`` once under its sha256 (atomic: a temporary file beside it, then a rename);
    returns the absolute path."""
    digest = hashlib.sha256(data).hexdigest()
    folder = root / digest[:2]
    path = folder / f"{digest}.{extension}"
    if path.is_file() and path.stat().st_size == len(data):
        return str(path)
    write_file(path, data)
    return str(path)


def image_store(ds: Any, *, cache_dir: str | Path | None = None) -> list[str | None]:
    """The stored image file of every row of the per-image ``Dataset`` ``ds`` (``None`` for a row
    without an image). Images are read undecoded, written once under their sha256, and the row ->
    file list is remembered per dataset fingerprint, so a second view of the same build reads no
    image bytes at all."""
    import datasets
    from tqdm.auto import tqdm

    columns = image_columns(ds.features)
    if not columns:
        return [None] * ds.num_rows
    root = _store_root(cache_dir)
    index = root / "index" / f"{ds._fingerprint}.json"
    try:
        paths = json.loads(index.read_text("utf-8"))
        if len(paths) == ds.num_rows and all(p is None or Path(p).is_file() for p in paths):
            return paths
    except (OSError, ValueError):
        pass
    raw = ds.select_columns(columns)
    for column in columns:
        raw = raw.cast_column(column, datasets.Image(decode=False))
    paths = []
    with tqdm(total=ds.num_rows, desc="finer: storing images once", unit="img", disable=None, leave=False) as bar:
        for batch in raw.iter(batch_size=_BATCH):
            for cells in zip(*(batch[c] for c in columns)):
                column, cell = next(((c, x) for c, x in zip(columns, cells) if x is not None), (None, None))
                if cell is None:
                    paths.append(None)
                    continue
                data = cell["bytes"] if cell.get("bytes") is not None else Path(cell["path"]).read_bytes()
                paths.append(_put(root, data, column))
            bar.update(len(batch[columns[0]]))
    write_file(index, json.dumps(paths))
    return paths


def flat_view(ds: Any, rows_of: RowsOf, *, image_key: str = "image", as_list: bool = False,
              empty: Sequence[str] = (), cache_dir: str | Path | None = None) -> Any:
    """The flat view of one per-image ``Dataset``: ``rows_of(record)`` rows plus ``image_key``, an
    ``Image()`` column (``List(Image())`` with ``as_list``) whose cells are paths into the image
    store (:func:`image_store`). ``empty`` names the columns of a view with no rows."""
    import datasets

    table: dict[str, list[Any]] = {}
    rows: list[int] = []
    for i, record in enumerate(records_of(ds)):
        for row in rows_of(record):
            for key, value in row.items():
                table.setdefault(key, []).append(value)
            rows.append(i)
    if not rows:
        table = {name: [] for name in empty}
    text = datasets.Dataset.from_dict(table)
    if not image_columns(ds.features):
        return text
    feature = datasets.Image()
    stored = image_store(ds, cache_dir=cache_dir) if rows else []
    cells: list[Any] = [{"bytes": None, "path": stored[i]} if stored[i] is not None else None for i in rows]
    if as_list:
        feature, cells = datasets.List(feature), [[c] if c is not None else [] for c in cells]
    features = datasets.Features({**text.features, image_key: feature})
    return datasets.Dataset.from_dict({**table, image_key: cells}, features=features)


def flat_stream(ds: Any, rows_of: RowsOf, *, image_key: str = "image", as_list: bool = False) -> Any:
    """The same view of a streaming ``IterableDataset`` (rows expanded as they arrive; the image
    cell is the sample's member, decoded by the consumer or on access)."""
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
