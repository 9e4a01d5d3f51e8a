"""Reading the authors' released FINER tables from a folder (the I/O half of
:mod:`finer_datasets.mcq.release_import`).

A folder holds one table per setting, found by name (:func:`find_tables`):

* ``<setting>.csv`` / ``.tsv`` / ``.parquet`` at the top (``multi_obj.csv`` as in the authors'
  repository; ``multi_object``, ``mcq_multi_obj`` ... name the same setting);
* or Parquet shards ``<split>-NNNNN-of-NNNNN.parquet`` at the top or in ``data/`` -- the layout of
  a Hub dataset pushed with ``datasets`` (``data/multi_obj-00000-of-00001.parquet``), read in
  shard order as one table.

CSV is read as text exactly as written (UTF-8, a leading byte-order mark dropped, quoted fields
with commas and line breaks kept; nothing is stripped or converted), so a question or an option is
the same bytes as in the file. Every problem is a one-line :class:`SourceError` naming the file
(and line). An image cell is a file name (CSV, a string column) or the bytes of an ``Image``
feature (``{"bytes", "path"}``; the file name is then ``image_filename``, else the path's name).
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from finer_datasets.constants import SETTINGS
from finer_datasets.errors import SourceError
from finer_datasets.mcq.release_import import check_columns, release_setting

__all__ = ["ReleaseTable", "find_tables", "iter_rows", "image_cell", "TABLE_SUFFIXES"]

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
_SHARD = re.compile(r"^(?P<split>.+?)-(?P<index>[0-9]{5})-of-(?P<count>[0-9]{5})\.parquet$")
_BATCH = 512


@dataclass(frozen=True)
class ReleaseTable:
    """The table of one setting: one file, or Parquet shards in order."""

    setting: str
    files: tuple[Path, ...]

    @property
    def name(self) -> str:
        return self.files[0].name if len(self.files) == 1 else f"{self.files[0].parent.name}/{self.setting} shards"


def _shards(folder: Path, files: list[Path]) -> dict[str, list[Path]]:
    groups: dict[str, list[tuple[int, int, Path]]] = {}
    for path in files:
        m = _SHARD.match(path.name)
        if m:
            groups.setdefault(m.group("split"), []).append((int(m.group("index")), int(m.group("count")), path))
    out = {}
    for split, shards in groups.items():
        shards.sort()
        count = shards[0][1]
        if [i for i, _, _ in shards] != list(range(count)) or {n for _, n, _ in shards} != {count}:
            raise SourceError(f"the Parquet shards of split {split!r} are incomplete: found "
                              f"{', '.join(p.name for _, _, p in shards)}", path=folder)
        out[split] = [p for _, _, p in shards]
    return out


def find_tables(folder: Path) -> list[ReleaseTable]:
    """The tables of the folder, in the order of the settings; a :class:`SourceError` when there is
    none, or two for one setting."""
    found: dict[str, list[tuple[Path, ...]]] = {}
    ignored = []
    for where in (folder, folder / "data"):
        files = sorted(p for p in where.iterdir() if p.is_file()) if where.is_dir() else []
        for split, shards in _shards(where, files).items():
            setting = release_setting(split)
            if setting is None:
                ignored.append(shards[0].name)
                continue
            found.setdefault(setting, []).append(tuple(shards))
        for path in files:
            if path.suffix.lower() in TABLE_SUFFIXES and not _SHARD.match(path.name):
                setting = release_setting(path.stem)
                if setting is None:
                    ignored.append(path.name)
                else:
                    found.setdefault(setting, []).append((path,))
    if ignored:
        logger.warning("%s: ignored tables that name no FINER setting: %s", folder, ", ".join(sorted(ignored)))
    tables = []
    for setting, candidates in found.items():
        if len(candidates) > 1:
            names = " and ".join(c[0].relative_to(folder).as_posix() for c in candidates)
            raise SourceError(f"two tables for setting {setting}: {names}", path=folder)
        tables.append(ReleaseTable(setting, candidates[0]))
    if not tables:
        raise SourceError("no released FINER tables here: expected multi_obj.csv, multi_attr.csv, multi_rel.csv and "
                          "wh.csv (or .tsv / .parquet, or the Hub layout data/multi_obj-00000-of-00001.parquet)",
                          path=folder)
    return sorted(tables, key=lambda t: SETTINGS.index(t.setting))


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    with handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise SourceError("empty file: no header row", path=path)
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise SourceError(f"column {repeated[0]!r} appears twice in the header", path=path, line=1,
                                  field=repeated[0])
            check_columns(header, path)
            row = 0
            for fields in reader:
                if not fields:  # a blank line (pandas skips those too)
                    continue
                if len(fields) != len(header):
                    raise SourceError(f"{len(fields)} fields where the header has {len(header)}", path=path,
                                      line=reader.line_num, record=f"row {row}")
                yield reader.line_num, dict(zip(header, fields))
                row += 1
        except UnicodeDecodeError as exc:
            raise SourceError(f"not UTF-8 text (byte offset {exc.start} of a chunk near line {reader.line_num + 1})",
                              path=path) from exc
        except csv.Error as exc:
            raise SourceError(f"not valid {'CSV' if delimiter == ',' else 'TSV'}: {exc}", path=path,
                              line=reader.line_num) from exc


def _parquet_rows(path: Path) -> Iterator[tuple[None, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        check_columns(table.schema_arrow.names, path)
        for batch in table.iter_batches(batch_size=_BATCH):
            for row in batch.to_pylist():
                yield None, row
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"not a readable Parquet file: {str(exc).splitlines()[0] if str(exc) else exc}",
                          path=path) from exc


def iter_rows(table: ReleaseTable) -> Iterator[tuple[Path, int | None, int, dict[str, Any]]]:
    """``(file, CSV line or None, row, values)`` of every row of the table; ``row`` counts from 0
    over all its shards, as the table loaded whole would."""
    row = 0
    for path in table.files:
        delimiter = TABLE_SUFFIXES[path.suffix.lower()]
        rows = _parquet_rows(path) if delimiter is None else _csv_rows(path, delimiter)
        for line, values in rows:
            yield path, line, row, values
            row += 1


def image_cell(values: dict[str, Any]) -> tuple[str | None, bytes | None]:
    """``(file name, embedded bytes or None)`` of a row's image (module docstring)."""
    cell, filename = values.get("image"), values.get("image_filename")
    named = filename if isinstance(filename, str) and filename.strip() else None
    if isinstance(cell, str):
        return cell, None
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
        name = named or (PurePosixPath(str(path)).name if path else None)
        return name, bytes(data) if data is not None else None
    if isinstance(cell, (bytes, bytearray)):
        return named, bytes(cell)
    return named, None
