"""The on-disk image cache: one file per finished image plus a SQLite index keyed by URL.

Layout under the cache folder::

    index.sqlite            url -> status, reason, sha256, size, format, width, height, ... (WAL mode)
    images/ab/<sha256(url)> the verified bytes of each usable image, exactly as downloaded
    tmp/                    bytes being written; emptied whenever a cache is opened
    lock                    held (flock) by the one process that has the cache open

Guarantees: an image file appears only complete (written to ``tmp/``, fsynced, then moved with
``os.replace``) and before its index row; each row is committed on its own, so a process killed at
any point loses at most the image it was writing. An image file whose row was lost (killed between
the move and the commit) is found again by :meth:`ImageCache.orphan`, so it is never downloaded again.
The cache writes only its own files: an entry of the layout that is a symbolic link (planted to
write elsewhere) is refused with :class:`~finer_datasets.errors.OutputError`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from finer_datasets.errors import FinerError, OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, one process per cache by convention
    fcntl = None  # type: ignore[assignment]

__all__ = ["CacheBusyError", "CacheEntry", "ImageCache", "url_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    url TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ok', 'dead')),
    reason TEXT,
    sha256 TEXT,
    size INTEGER,
    format TEXT,
    width INTEGER,
    height INTEGER,
    content_type TEXT,
    final_url TEXT,
    attempts INTEGER NOT NULL,
    fetched_at REAL NOT NULL
)
"""
_OWN = ("images", "tmp", "lock", "index.sqlite", "index.sqlite-wal", "index.sqlite-shm")
_COLUMNS = ("url", "status", "reason", "sha256", "size", "format", "width", "height",
            "content_type", "final_url", "attempts", "fetched_at")


class CacheBusyError(FinerError):
    """The cache folder is already open in another process."""

    exit_code = 1


def url_key(url: str) -> str:
    """``sha256(url)`` in hex: the name of the URL's image file."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """What the cache knows about one URL. ``status`` is ``"ok"`` (a verified image) or ``"dead"``.

    For ``ok`` entries ``sha256`` is the hash of the stored bytes and ``format``/``width``/``height``
    come from the full decode; for ``dead`` entries ``reason`` says why (see ``finer_datasets.fetch``).
    """

    url: str
    status: str
    reason: str | None = None
    sha256: str | None = None
    size: int | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    content_type: str | None = None
    final_url: str | None = None
    attempts: int = 0
    fetched_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ImageCache:
    """A resumable cache of verified images; open it with ``with ImageCache(folder) as cache:``.

    Only one process may have a folder open at a time (:class:`CacheBusyError` otherwise). All
    methods are meant to be called from one thread, except :meth:`write_image`, which only touches
    files and may run in worker threads.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync
        self.images_dir = self.root / "images"
        self.tmp_dir = self.root / "tmp"
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def open(self) -> ImageCache:
        """Take the lock, drop leftovers of a killed run from ``tmp/`` and open the index."""
        if self._db is not None:
            return self
        for name in _OWN:
            self._refuse_link(self.root / name)
        for folder in (self.root, self.images_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise CacheBusyError(f"image cache {self.root} is in use by another process") from None
        self._lock_fd = fd
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink()
        db = sqlite3.connect(self.root / "index.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a committed row survives a killed process
        db.execute(_SCHEMA)
        self._db = db
        return self

    def _refuse_link(self, path: Path) -> None:
        if path.is_symlink():
            raise OutputError(f"image cache {self.root}: {path.relative_to(self.root)} is a symbolic link; the cache "
                              "writes only its own files and folders (remove the link or use another folder)")

    def close(self) -> None:
        """Close the index and release the lock (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> ImageCache:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise FinerError(f"image cache {self.root} is not open (use `with ImageCache(...)`)")
        return self._db

    # --- reading -----------------------------------------------------------------------------
    def path(self, url: str) -> Path:
        """Where the image of ``url`` is (or would be) stored."""
        key = url_key(url)
        return self.images_dir / key[:2] / key

    def get(self, url: str) -> CacheEntry | None:
        """The entry for ``url``, or None; an ``ok`` entry whose file has gone is reported as None."""
        row = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM images WHERE url = ?", (url,)).fetchone()
        if row is None:
            return None
        entry = CacheEntry(*row)
        if entry.ok and not self.path(url).is_file():
            return None
        return entry

    def read(self, url: str) -> bytes | None:
        """The stored bytes of a usable image, or None."""
        entry = self.get(url)
        return self.path(url).read_bytes() if entry is not None and entry.ok else None

    def orphan(self, url: str) -> Path | None:
        """An image file for ``url`` that has no ``ok`` row (its run was killed before the commit)."""
        path = self.path(url)
        return path if path.is_file() else None

    def entries(self, status: str | None = None) -> Iterator[CacheEntry]:
        """Every entry (or those with ``status``), in URL order."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM images"
        rows = self.db.execute(query + " WHERE status = ? ORDER BY url", (status,)) if status else \
            self.db.execute(query + " ORDER BY url")
        for row in rows:
            yield CacheEntry(*row)

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    # --- writing -----------------------------------------------------------------------------
    def write_image(self, url: str, body: bytes) -> Path:
        """Store ``body`` as the image of ``url``, atomically: it is complete or absent, never partial."""
        final = self.path(url)
        final.parent.mkdir(exist_ok=True)
        self._refuse_link(final.parent)
        tmp = self.tmp_dir / f"{final.name}.{uuid.uuid4().hex}.part"
        with open(tmp, "wb") as handle:
            handle.write(body)
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, final)
        return final

    def record(self, entry: CacheEntry) -> None:
        """Commit ``entry`` (replacing any earlier entry for its URL); a dead entry drops the file."""
        if not entry.ok:
            self.path(entry.url).unlink(missing_ok=True)
        if not entry.fetched_at:
            entry = CacheEntry(**{**asdict(entry), "fetched_at": time.time()})
        values = tuple(getattr(entry, name) for name in _COLUMNS)
        self.db.execute(f"INSERT OR REPLACE INTO images ({', '.join(_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)
