"""The authors' released FINER tables -> our pairs and per-image records (pure functions, no I/O).

The FINER authors publish each benchmark as one table per setting (``multi_obj``, ``multi_attr``,
``multi_rel``, ``wh``; their Hub copy names the splits ``multi_object`` ... too) with the columns
:data:`RELEASE_COLUMNS`: ``image`` (the image's file name; an ``Image`` feature in their Hub copy,
which adds ``image_filename`` and ``subset``), ``qtype``, ``question``, ``choice1`` .. ``choice5``
and ``gt_index`` (0-based: ``choice{gt_index + 1}`` is right). Their scorer pairs rows strictly two
by two: rows ``2n`` and ``2n + 1`` are one pair -- the same image, the same ``qtype`` once
``_pos`` / ``_neg`` is cut off, one ``_pos`` and one ``_neg`` in either order -- and a pair counts
when both rows are answered right. :func:`release_pairs` enforces exactly that rule and every
field a question needs, and raises one :class:`~finer_datasets.errors.SourceError` naming the
file, the row (0-based after the header, as pandas and the authors' scorer count) and the field.

Ids (stable, derived from the rows): pair ``n`` of the table of ``setting`` about image file
``F`` is ``<setting>_<image key of F>_p<n, 5 digits>`` (e.g. ``multi_obj_000000000139_p00042``);
its questions are ``<pair_id>_pos`` and ``<pair_id>_neg`` by their ``qtype`` suffix. The image key
is the file name's stem with everything but letters, digits and ``-`` turned into ``-``
(:func:`~finer_datasets.core.builder.image_key`). Questions and options are kept byte for byte;
the answer letter is ``LETTERS[gt_index]`` (A-E). ``k``, ``negated_index``, ``elements``, ``negated`` and
``option_types`` are read back from the text (:mod:`finer_datasets.mcq.release_text`); the records
carry no scene graph (``{"objects": [], "relations": []}``): the release has none.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from finer_datasets.constants import LETTERS, SETTING_ALIASES, SETTINGS
from finer_datasets.core.builder import image_key
from finer_datasets.errors import SourceError
from finer_datasets.mcq.records import image_record
from finer_datasets.mcq.release_text import option_types, recover_structure

__all__ = ["RELEASE_COLUMNS", "CHOICES", "ReleaseRow", "ReleasePair", "release_setting", "check_columns", "parse_row",
           "release_pairs", "pair_id", "pair_record", "image_records", "structure_counts", "EMPTY_SCENE_GRAPH"]

CHOICES = tuple(f"choice{i}" for i in range(1, len(LETTERS) + 1))
#: the columns every released table has (more are allowed and ignored)
RELEASE_COLUMNS = ("image", "qtype", "question", *CHOICES, "gt_index")
#: the scene graph of an imported record: the release has none
EMPTY_SCENE_GRAPH: dict[str, list[Any]] = {"objects": [], "relations": []}
_SUFFIX = re.compile(r"_(pos|neg)$")
_INTEGER = re.compile(r"\s*([+-]?[0-9]+)(?:\.0*)?\s*")


@dataclass(frozen=True)
class ReleaseRow:
    """One checked row of a released table."""

    file: str  # the table (or Parquet shard) it was read from
    row: int  # 0-based, after the header, counted over the whole table
    line: int | None  # the CSV line where the row ends (None for Parquet)
    image: str  # the image's file name
    qtype: str
    question: str
    options: tuple[str, ...]
    gt_index: int

    @property
    def polarity(self) -> str:
        return _SUFFIX.search(self.qtype).group(1)  # type: ignore[union-attr]  # checked by parse_row

    def fail(self, message: str, field: str | None = None) -> SourceError:
        return SourceError(message, path=self.file, line=self.line, record=f"row {self.row}", field=field)


@dataclass(frozen=True)
class ReleasePair:
    """Rows ``2n`` and ``2n + 1`` of a table: one ``_pos`` and one ``_neg`` question about one image."""

    setting: str
    index: int  # n
    positive: ReleaseRow
    negative: ReleaseRow

    @property
    def image(self) -> str:
        return self.positive.image


def release_setting(name: str) -> str | None:
    """The setting a table or split name stands for (``multi_obj``, ``multi_object``,
    ``mcq_multi_obj`` -> ``multi_obj``), or ``None``."""
    key = name.strip().lower().removeprefix("mcq_")
    key = SETTING_ALIASES.get(key, key)
    return key if key in SETTINGS else None


def check_columns(columns: Iterable[str], file: object) -> None:
    """A :class:`SourceError` naming the first column of :data:`RELEASE_COLUMNS` the table lacks."""
    present = set(columns)
    for column in RELEASE_COLUMNS:
        if column not in present:
            raise SourceError(f"missing column {column!r} (a released FINER table has "
                              f"{', '.join(RELEASE_COLUMNS)})", path=file, field=column)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and (m := _INTEGER.fullmatch(value)):
        return int(m.group(1))
    return None


def parse_row(values: Mapping[str, Any], *, file: object, row: int, line: int | None, image: str | None) -> ReleaseRow:
    """Check one table row (the columns of :data:`RELEASE_COLUMNS`; ``image`` is the image's file
    name, read by the caller from whatever the table stores)."""
    where = dict(path=file, line=line, record=f"row {row}")

    def text(field: str) -> str:
        value = values.get(field)
        if value is None:
            raise SourceError("missing value", field=field, **where)
        if not isinstance(value, str):
            raise SourceError(f"expected text, got {type(value).__name__} {value!r}", field=field, **where)
        if not value.strip():
            raise SourceError("empty text" if field != "image" else "empty image file name", field=field, **where)
        return value

    qtype = text("qtype")
    if not _SUFFIX.search(qtype):
        raise SourceError(f"qtype {qtype!r} does not end in _pos or _neg", field="qtype", **where)
    question = text("question")
    options = tuple(text(c) for c in CHOICES)
    raw = values.get("gt_index")
    gt_index = _integer(raw)
    if gt_index is None:
        raise SourceError(f"gt_index {raw!r} is not an integer", field="gt_index", **where)
    if not 0 <= gt_index < len(CHOICES):
        raise SourceError(f"gt_index {gt_index} is out of range: it counts choice1..choice{len(CHOICES)} from 0, "
                          f"so it is 0 to {len(CHOICES) - 1}", field="gt_index", **where)
    if image is None or not image.strip():
        raise SourceError("no image file name", field="image", **where)
    return ReleaseRow(file=str(file), row=row, line=line, image=image, qtype=qtype, question=question,
                      options=options, gt_index=gt_index)


def release_pairs(setting: str, rows: list[ReleaseRow], *, file: object) -> list[ReleasePair]:
    """The pairs of one table under the authors' pairing rule (module docstring)."""
    if len(rows) % 2:
        last = rows[-1]
        raise last.fail(f"odd number of rows ({len(rows)}): rows pair up two by two (a _pos and a _neg question "
                        "about one image), so the last row has no partner", "qtype")
    if not rows:
        raise SourceError("the table has no rows", path=file)
    pairs = []
    for index in range(len(rows) // 2):
        first, second = rows[2 * index], rows[2 * index + 1]
        if first.image != second.image:
            raise second.fail(f"image {second.image!r} differs from {first.image!r} in row {first.row}: the two rows "
                              "of a pair are about one image", "image")
        bases = [_SUFFIX.sub("", r.qtype) for r in (first, second)]
        if bases[0] != bases[1]:
            raise second.fail(f"qtype {second.qtype!r} is not of the type of {first.qtype!r} in row {first.row}: the "
                              "two rows of a pair share the qtype before _pos/_neg", "qtype")
        if first.polarity == second.polarity:
            raise second.fail(f"rows {first.row} and {second.row} are both _{first.polarity}: a pair is one _pos and "
                              "one _neg question", "qtype")
        positive, negative = (first, second) if first.polarity == "pos" else (second, first)
        pairs.append(ReleasePair(setting=setting, index=index, positive=positive, negative=negative))
    return pairs


def pair_id(pair: ReleasePair) -> str:
    return f"{pair.setting}_{image_key(Path(pair.image).stem)}_p{pair.index:05d}"


def _question(qid: str, setting: str, row: ReleaseRow) -> dict[str, Any]:
    return {"question_id": qid, "question": row.question, "options": list(row.options),
            "option_types": option_types(setting, row.options), "answer": LETTERS[row.gt_index]}


def pair_record(pair: ReleasePair) -> dict[str, Any]:
    """The pair as stored in a per-image record (``mcq_image.schema.json``, ``$defs/pair``)."""
    pid = pair_id(pair)
    pos, neg = pair.positive, pair.negative
    found = recover_structure(pair.setting, pos.question, neg.question, pos.options, neg.options)
    return {
        "pair_id": pid,
        "setting": pair.setting,
        "k": found.k,
        "negated_index": found.negated_index,
        "elements": list(found.elements),
        "negated": {"positive": found.negated[0], "negative": found.negated[1]} if found.negated else None,
        "positive": _question(f"{pid}_pos", pair.setting, pos),
        "negative": _question(f"{pid}_neg", pair.setting, neg),
    }


def image_records(dataset: str, pairs: Iterable[ReleasePair]) -> list[tuple[str, dict[str, Any], ReleaseRow]]:
    """``(image key, per-image record, first row about it)`` for every image, sorted by key.

    Two file names with the same key (``a.jpg`` and ``a.png``, ``x/a.jpg`` and ``y/a.jpg``) are a
    :class:`SourceError` naming the second one's row.
    """
    by_image: dict[str, list[ReleasePair]] = {}
    for pair in pairs:
        by_image.setdefault(pair.image, []).append(pair)
    keys: dict[str, str] = {}
    out = []
    for name, group in by_image.items():
        key = image_key(Path(name).stem)
        if keys.setdefault(key, name) != name:
            raise group[0].positive.fail(f"image files {keys[key]!r} and {name!r} both become key {key!r}", "image")
        record = image_record(dataset=dataset, image_id=Path(name).stem, image_file=name,
                              scene_graph=EMPTY_SCENE_GRAPH, pairs=[pair_record(p) for p in group])
        out.append((key, record, min((p.positive for p in group), key=lambda r: (r.file, r.row))))
    out.sort(key=lambda item: item[0])  # the shard writer's order
    return out


def structure_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per setting: pairs, pairs per recovered k (``"?"``: not recovered) and how many pairs the
    text gave ``k``, ``negated_index`` and ``elements``."""
    pairs: Counter[str] = Counter()
    by_k: dict[str, Counter[str]] = {s: Counter() for s in SETTINGS}
    found: dict[str, Counter[str]] = {s: Counter() for s in SETTINGS}
    for record in records:
        for pair in record["pairs"]:
            setting = pair["setting"]
            pairs[setting] += 1
            by_k[setting][str(pair["k"]) if pair["k"] is not None else "?"] += 1
            for name in ("k", "negated_index", "elements", "negated"):
                found[setting][name] += pair[name] not in (None, [])
    return {"pairs": {s: pairs[s] for s in SETTINGS},
            "pairs_by_k": {s: dict(sorted(by_k[s].items(), key=lambda kv: (kv[0] == "?", kv[0].zfill(4))))
                           for s in SETTINGS},
            "recovered": {s: {name: found[s][name] for name in ("k", "negated_index", "elements", "negated")}
                          for s in SETTINGS}}
