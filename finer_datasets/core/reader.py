"""Reading the samples of a dataset folder straight from its tar shards (the writer is shards.py).

``finer score`` and ``finer export`` read the exact bytes the manifest vouches for: the ``json``
record of every sample and, for exports, the image member byte for byte (never decoded and
re-encoded). No ``datasets`` cache is written. Works for both layouts (per image, and 1.x per pair).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["iter_samples", "iter_records"]

_IMAGE_EXTENSIONS = ("jpg", "png", "jpeg", "webp")


def _shards(folder: Path, manifest: dict[str, Any]) -> list[Path]:
    return [folder / f["path"] for f in sorted(manifest["files"], key=lambda f: f["path"])
            if f["path"].startswith("data/") and f["path"].endswith(".tar")]


def iter_samples(folder: Path, manifest: dict[str, Any], *, images: bool = True) -> Iterator[dict[str, Any]]:
    """Rows like ``load_dataset`` gives them: ``__key__``, ``json`` (parsed) and the image member as
    ``{"bytes": ...}`` under its extension (omitted with ``images=False``), in shard order."""
    for shard in _shards(folder, manifest):
        with tarfile.open(shard) as tar:
            row: dict[str, Any] = {}
            for member in tar:
                if not member.isfile():
                    continue
                key, _, extension = member.name.partition(".")
                if row and row["__key__"] != key:
                    yield row
                    row = {}
                row.setdefault("__key__", key)
                if extension == "json":
                    row["json"] = json.loads(tar.extractfile(member).read())
                elif images and extension in _IMAGE_EXTENSIONS:
                    row[extension] = {"bytes": tar.extractfile(member).read(), "path": None}
            if row:
                yield row


def iter_records(folder: Path, manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Only the ``json`` record of every sample."""
    for row in iter_samples(folder, manifest, images=False):
        yield row["json"]
