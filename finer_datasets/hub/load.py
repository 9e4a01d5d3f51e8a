"""Loading FINER datasets: per-image rows as stored, or flat views built on them.

``datasets.load_dataset(folder_or_repo)`` gives one row per image (``jpg``/``png`` + ``json``),
which is what a Hub repo holds. :func:`load_finer` adds the views researchers use:

* ``view="images"`` -- those rows, unchanged;
* ``view="pairs"`` -- one row per MCQ pair (the pair record's fields + ``image``);
* ``view="questions"`` -- one row per question, positive then negative
  (:data:`~finer_datasets.mcq.records.QUESTION_COLUMNS` + ``image``: MMBench-style ``question``,
  ``options``, ``answer``; ``image_filename`` and ``subset`` as FINER's official evaluation expects);
* ``view="positions"`` -- the questions of every k = 3 ``multi_*`` pair with its negative rotated
  through positions 1, 2 and 3 (paper, E.1; :mod:`finer_datasets.mcq.positions`): question rows plus
  ``rotated_from``, ids ``<pair_id>_p<position>_pos`` / ``_neg``, what ``finer score --view
  positions`` scores;
* ``view="trl"`` -- for preference datasets (FINER-Tuning): TRL's conversational vision preference
  format (``images``, ``prompt``, ``chosen``, ``rejected``); ``view="sft"`` -- the chosen answers
  only, as TRL's conversational SFT format (``images``, ``messages``; paper, Table 4).

Every load is of what is there now. A folder's card carries the digest of its shards, so a rebuilt
folder never loads a stale ``datasets`` cache; a Hub id is first resolved to the snapshot of its
revision (``huggingface_hub``'s cache, which resolves tags offline too) and that folder is loaded,
because ``datasets`` offline serves its newest cache of a repo whatever revision is asked.

Flat views are plain columns: ``image`` (``images`` for TRL's formats) is a declared
``datasets.Image()`` column whose cells are paths into a content-addressed image store in the
``datasets`` cache (each image written once, decoded on access), so a 30-question image is stored
once, the view pickles under ``spawn`` and survives ``select_columns``, ``with_format("torch")``
and ``save_to_disk``. Streaming works too (rows are expanded
on the fly). Older releases (builder 1.x, one sample per pair, one split per setting) load
through the same views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from finer_datasets.constants import SETTINGS, canonical_settings, require_kind
from finer_datasets.core.views import flat_stream, flat_view
from finer_datasets.errors import UsageError
from finer_datasets.hub.resolve import hub_snapshot, is_hub_id, local_folder
from finer_datasets.mcq.positions import POSITION_COLUMNS, position_rows
from finer_datasets.mcq.records import QUESTION_COLUMNS, pair_rows, question_rows

__all__ = ["load_finer", "VIEWS", "LISTED_VIEWS", "VIEW_KIND", "view_rows"]

VIEWS = ("images", "pairs", "questions", "positions", "trl", "sft")
LISTED_VIEWS = ("trl", "sft")  # TRL's formats: ``images`` is a list of images
_EMPTY = {"questions": QUESTION_COLUMNS, "positions": POSITION_COLUMNS}  # the columns of a view with no rows
#: the kind of dataset (constants.KINDS) each flat view reads
VIEW_KIND = {"pairs": "benchmark", "questions": "benchmark", "positions": "benchmark", "trl": "preference",
             "sft": "preference"}


def _check_kind(part: Any, view: str, path: str) -> None:
    """One line naming what ``path`` is and its views, when ``view`` is not one of them (the record
    fields come from the declared ``json`` feature; an untyped dataset is not checked)."""
    record = (part.features or {}).get("json")
    if isinstance(record, dict):
        require_kind(record, VIEW_KIND[view], subject=path, action=f"load_finer(..., view={view!r})")


def view_rows(view: str, settings: tuple[str, ...] | None) -> Callable[[Any], Iterable[dict[str, Any]]]:
    """The row function of a flat ``view``: one per-image record -> its rows (``settings`` keeps only those)."""
    if view == "pairs":
        return lambda record: pair_rows(record, settings)
    if view == "questions":
        return lambda record: [q for pair in pair_rows(record, settings) for q in question_rows(pair)]
    if view == "positions":
        return lambda record: position_rows(record, settings)
    if view in LISTED_VIEWS:
        from finer_datasets.preference.records import sft_rows, trl_rows

        return trl_rows if view == "trl" else sft_rows
    raise UsageError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")


def _flat(ds: Any, view: str, settings: tuple[str, ...] | None, cache_dir: Any = None) -> Any:
    listed = view in LISTED_VIEWS
    return flat_view(ds, view_rows(view, settings), image_key="images" if listed else "image", as_list=listed,
                     empty=_EMPTY.get(view, ()), cache_dir=cache_dir)


def _flat_stream(ds: Any, view: str, settings: tuple[str, ...] | None, cache_dir: Any = None) -> Any:
    listed = view in LISTED_VIEWS
    return flat_stream(ds, view_rows(view, settings), image_key="images" if listed else "image", as_list=listed)


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
    name = path if revision is None else f"{path}@{revision}"
    if not streaming and is_hub_id(path):  # one folder per revision: never another revision's cache
        path, revision = str(hub_snapshot(path, revision, token=kwargs.get("token"))), None
    elif revision is not None and Path(path).expanduser().is_dir():  # a release repository at a revision
        path, revision = str(local_folder(Path(path).expanduser(), revision, option="revision=")), None
    loaded = datasets.load_dataset(path, split=split, revision=revision, streaming=streaming, **kwargs)
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)) and _legacy(loaded):
        loaded = _legacy_splits(loaded, settings)
    if view == "images":
        return loaded
    convert = _flat_stream if streaming else _flat
    cache_dir = kwargs.get("cache_dir")
    for part in loaded.values() if isinstance(loaded, dict) else [loaded]:
        _check_kind(part, view, name)
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return type(loaded)({name: convert(part, view, settings, cache_dir) for name, part in loaded.items()})
    return convert(loaded, view, settings, cache_dir)


def _legacy(loaded: Any) -> bool:
    """Builder 1.x: one split per setting, one sample per pair."""
    return set(loaded) <= set(SETTINGS) and bool(set(loaded))


def _legacy_splits(loaded: Any, settings: tuple[str, ...] | None) -> Any:
    import datasets

    names = [s for s in loaded if settings is None or s in settings]
    parts = [loaded[s] for s in names]
    if isinstance(loaded, datasets.IterableDatasetDict):
        return datasets.IterableDatasetDict({"test": datasets.interleave_datasets(parts)}) if len(parts) > 1 \
            else datasets.IterableDatasetDict({"test": parts[0]})
    return datasets.DatasetDict({"test": datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]})
