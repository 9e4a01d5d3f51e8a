"""Loading FINER datasets with ``datasets.load_dataset``: per-pair rows or per-question rows."""

from __future__ import annotations

from typing import Any

__all__ = ["load_finer", "flatten_pairs", "QUESTION_COLUMNS"]

QUESTION_COLUMNS = (
    "image", "image_id", "pair_id", "question_id", "setting", "qtype", "polarity", "k", "negated_index",
    "question", "options", "option_types", "answer", "gt_index",
)


def load_finer(
    path: str,
    setting: str | None = None,
    *,
    revision: str | None = None,
    flatten: bool = False,
    streaming: bool = False,
    **kwargs: Any,
) -> Any:
    """Load a FINER dataset from a Hub id or a local folder.

    ``setting`` (``multi_obj``, ``multi_attr``, ``multi_rel``, ``wh``) selects one split; without
    it a ``DatasetDict`` of the four is returned. With ``flatten=True`` each pair becomes two rows,
    the positive question then the negative one (:func:`flatten_pairs`).
    """
    import datasets

    loaded = datasets.load_dataset(path, split=setting, revision=revision, streaming=streaming, **kwargs)
    if not flatten:
        return loaded
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return type(loaded)({name: flatten_pairs(split) for name, split in loaded.items()})
    return flatten_pairs(loaded)


def _question_rows(batch: dict[str, list[Any]], image_columns: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {name: [] for name in QUESTION_COLUMNS}
    for i, record in enumerate(batch["json"]):
        image = next((batch[c][i] for c in image_columns if batch[c][i] is not None), None)
        for polarity in ("positive", "negative"):
            q = record[polarity]
            short = "pos" if polarity == "positive" else "neg"
            out["image"].append(image)
            out["image_id"].append(record["image_id"])
            out["pair_id"].append(record["pair_id"])
            out["question_id"].append(q["question_id"])
            out["setting"].append(record["setting"])
            out["qtype"].append(f"{record['setting']}_{short}")
            out["polarity"].append(short)
            out["k"].append(record["k"])
            out["negated_index"].append(record["negated_index"])
            out["question"].append(q["question"])
            out["options"].append(q["options"])
            out["option_types"].append(q["option_types"])
            out["answer"].append(q["answer"])
            out["gt_index"].append("ABCDE".index(q["answer"]))
    return out


def flatten_pairs(ds: Any) -> Any:
    """Per-pair rows -> per-question rows (``QUESTION_COLUMNS``), positive then negative.

    The image stays undecoded while flattening and is exposed as one ``image`` column.
    """
    import datasets

    features = ds.features
    image_columns = [name for name, f in (features or {}).items() if isinstance(f, datasets.Image)]
    for name in image_columns:
        ds = ds.cast_column(name, datasets.Image(decode=False))
    flat = ds.map(
        _question_rows,
        batched=True,
        remove_columns=list(ds.column_names or features),
        fn_kwargs={"image_columns": image_columns},
    )
    return flat.cast_column("image", datasets.Image())
