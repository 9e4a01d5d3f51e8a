"""The builder's image store: fetched images (or those of part builds) as files the core can ship.

Layout of the image folder (``--image-cache``, default ``OUT.images`` beside the output; never
inside it)::

    fetch/                  finer_datasets.fetch.ImageCache: verified downloads keyed by URL (resumable)
    files/<key>.<jpg|png>   what a sample ships: JPEG and PNG downloads byte for byte (a hard
                            link when possible), any other format as a lossless PNG of its first frame

:func:`fetch_outcomes` downloads every URL once (the cache never downloads a finished image
again, so a killed build resumes) and returns one :class:`Outcome` per row.
:func:`import_outcomes` does the same from verified part builds (``--part i/N``) without any
network: their shards give the stored images and their records the download facts; their build
reports give the dead URLs. ``url_rewrite`` (``(regex, replacement)``: a URL whose start matches
the regex has that start replaced) sends requests to another host while caching under the source
URL (the bundled sample is served by a local server, the one private address its build may
reach: ``allow_servers``).

:func:`check_image_cache` runs before anything is written: the folder must not be, sit inside or
contain the source (symlinks resolved), must be a folder, and its ``fetch/`` and ``files/`` must be
its own folders, not links.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import httpx

from finer_datasets.errors import OutputError, SourceError, UsageError

from .options import FETCH_TIMEOUT
from .source import Row

__all__ = ["Outcome", "fetch_outcomes", "import_outcomes", "check_image_cache", "RewriteTransport", "DEAD", "EXCLUDED",
           "UNSHIPPED"]

logger = logging.getLogger(__name__)

#: skip reasons after the fetch: the URL gave no usable image / the image is on the exclusion list
DEAD, EXCLUDED = "image_unavailable", "leakage_excluded"
#: a part build fetched this image but shipped no sample for it (skipped later for another reason)
UNSHIPPED = "unshipped"
_STORED = {"JPEG": "jpg", "PNG": "png"}


@dataclass(frozen=True)
class Outcome:
    """What became of one row's image: ``reason`` is None for a usable image (``path`` is its
    stored file, absent only for images a part build fetched but did not ship)."""

    reason: str | None
    detail: str = ""
    sha256: str | None = None
    size: int | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def source_fields(self) -> dict[str, Any]:
        """The download facts of a record's ``source``."""
        return {"sha256": self.sha256, "bytes": self.size, "format": self.format, "width": self.width,
                "height": self.height, "stored_as": self.path.suffix[1:] if self.path else None}


