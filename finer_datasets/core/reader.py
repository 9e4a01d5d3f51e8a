"""Reading the samples of a dataset folder straight from its tar shards (the writer is shards.py).

``finer score`` and ``finer export`` read the exact bytes the manifest vouches for: the ``json``
record of every sample and, for exports, the image member byte for byte (never decoded and
re-encoded). No ``datasets`` cache is written. Works for both layouts (per image, and 1.x per pair).
A builder whose source is a built folder takes each image by reference
(:func:`iter_image_refs`): a :class:`ShardMember` reads its bytes from the shard when the build
writes it, so the core copies them as they are.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

__all__ = ["iter_samples", "iter_records", "iter_image_refs", "ShardMember"]

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


@dataclass(frozen=True)
class ShardMember:
    """An image stored in a built folder's shard, given as a sample's ``image`` by a builder whose
    source is a built folder (:func:`finer_datasets.core.images.read_image` reads it like a file).
    It remembers where the bytes lie (offset and size in the tar): each read is one seek, from any
    thread, and the bytes are copied as they are."""

    shard: Path
    name: str
    offset: int
    size: int

    @property
    def suffix(self) -> str:
        return "." + self.name.rpartition(".")[2]

    def read_bytes(self) -> bytes:
        with open(self.shard, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self}: the shard ends inside the member")
        return data

    def __str__(self) -> str:
        return f"{self.shard}:{self.name}"


def iter_image_refs(folder: Path, manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], ShardMember | None]]:
    """``(key, record, image)`` of every sample in shard order: the parsed ``json`` record and its
    image member by reference (``None`` for a sample without one); image bytes are not read."""
    for shard in _shards(folder, manifest):
        with tarfile.open(shard) as tar:
            key, record, image = None, None, None
            for member in tar:
                if not member.isfile():
                    continue
                name, _, extension = member.name.partition(".")
                if key is not None and name != key:
                    yield key, record, image
                    record, image = None, None
                key = name
                if extension == "json":
                    record = json.loads(tar.extractfile(member).read())
                elif extension in _IMAGE_EXTENSIONS:
                    image = ShardMember(shard, member.name, member.offset_data, member.size)
            if key is not None:
                yield key, record, image
