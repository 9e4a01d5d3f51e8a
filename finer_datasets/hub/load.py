"""Loading FINER datasets: per-image rows as stored, or flat views built on them.

``datasets.load_dataset(folder_or_repo)`` gives one row per image (``jpg``/``png`` + ``json``),
which is what a Hub repo holds. :func:`load_finer` adds the views researchers use:

* ``view="images"`` -- those rows, unchanged;
* ``view="pairs"`` -- one row per MCQ pair (the pair record's fields + ``image``);
* ``view="questions"`` -- one row per question, positive then negative
  (:data:`~finer_datasets.mcq.records.QUESTION_COLUMNS` + ``image``: MMBench-style ``question``,
  ``options``, ``answer``; ``image_filename`` and ``subset`` as FINER's official evaluation expects);
* ``view="trl"`` -- for preference datasets (FINER-Tuning): TRL's conversational vision format.

Flat views never copy image bytes: their table holds text and an ``image_index`` (the row of the
per-image dataset) and the ``image`` column is decoded on access (``Dataset.set_transform``), so
a 30-question image is stored once on disk and in memory. Streaming works too (rows are expanded
on the fly). Older releases (builder 1.x, one sample per pair, one split per setting) load
through the same views.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterable

from finer_datasets.constants import canonical_settings
from finer_datasets.errors import UsageError
from finer_datasets.mcq.records import QUESTION_COLUMNS, pair_rows, question_rows

__all__ = ["load_finer", "VIEWS", "records_of", "image_column", "image_columns"]

VIEWS = ("images", "pairs", "questions", "trl")
_IMAGE_COLUMNS = ("jpg", "png", "jpeg", "webp")


def image_column(features: Any) -> str | None:
    """The image column of a FINER dataset's features (``jpg`` or ``png``), if any."""
    names = list(features or ())
    return next((c for c in _IMAGE_COLUMNS if c in names), None)


def image_columns(features: Any) -> list[str]:
    """Every image column of a FINER dataset's features: a build whose images are JPEG and PNG has
    both, and each row fills one of them."""
    names = list(features or ())
    return [c for c in _IMAGE_COLUMNS if c in names]


def records_of(ds: Any) -> list[Any]:
    """The ``json`` records of a ``Dataset`` without decoding any image."""
    return list(ds.select_columns(["json"])["json"]) if hasattr(ds, "select_columns") else [r["json"] for r in ds]


def _row_fn(view: str, settings: tuple[str, ...] | None) -> Callable[[Any], Iterable[dict[str, Any]]]:
    if view == "pairs":
        return lambda record: pair_rows(record, settings)
    if view == "questions":
        return lambda record: [q for pair in pair_rows(record, settings) for q in question_rows(pair)]
    if view == "trl":
        from finer_datasets.preference.records import trl_rows

        return trl_rows
    raise UsageError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")


def _decode(cell: Any) -> Any:
    from PIL import Image

    if cell is None:
        return None
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if data is None:
        return Image.open(cell["path"])
    return Image.open(io.BytesIO(data))


def _flat(ds: Any, view: str, settings: tuple[str, ...] | None) -> Any:
    """A flat view of one per-image ``Dataset`` (text table + images decoded on access).

    The row of each flat row's image in ``ds`` is stored in ``image_index``; for ``trl`` it is
    stored in ``images`` itself (decoded to ``[PIL image]`` on access), because trainers that
    drop the columns they do not know (``remove_unused_columns``) keep ``images``.
    """
    import datasets

    rows_of = _row_fn(view, settings)
    columns = image_columns(ds.features)
    table: dict[str, list[Any]] = {}
    index: list[int] = []
    for i, record in enumerate(records_of(ds)):
        for row in rows_of(record):
            for key, value in row.items():
                table.setdefault(key, []).append(value)
            index.append(i)
    if not index:
        names = QUESTION_COLUMNS if view == "questions" else ()
        table = {name: [] for name in names}
    index_key = "images" if view == "trl" else "image_index"
    flat = datasets.Dataset.from_dict({**table, index_key: index})
    if not columns:
        return flat
    raw = ds.select_columns(columns)
    for column in columns:
        raw = raw.cast_column(column, datasets.Image(decode=False))
    image_key = "images" if view == "trl" else "image"
    last: dict[int, Any] = {}

    def attach(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        images = []
        for i in batch[index_key]:
            if i not in last:  # consecutive rows share their image: decode it once
                last.clear()
                row = raw[int(i)]
                last[i] = _decode(next((row[c] for c in columns if row[c] is not None), None))
            images.append([last[i]] if view == "trl" else last[i])
        return {**batch, image_key: images}

    flat.set_transform(attach)
    return flat


def _flat_stream(ds: Any, view: str, settings: tuple[str, ...] | None) -> Any:
    """The same view of a streaming ``IterableDataset`` (rows expanded as they arrive)."""

    rows_of = _row_fn(view, settings)
    columns = image_columns(ds.features) or ["jpg"]
    image_key = "images" if view == "trl" else "image"

    def expand(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        cells = zip(*(batch.get(c) or [None] * len(batch["json"]) for c in columns))
        for record, row_cells in zip(batch["json"], cells):
            image = next((c for c in row_cells if c is not None), None)
            for row in rows_of(record):
                for key, value in row.items():
                    out.setdefault(key, []).append(value)
                out.setdefault(image_key, []).append([image] if view == "trl" else image)
        return out

    return ds.map(expand, batched=True, remove_columns=list(ds.column_names or ["json", *columns, "__key__", "__url__"]))


def load_finer(
    path: str,
    view: str = "images",
    *,
    setting: str | Iterable[str] | None = None,
    split: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
    **kwargs: Any,
) -> Any:
    """Load a FINER dataset (Hub id or local folder) as ``view`` (:data:`VIEWS`).

    ``setting`` keeps only the pairs of one or more settings (``multi_obj``, ``multi_attr``,
    ``multi_rel``, ``wh``; the official names ``multi_object`` ... work too). Without ``split``
    a ``DatasetDict`` of every split is returned. ``kwargs`` go to ``datasets.load_dataset``.
    """
    import datasets

    if view not in VIEWS:
        raise UsageError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")
    settings = None if setting is None else canonical_settings(setting)
    loaded = datasets.load_dataset(path, split=split, revision=revision, streaming=streaming, **kwargs)
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)) and _legacy(loaded):
        loaded = _legacy_splits(loaded, settings)
    if view == "images":
        return loaded
    convert = _flat_stream if streaming else _flat
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return type(loaded)({name: convert(part, view, settings) for name, part in loaded.items()})
    return convert(loaded, view, settings)


def _legacy(loaded: Any) -> bool:
    """Builder 1.x: one split per setting, one sample per pair."""
    return set(loaded) <= {"multi_obj", "multi_attr", "multi_rel", "wh"} and bool(set(loaded))


def _legacy_splits(loaded: Any, settings: tuple[str, ...] | None) -> Any:
    import datasets

    names = [s for s in loaded if settings is None or s in settings]
    parts = [loaded[s] for s in names]
    if isinstance(loaded, datasets.IterableDatasetDict):
        return datasets.IterableDatasetDict({"test": datasets.interleave_datasets(parts)}) if len(parts) > 1 \
            else datasets.IterableDatasetDict({"test": parts[0]})
    return datasets.DatasetDict({"test": datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]})
