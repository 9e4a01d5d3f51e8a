"""Reading source files safely: every failure is a one-line :class:`SourceError` naming the file
(and line), never a traceback -- missing file, a folder where a file is expected, unreadable,
not UTF-8, not JSON, nested deeper than any real annotation, or an object with a repeated key
(JSON allows it, Python would silently keep the last value)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from finer_datasets.errors import SourceError

__all__ = ["read_json", "parse_json", "iter_jsonl", "MAX_LINE_BYTES"]

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


def _open(path: Path) -> BinaryIO:
    """``path`` opened for reading, or a one-line :class:`SourceError` saying why not."""
    try:
        return open(path, "rb")
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


def read_json(path: Path) -> Any:
    """The parsed JSON document in ``path`` (UTF-8, a leading BOM allowed)."""
    with _open(path) as handle:
        return parse_json(handle.read(), path)


def parse_json(raw: bytes, path: Path) -> Any:
    """The JSON document in the bytes ``raw`` read from ``path`` (checked as :func:`read_json` does)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 text (byte offset {exc.start})", path=path) from exc
    return _loads(text, path, None)


def iter_jsonl(path: Path, *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of every non-blank line of a JSON Lines file, read line by
    line (memory stays bounded); a line over ``max_line_bytes`` is an error naming it."""
    with _open(path) as handle:
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
