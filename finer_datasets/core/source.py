"""Reading source files safely: every failure is a one-line :class:`SourceError` naming the file
(and line), never a traceback -- missing file, a folder where a file is expected, unreadable,
not UTF-8, not JSON, nested deeper than any real annotation, or an object with a repeated key
(JSON allows it, Python would silently keep the last value).

Only regular files are read, and a build never reads outside its source: :func:`refused` says,
from ``stat`` alone (nothing is opened), why a path must not be read -- a link (of the file or of
a folder on its way) that leads outside the source folder, or a FIFO, device or socket (a FIFO
would block forever, ``/dev/zero`` never ends). :func:`open_regular` opens without blocking and
checks again on the open file, so a file swapped after the check is refused too.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from finer_datasets.errors import SourceError

__all__ = ["read_json", "parse_json", "iter_jsonl", "refused", "open_regular", "read_regular", "MAX_LINE_BYTES"]

#: longest line accepted in a JSON Lines source (a 10 MB description is an error, not a record)
MAX_LINE_BYTES = 1 << 20


def _no_duplicates(path: Path, line: int | None):  # noqa: ANN202 - a json object_pairs_hook
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise SourceError(f"key {key!r} appears twice in one JSON object", path=path, line=line, field=key)
            out[key] = value
        return out

    return hook


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is (``None`` for a regular file or a folder)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _escape(path: Path, root: Path) -> str | None:
    """Why ``path`` leads outside ``root`` (the first link on its way that does), or ``None``."""
    base, target = os.path.abspath(root), os.path.abspath(path)
    real_root = os.path.realpath(base)
    if not _inside(target, base):
        return f"{path} is not inside the source folder {root}"
    current = base
    for part in Path(os.path.relpath(target, base)).parts:
        current = os.path.join(current, part)
        real = os.path.realpath(current)
        if not _inside(real, real_root):
            shown = os.path.relpath(current, base)
            return f"{shown} is a link to {real}, outside the source folder (a build never reads outside its source)"
    return None


def refused(path: Path, root: Path | None = None) -> str | None:
    """Why ``path`` must never be read as a source file, found without opening it: a link that
    leads outside ``root`` (when given), or a FIFO, device or socket. ``None`` when it may be
    read -- or when it is missing or a folder, which the caller reports in its usual words."""
    if root is not None:
        escape = _escape(Path(path), Path(root))
        if escape is not None:
            return escape
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing, a dangling link, unreadable: open() says so
    kind = _kind(mode)
    return None if kind is None else f"is {kind}, not a regular file (only regular files are read from a source)"


def open_regular(path: Path, root: Path | None = None) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (inside ``root`` when given).

    :class:`SourceError` (naming ``path``) when :func:`refused` refuses it; ``OSError`` as
    ``open`` raises it otherwise (``FileNotFoundError``, ``IsADirectoryError``, ...). The file is
    opened with ``O_NONBLOCK`` and checked again on the descriptor, so nothing blocks.
    """
    reason = refused(path, root)
    if reason is not None:
        raise SourceError(reason, path=path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        kind = _kind(mode)
        if kind is not None:
            raise SourceError(f"is {kind}, not a regular file (only regular files are read from a source)", path=path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, root: Path | None = None, *, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`); ``ValueError`` when it
    holds more than ``limit`` bytes (read no further than that)."""
    with open_regular(path, root) as handle:
        if limit is None:
            return handle.read()
        if os.fstat(handle.fileno()).st_size > limit:  # (a sparse 100 GB file is refused unread)
            raise ValueError(f"file larger than the limit of {limit:,} bytes")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"file larger than the limit of {limit:,} bytes")
    return data


def _open(path: Path, root: Path | None = None) -> BinaryIO:
    """``path`` opened for reading, or a one-line :class:`SourceError` saying why not."""
    try:
        return open_regular(path, root)
    except FileNotFoundError as exc:
        raise SourceError("file not found", path=path) from exc
    except IsADirectoryError as exc:
        raise SourceError("is a folder, expected a file", path=path) from exc
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", path=path) from exc


def _loads(text: str, path: Path, line: int | None) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates(path, line))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if line is None else f"column {exc.colno}"
        raise SourceError(f"not valid JSON: {exc.msg} at {where}", path=path, line=line) from exc
    except RecursionError as exc:
        raise SourceError("JSON nested too deeply to be an annotation", path=path, line=line) from exc


def read_json(path: Path, *, root: Path | None = None) -> Any:
    """The parsed JSON document in ``path`` (UTF-8, a leading BOM allowed); with ``root``, a
    ``path`` that leads outside that folder is refused (see :func:`refused`)."""
    with _open(path, root) as handle:
        return parse_json(handle.read(), path)


def parse_json(raw: bytes, path: Path) -> Any:
    """The JSON document in the bytes ``raw`` read from ``path`` (checked as :func:`read_json` does)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 text (byte offset {exc.start})", path=path) from exc
    return _loads(text, path, None)


def iter_jsonl(path: Path, *, max_line_bytes: int = MAX_LINE_BYTES,
               root: Path | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of every non-blank line of a JSON Lines file, read line by
    line (memory stays bounded); a line over ``max_line_bytes`` is an error naming it. With
    ``root``, a ``path`` that leads outside that folder is refused (see :func:`refused`)."""
    with _open(path, root) as handle:
        number = 0
        while True:
            raw = handle.readline(max_line_bytes + 1)
            if not raw:
                return
            number += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                raise SourceError(f"line longer than {max_line_bytes:,} bytes", path=path, line=number)
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise SourceError(f"not UTF-8 text (byte {exc.start} of the line)", path=path, line=number) from exc
            if text.strip():
                yield number, _loads(text, path, number)
