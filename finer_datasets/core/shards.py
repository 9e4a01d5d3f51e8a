"""Deterministic WebDataset writing: ``webdataset.TarWriter`` inside a thin layer of ours.

* :func:`encode_json` turns a record into canonical bytes (sorted keys, no spaces, UTF-8).
* :class:`TarWriter` writes samples (``key`` + ``{extension: bytes}``) into one tar through
  ``webdataset.TarWriter`` with fixed metadata (mtime 0, uid/gid 0, user and group names empty,
  mode 0644, PAX format, members as bytes: no encoder), so the same samples give the same bytes
  on every machine. Ours adds: keys must be strictly increasing (so member order is sorted and
  stable; webdataset sorts a sample's members by extension), the sha256 and size of the tar are
  computed while it is written, and with ``background=True`` the file writing and hashing run in a
  worker thread (both release the GIL), overlapping the caller's work on the next samples.
* :class:`ShardWriter` starts a new tar every ``max_samples`` samples or ``max_bytes`` bytes and
  calls ``post(ShardInfo)`` when a shard is complete. It is ours, not ``webdataset.ShardWriter``:
  that one counts only the members' payload towards ``maxsize`` (our limit is the tar's size, headers
  and padding included, so its shards would split elsewhere), opens its first tar in its constructor
  (an empty file before any sample), prints each new shard on stdout, and hands ``post`` only the
  file name (tests/test_shards_wds.py shows the split that differs).
* :func:`shard_pattern` is the brace pattern of a split's shards (``test-{00000..00003}.tar``),
  which webdataset and the dataset card use to name every shard of a release.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

__all__ = ["KEY_PATTERN", "encode_json", "TarWriter", "ShardWriter", "ShardInfo", "shard_name", "shard_pattern"]

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
_EXTENSION = re.compile(r"^[a-z0-9]+$")
#: the fixed tar metadata of every member (webdataset.TarWriter's arguments)
TAR_METADATA = {"user": "", "group": "", "mode": 0o644, "mtime": 0, "format": "PAX_FORMAT"}


def encode_json(record: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8 (not ASCII-escaped)."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def shard_name(prefix: str, index: int) -> str:
    """``<prefix>-NNNNN.tar``: the name of shard ``index``."""
    return f"{prefix}-{index:05d}.tar"


def shard_pattern(prefix: str, count: int) -> str:
    """The shards ``0 .. count-1`` of ``prefix`` as one name: ``<prefix>-{00000..NNNNN}.tar`` (brace
    notation, as webdataset expands it), or the one name when there is one shard."""
    if count < 1:
        raise ValueError("a split has at least one shard")
    return shard_name(prefix, 0) if count == 1 else f"{prefix}-{{{0:05d}..{count - 1:05d}}}.tar"


class _Chunks:
    """The file object webdataset writes into: it keeps what is written for the sink."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the chunks wait for :meth:`take`."""

    def take(self) -> list[bytes]:
        """What was written since the last call, as one chunk (tarfile writes in 10 KiB pieces)."""
        chunks, self._chunks = self._chunks, []
        return [b"".join(chunks)] if len(chunks) > 1 else chunks


class _Sink:
    """Writes chunks to a file and hashes them, inline."""

    def abort(self) -> None:
        """Nothing runs in the background."""

    def __init__(self, fileobj: BinaryIO):
        self._f = fileobj
        self._sha = hashlib.sha256()

    def put(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._f.write(chunk)
            self._sha.update(chunk)

    def close(self) -> str:
        return self._sha.hexdigest()


class _ThreadSink(_Sink):
    """Same as :class:`_Sink`, in a worker thread fed by a bounded queue (errors re-raised)."""

    def __init__(self, fileobj: BinaryIO, max_pending: int = 256):
        super().__init__(fileobj)
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="finer-tar-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunks := self._queue.get()) is not None:
            if self._error is None:
                try:
                    super().put(chunks)
                except BaseException as exc:  # handed to the producing thread
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, chunks: list[bytes]) -> None:
        self._check()
        self._queue.put(chunks)

    def close(self) -> str:
        self._queue.put(None)
        self._thread.join()
        self._check()
        return super().close()

    def abort(self) -> None:
        """Stop the worker without raising (used when the build already failed)."""
        if self._thread.is_alive():
            self._error = self._error or RuntimeError("aborted")
            self._queue.put(None)
            self._thread.join()


class TarWriter:
    """Write WebDataset samples to one binary file object, deterministically, with webdataset."""

    def __init__(self, fileobj: BinaryIO, *, background: bool = False):
        import webdataset

        self._sink = _ThreadSink(fileobj) if background else _Sink(fileobj)
        self._out = _Chunks()
        self._tar = webdataset.TarWriter(self._out, encoder=False, **TAR_METADATA)
        self.size = 0
        self.samples = 0
        self._last_key: str | None = None
        self._sha: str | None = None

    def write(self, key: str, members: dict[str, bytes]) -> int:
        """Write one sample; return the bytes written. ``key`` has no dots; extensions are lowercase."""
        if not KEY_PATTERN.match(key):
            raise ValueError(f"invalid WebDataset key {key!r}: use letters, digits, '_' and '-' only")
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(f"keys must be strictly increasing: {key!r} after {self._last_key!r}")
        for extension in members:
            if not _EXTENSION.match(extension):
                raise ValueError(f"invalid member extension {extension!r}")
        self._tar.write({"__key__": key, **members})
        self._sink.put(self._out.take())
        size = self._tar.tarstream.offset  # the tar's length so far, headers and padding included
        written, self.size = size - self.size, size
        self._last_key = key
        self.samples += 1
        return written

    def close(self) -> str:
        """Write the end-of-archive blocks (padded to tarfile's record size); return the sha256."""
        if self._sha is None:
            self._tar.close()
            self._sink.put(self._out.take())
            self.size = self._out.written
            self._sha = self._sink.close()
        return self._sha

    def abort(self) -> None:
        """Give up on this tar (its file is left incomplete); stops any worker thread."""
        self._sink.abort()


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
        background: bool = False,
    ):
        if max_samples < 1 or max_bytes < 1:
            raise ValueError("max_samples and max_bytes must be positive")
        self.root = Path(root)
        self.prefix = prefix
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.post = post
        self.background = background
        self.shards: list[ShardInfo] = []
        self._file: BinaryIO | None = None
        self._tar: TarWriter | None = None
        self._name = ""
        self._last_key: str | None = None

    def _open(self) -> TarWriter:
        self._name = shard_name(self.prefix, len(self.shards))
        path = self.root / self._name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")
        self._tar = TarWriter(self._file, background=self.background)
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

    def abort(self) -> None:
        """Stop writing after a failure: the current shard is left incomplete (callers delete it)."""
        if self._tar is not None:
            self._tar.abort()
            self._tar = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __exit__(self, *exc: object) -> None:
        self.abort()
