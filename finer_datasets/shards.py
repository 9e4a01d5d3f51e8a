"""Deterministic WebDataset writing in small layers: encoder -> TarWriter -> ShardWriter.

* :func:`encode_json` turns a record into canonical bytes (sorted keys, no spaces, UTF-8).
* :class:`TarWriter` writes samples (``key`` + ``{extension: bytes}``) into one tar with fixed
  metadata (mtime 0, uid/gid 0, mode 0644, no user names); members of a sample are sorted by
  extension and keys must be strictly increasing, so member order is sorted and stable. The
  sha256 and size of the tar are computed while it is written.
* :class:`ShardWriter` starts a new tar every ``max_samples`` samples or ``max_bytes`` bytes and
  calls ``post(ShardInfo)`` when a shard is complete.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

__all__ = ["KEY_PATTERN", "encode_json", "TarWriter", "ShardWriter", "ShardInfo"]

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_EXTENSION = re.compile(r"^[a-z0-9]+$")


def encode_json(record: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8 (not ASCII-escaped)."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


class TarWriter:
    """Write WebDataset samples to one binary file object, deterministically."""

    def __init__(self, fileobj: BinaryIO):
        self._f = fileobj
        self._sha = hashlib.sha256()
        self.size = 0
        self.samples = 0
        self._last_key: str | None = None
        self._closed = False

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self._sha.update(data)
        self.size += len(data)

    def write(self, key: str, members: dict[str, bytes]) -> int:
        """Write one sample; return the bytes written. ``key`` has no dots; extensions are lowercase."""
        if not KEY_PATTERN.match(key):
            raise ValueError(f"invalid WebDataset key {key!r}: use letters, digits, '_' and '-' only")
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(f"keys must be strictly increasing: {key!r} after {self._last_key!r}")
        start = self.size
        for extension in sorted(members):
            if not _EXTENSION.match(extension):
                raise ValueError(f"invalid member extension {extension!r}")
            data = members[extension]
            self._write(_header(f"{key}.{extension}", len(data)))
            self._write(data)
            remainder = len(data) % _BLOCK
            if remainder:
                self._write(b"\0" * (_BLOCK - remainder))
        self._last_key = key
        self.samples += 1
        return self.size - start

    def close(self) -> str:
        """Write the end-of-archive blocks (padded like ``tarfile``) and return the sha256."""
        if not self._closed:
            self._write(b"\0" * (2 * _BLOCK))
            remainder = self.size % _RECORD
            if remainder:
                self._write(b"\0" * (_RECORD - remainder))
            self._closed = True
        return self._sha.hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    """A finished shard: path relative to the dataset root, sha256, size and sample count."""

    path: str
    sha256: str
    size: int
    samples: int


class ShardWriter:
    """Split samples over ``<prefix>-00000.tar``, ``<prefix>-00001.tar``, ... under ``root``."""

    def __init__(
        self,
        root: Path,
        prefix: str,
        *,
        max_samples: int = 10_000,
        max_bytes: int = 512 * 1024 * 1024,
        post: Callable[[ShardInfo], None] | None = None,
    ):
        if max_samples < 1 or max_bytes < 1:
            raise ValueError("max_samples and max_bytes must be positive")
        self.root = Path(root)
        self.prefix = prefix
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.post = post
        self.shards: list[ShardInfo] = []
        self._file: BinaryIO | None = None
        self._tar: TarWriter | None = None
        self._name = ""
        self._last_key: str | None = None

    def _open(self) -> TarWriter:
        self._name = f"{self.prefix}-{len(self.shards):05d}.tar"
        path = self.root / self._name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")
        self._tar = TarWriter(self._file)
        return self._tar

    def _finish(self) -> None:
        if self._tar is None or self._file is None:
            return
        sha = self._tar.close()
        self._file.close()
        info = ShardInfo(self._name, sha, self._tar.size, self._tar.samples)
        self.shards.append(info)
        self._tar = self._file = None
        if self.post is not None:
            self.post(info)

    def write(self, key: str, members: dict[str, bytes]) -> None:
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(f"keys must be strictly increasing: {key!r} after {self._last_key!r}")
        tar = self._tar
        if tar is not None and (tar.samples >= self.max_samples or tar.size >= self.max_bytes):
            self._finish()
            tar = None
        if tar is None:
            tar = self._open()
        tar.write(key, members)
        self._last_key = key

    def close(self, *, keep_empty: bool = False) -> list[ShardInfo]:
        """Finish the current shard and return every shard written.

        With ``keep_empty``, a writer that received no sample still writes one empty shard.
        """
        if keep_empty and not self.shards and self._tar is None:
            self._open()
        self._finish()
        return list(self.shards)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