class RewriteTransport(httpx.AsyncBaseTransport):
    """Send a URL whose start matches the regular expression ``pattern`` to ``replacement`` + the
    rest (the request's other parts unchanged); other URLs pass through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, pattern: str, replacement: str):
        self.inner, self.pattern, self.replacement = inner, re.compile(pattern), replacement

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        found = self.pattern.match(url)
        if found:
            target = httpx.URL(self.replacement + url[found.end():])
            headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"host"]
            headers.insert(0, (b"Host", target.netloc))
            request = httpx.Request(request.method, target, headers=headers, stream=request.stream,
                                    extensions=request.extensions)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _replace_atomically(target: Path, write: Any) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _link_or_copy(src: Path, tmp: Path) -> None:
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)


def _store(files: Path, key: str, cached: Path, fmt: str | None) -> Path:
    """The shipped file of one download: a link/copy of JPEG and PNG, else a PNG of the first frame."""
    from PIL import Image

    extension = _STORED.get(fmt or "")
    if extension is not None:
        target = files / f"{key}.{extension}"
        _replace_atomically(target, lambda tmp: _link_or_copy(cached, tmp))
        return target
    target = files / f"{key}.png"

    def convert(tmp: Path) -> None:
        with Image.open(cached) as img:
            img.seek(0)
            frame = img.convert("RGBA" if img.mode in ("RGBA", "LA", "PA", "P") else "RGB")
            buffer = io.BytesIO()
            frame.save(buffer, format="PNG")
        tmp.write_bytes(buffer.getvalue())

    _replace_atomically(target, convert)
    return target


def check_image_cache(cache: Path, source: Path) -> None:
    """Refuse an image cache folder that could write into the source or that is not a folder:
    :class:`OutputError` (exit 6) when it is, sits inside or contains ``source`` (symlinks resolved)
    or when its ``fetch``/``files`` are links; :class:`UsageError` (exit 2) when it is a file."""
    real, src = Path(cache).resolve(), Path(source).resolve()
    if real == src or real.is_relative_to(src) or src.is_relative_to(real):
        where = "is" if real == src else "sits inside" if real.is_relative_to(src) else "contains"
        raise OutputError(f"--image-cache {cache}: it {where} the source {source}"
                          f"{f' (it resolves to {real})' if real != Path(cache).absolute() else ''}; a build never "
                          "writes into its source: choose a folder outside it")
    if Path(cache).exists() and not real.is_dir():
        raise UsageError(f"--image-cache {cache}: not a folder (a file is there); pass a folder, e.g. OUT.images")
    for name in ("fetch", "files"):
        inner = Path(cache) / name
        if inner.is_symlink() or (inner.exists() and not inner.is_dir()):
            raise OutputError(f"--image-cache {cache}: {name} there is a link or a file, not the cache's own folder; "
                              "remove it or choose another folder")


def fetch_outcomes(rows: Sequence[Row], root: Path, *, url_rewrite: tuple[str, str] | None = None,
                   concurrency: int = 64, per_host: int = 4, timeout: float = FETCH_TIMEOUT, max_bytes: int = 32 << 20,
                   retries: int = 3, allow_private_addresses: bool = False, allow_servers: Sequence[str] = (),
                   progress: bool | None = None) -> tuple[dict[str, Outcome], Any]:
    """Fetch every row's URL into ``root/fetch`` and store usable images under ``root/files``.

    Returns (outcome by row key, the :class:`~finer_datasets.fetch.FetchReport` of this run).
    A bad URL is an outcome (``image_unavailable`` with the fetcher's reason), never an exception.
    ``timeout`` bounds each request in all (connect, first byte, whole body); addresses follow
    :mod:`finer_datasets.fetch.address` (``private_address`` unless ``allow_private_addresses``
    or the server is one of ``allow_servers``, checked after ``url_rewrite``).
    """
    from finer_datasets.fetch import (
        AddressPolicy,
        ImageCache,
        default_transport,
        fetch_images,
    )

    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    wrap = (lambda pool: RewriteTransport(pool, *url_rewrite)) if url_rewrite else None
    policy = AddressPolicy.of(allow_private=allow_private_addresses, allow_servers=allow_servers)
    transport = default_transport(concurrency, wrap=wrap, policy=policy)
    report = fetch_images([r.url for r in rows], root / "fetch", concurrency=concurrency, per_host=per_host,
                          timeout=timeout, deadline=timeout, max_bytes=max_bytes, retries=retries,
                          transport=transport, progress=progress is not False)
    outcomes: dict[str, Outcome] = {}
    with ImageCache(root / "fetch") as cache:
        for row in rows:
            entry = cache.get(row.url)
            if entry is None or not entry.ok:
                reason = entry.reason if entry is not None else "not_fetched"
                outcomes[row.key] = Outcome(DEAD, f"{reason}: {row.url}")
                continue
            path = _store(files, row.key, cache.path(row.url), entry.format)
            outcomes[row.key] = Outcome(None, "", entry.sha256, entry.size, entry.format, entry.width, entry.height, path)
    return outcomes, report


def _part_report(folder: Path) -> list[dict[str, Any]]:
    path = folder / "build_report.json"
    try:
        skipped = json.loads(path.read_text("utf-8"))["skipped"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"not a build report of a part build ({exc})", path=path) from exc
    return skipped if isinstance(skipped, list) else []


def import_outcomes(rows: Sequence[Row], root: Path, parts: Sequence[Path]) -> dict[str, Outcome]:
    """The outcomes of ``rows`` from verified part builds (their shards, records and reports), stored
    under ``root/files`` exactly as the parts shipped them. A row that no part accounts for is a
    :class:`UsageError` (a part is missing, or the parts were built from another source)."""
    from finer_datasets.core.manifest import verify
    from finer_datasets.core.reader import iter_samples

    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    wanted = {(r.rel, r.row): r for r in rows}
    outcomes: dict[str, Outcome] = {}
    for folder in parts:
        manifest = verify(folder)
        for sample in iter_samples(folder, manifest):
            record = sample["json"]
            src = record["source"]
            row = wanted.get((src["file"], src["row"]))
            if row is None:
                continue
            data = sample[src["stored_as"]]["bytes"]
            target = files / f"{row.key}.{src['stored_as']}"
            _replace_atomically(target, lambda tmp: tmp.write_bytes(data))
            outcomes[row.key] = Outcome(None, "", src["sha256"], src["bytes"], src["format"], src["width"],
                                        src["height"], target)
        for skip in _part_report(folder):
            if not str(skip.get("record", "")).isdigit():
                continue
            row = wanted.get((skip.get("file"), int(skip["record"])))
            if row is None or row.key in outcomes:
                continue
            reason = skip.get("reason")
            if reason in (DEAD, EXCLUDED):
                outcomes[row.key] = Outcome(reason, skip.get("detail", ""))
            elif reason not in ("invalid_url", "missing_caption", "duplicate_url"):
                outcomes[row.key] = Outcome(None, UNSHIPPED)  # fetched, then skipped for a later reason
    missing = [r for r in rows if r.key not in outcomes]
    if missing:
        first = missing[0]
        raise UsageError(f"no part build accounts for {len(missing)} image(s), e.g. {first.rel} row {first.row} "
                         f"({first.url}); pass every part (1/N .. N/N) built from this source with the same options")
    return outcomes
