"""Reading Pixmo-cap: Parquet files with ``image_url`` and ``caption`` (``transcripts`` is not used).

Source layout (``--source DIR``): every ``*.parquet`` file under ``DIR`` (sub-folders too), read in
the order of their relative paths, e.g. the first shards of ``allenai/pixmo-cap``
(``data/train-00000-of-000NN.parquet`` ...), as :func:`download_source` fetches them. Each row
becomes one :class:`Row` keyed by its file and row number, so a record always says which shard
and row it came from.

Row checks (each failure is one skip in ``build_report.json``, naming file, row and field):
``invalid_url`` (not an http(s) URL), ``missing_caption`` (null or blank) are defects;
``duplicate_url`` (an earlier row has the same URL) and ``leakage_excluded`` (a COCO or DOCCI
URL, see :data:`LEAKAGE_PATTERNS`) are skips by design. A file that is not Parquet or lacks a
column is a :class:`~finer_datasets.errors.SourceError` (exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from finer_datasets.core.builder import BuildReport, image_key
from finer_datasets.core.source import refused
from finer_datasets.errors import SourceError

__all__ = ["Row", "parquet_files", "read_rows", "leakage_match", "LEAKAGE_PATTERNS", "CAPTION_WORDS",
           "prompt_caption", "download_source", "COLUMNS", "file_rows"]

COLUMNS = ("image_url", "caption")
#: the LLM sees the first 512 whitespace-separated words of a caption (paper: first 512 tokens)
CAPTION_WORDS = 512
#: URL patterns of images the paper excludes to avoid in-distribution leakage: COCO (every
#: FINER-CompreCap image) and DOCCI (FINER-DOCCI's source); checked on host and path, case-insensitive
LEAKAGE_PATTERNS = {
    "COCO": re.compile(r"(^|\.)cocodataset\.org$|/coco(20\d\d)?/|COCO_(train|val|test)20\d\d_|/(train|val|test)20(14|15|17)/",
                       re.I),
    "DOCCI": re.compile(r"(^|[/._-])docci([/._-]|$)", re.I),
}


@dataclass(frozen=True)
class Row:
    """One usable source row: sample key, file (absolute and relative), row number, URL, caption."""

    key: str
    file: Path
    rel: str
    row: int
    url: str
    caption: str


def parquet_files(source: Path) -> list[Path]:
    """Every ``*.parquet`` file under ``source``, sorted by relative path. A link that leads outside the
    source, a FIFO, device or socket named ``*.parquet`` is a :class:`SourceError` (never opened)."""
    found = []
    for path in sorted(Path(source).rglob("*.parquet"), key=lambda p: p.relative_to(source).as_posix()):
        reason = refused(path, Path(source))
        if reason is not None:
            raise SourceError(reason, path=path)
        if path.is_file():
            found.append(path)
    return found


def prompt_caption(caption: str) -> tuple[str, int]:
    """The caption as the LLM sees it (first :data:`CAPTION_WORDS` words, whitespace normalised)
    and its number of words."""
    words = caption.split()[:CAPTION_WORDS]
    return " ".join(words), len(words)


def leakage_match(url: str) -> str | None:
    """``"COCO"`` / ``"DOCCI"`` when the URL's host or path names that dataset, else ``None``."""
    parts = urlsplit(url)
    for name, pattern in LEAKAGE_PATTERNS.items():
        if pattern.search(parts.hostname or "") or pattern.search(parts.path):
            return name
    return None


def _valid_url(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _open(path: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile``; SourceError when the file is not readable Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"not a readable Parquet file ({str(exc).splitlines()[0]})", path=path) from exc


def file_rows(path: Path) -> int:
    """The number of rows of a Parquet file (from its footer)."""
    return _open(path).metadata.num_rows


def _iter_file(path: Path) -> Iterator[tuple[int, Any, Any]]:
    """``(row, image_url, caption)`` of one Parquet file; SourceError for unreadable files/columns."""
    import pyarrow as pa

    handle = _open(path)
    names = handle.schema_arrow.names
    for column in COLUMNS:
        if column not in names:
            raise SourceError(f"missing column (the file has {', '.join(names) or 'none'})", path=path, field=column)
        kind = handle.schema_arrow.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise SourceError(f"expected a string column, got {kind}", path=path, field=column)
    row = 0
    try:
        for batch in handle.iter_batches(batch_size=65_536, columns=list(COLUMNS)):
            for url, caption in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                yield row, url, caption
                row += 1
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"cannot read row {row} on ({str(exc).splitlines()[0]})", path=path, record=row) from exc


def read_rows(source: Path, report: BuildReport, *, max_images: int | None = None,
              totals: dict[str, int] | None = None) -> list[Row]:
    """The usable rows of the source, in file and row order (skips reported; at most ``max_images``).
    ``totals`` receives the number of rows read per file (relative path)."""
    files = parquet_files(source)
    if not files:
        raise SourceError("no .parquet files in the source folder (expected Pixmo-cap shards with image_url and "
                          "caption columns)", path=source)
    rows: list[Row] = []
    seen: dict[str, tuple[str, int]] = {}
    keys: dict[str, tuple[str, int]] = {}
    for path in files:
        rel = path.relative_to(source).as_posix()
        stem = image_key(rel.removesuffix(".parquet"))
        for number, url, caption in _iter_file(path):
            if max_images is not None and len(rows) >= max_images:
                return rows
            if totals is not None:
                totals[rel] = number + 1
            if not _valid_url(url):
                report.skip("invalid_url", path=path, record=number, field="image_url",
                            detail=f"not an http(s) URL: {str(url)[:120]!r}")
                continue
            if not isinstance(caption, str) or not caption.strip():
                report.skip("missing_caption", path=path, record=number, field="caption",
                            detail="null" if caption is None else "blank caption")
                continue
            leak = leakage_match(url)
            if leak is not None:
                report.skip("leakage_excluded", path=path, record=number, field="image_url",
                            detail=f"{leak} image URL: {url}")
                continue
            if url in seen:
                first = seen[url]
                report.skip("duplicate_url", path=path, record=number, field="image_url",
                            detail=f"same URL as {first[0]} row {first[1]}")
                continue
            seen[url] = (rel, number)
            key = f"{stem}-{number:07d}"
            if key in keys:
                raise SourceError(f"files {keys[key][0]} and {rel} both give sample key {key!r}; rename one",
                                  path=path, record=number)
            keys[key] = (rel, number)
            rows.append(Row(key, path, rel, number, url, caption))
    return rows


def download_source(dest: str | Path, *, repo_id: str = "allenai/pixmo-cap", files: int = 6,
                    revision: str | None = None) -> list[Path]:
    """Download the first ``files`` Parquet shards of a Hub dataset (default: Pixmo-cap, as the paper
    used its first 6 shards) into ``dest``, keeping their repository paths; returns the local files.
    The ablation presets need more: ``shards_for(PRESETS[name])`` of
    :mod:`finer_datasets.preference.configs` (9 for a Table 5 subset at the paper's yield).

    Uses ``huggingface_hub`` (network; not exercised by the offline tests). Pass ``dest`` as
    ``--source`` afterwards; the manifest fingerprints the files, and the card records the build.
    """
    from huggingface_hub import HfApi, hf_hub_download

    names = sorted(f for f in HfApi().list_repo_files(repo_id, repo_type="dataset", revision=revision)
                   if f.endswith(".parquet"))[:files]
    if not names:
        raise SourceError(f"no Parquet files in the Hub dataset {repo_id}", path=repo_id)
    return [Path(hf_hub_download(repo_id, name, repo_type="dataset", revision=revision, local_dir=str(dest)))
            for name in names]
