"""Reading predictions files: ``{"question_id": ..., "response": ...}`` per line (JSON Lines).

Memory stays bounded (lines are read in chunks, each at most ``max_line_bytes``) and every problem
is a :class:`~finer_datasets.errors.PredictionsError` naming the file and the line: not UTF-8,
not JSON, not an object, a missing or non-string key, a repeated key, an id given twice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

from finer_datasets.errors import PredictionsError

__all__ = ["load_predictions", "iter_json_objects", "check_answer", "AnswerCollector", "MAX_LINE_BYTES", "MAX_FILE_BYTES",
           "shown_numbers"]

_EXAMPLES = 5


def shown_numbers(numbers: list[int]) -> str:
    """Line or row numbers for a message: all of a few, else the first five and the count."""
    if len(numbers) <= _EXAMPLES:
        return ", ".join(map(str, numbers))
    return f"{', '.join(map(str, numbers[:_EXAMPLES]))}, ... ({len(numbers):,} in all)"


MAX_LINE_BYTES = 1 << 20  # longest predictions line read (1 MiB); memory stays bounded by it
MAX_FILE_BYTES = 1 << 30  # largest predictions file read (1 GiB): the answers kept stay bounded
_CHUNK = 1 << 16
_EOL = re.compile(rb"\r\n|\r|\n")  # line ends as Python's universal newlines read them


class _Object(dict):
    """A decoded JSON object that remembers which of its keys were repeated."""

    repeated: tuple[str, ...] = ()

    @classmethod
    def hook(cls, pairs: list[tuple[str, Any]]) -> _Object:
        out = cls(pairs)
        if len(out) != len(pairs):
            out.repeated = tuple(key for key in out if [k for k, _ in pairs].count(key) > 1)
        return out


_DECODER = json.JSONDecoder(object_pairs_hook=_Object.hook)


def _json_type(value: Any) -> str:
    return "null" if value is None else "dict" if isinstance(value, dict) else type(value).__name__


def _raw_lines(handle: BinaryIO, path: Path, limit: int) -> Iterator[tuple[int, int, bytes]]:
    """``(line number, byte offset, bytes)`` of every line, without its line end; never holds
    more than ``limit`` + 64 KiB of the file, and a longer line raises :class:`PredictionsError`."""
    buf, offset, number, more = b"", 0, 0, True
    while more:
        try:
            chunk = handle.read(_CHUNK)
        except OSError as exc:
            raise PredictionsError(f"cannot read predictions: {exc.strerror or exc}", path=path) from exc
        more = bool(chunk)
        buf += chunk
        if b"\r" in buf:  # "\r" or "\r\n" line ends: the general, slower path
            ends = [(m.start(), m.end()) for m in _EOL.finditer(buf)]
            if more and ends and ends[-1][1] == len(buf) and buf.endswith(b"\r"):
                ends.pop()  # a "\r\n" may be split across two reads
        else:
            ends, at = [], buf.find(b"\n")
            while at >= 0:
                ends.append((at, at + 1))
                at = buf.find(b"\n", at + 1)
        start = 0
        for stop, after in ends:
            number += 1
            if stop - start > limit:
                raise PredictionsError(f"line longer than the limit of {limit} bytes", path=path, line=number)
            yield number, offset + start, buf[start:stop]
            start = after
        buf, offset = buf[start:], offset + start
        if len(buf) > limit:
            raise PredictionsError(f"line longer than the limit of {limit} bytes", path=path, line=number + 1)
    if buf:
        yield number + 1, offset, buf


def _decode(raw: bytes, path: Path, number: int, offset: int) -> str:
    """One line as text: UTF-8 (a byte-order mark opening the file is dropped), without NUL."""
    if offset == 0 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PredictionsError("not UTF-8 text at byte offset 0 (a UTF-16 byte-order mark); save the file as UTF-8",
                               path=path, line=number)
    skip = 3 if offset == 0 and raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at, bad = offset + skip + exc.start, raw[skip + exc.start]
        raise PredictionsError(f"not UTF-8 text at byte offset {at} (byte 0x{bad:02x})", path=path, line=number) from None
    if "\x00" in text:
        raise PredictionsError(f"NUL character at column {text.index(chr(0)) + 1} (a UTF-16 or binary file?)",
                               path=path, line=number)
    return text


def _size(handle: BinaryIO) -> int:
    import os

    try:
        return os.fstat(handle.fileno()).st_size
    except (OSError, ValueError):
        return 0


def iter_json_objects(path: str | Path, *, max_line_bytes: int = MAX_LINE_BYTES,
                      keys: tuple[str, ...] = ("question_id", "response")) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every non-blank line of a JSON Lines file, read line by line.

    Raises :class:`PredictionsError` naming the file and the line for an unreadable file, bytes that
    are not UTF-8, NUL, a line over ``max_line_bytes``, a line that is not a JSON object, or one that
    repeats one of ``keys``."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise PredictionsError(f"cannot read predictions: {exc.strerror or exc}", path=path) from exc
    with handle:
        size = _size(handle)
        if size > MAX_FILE_BYTES:
            raise PredictionsError(f"{size:,} bytes, over the limit of {MAX_FILE_BYTES:,} for a predictions file",
                                   path=path)
        for number, offset, raw in _raw_lines(handle, path, max_line_bytes):
            line = _decode(raw, path, number, offset)
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if "\\u" in line or any(line.count(f'"{key}"') > 1 for key in keys):
                    item = _DECODER.decode(line)  # slower: notices a repeated key
            except json.JSONDecodeError as exc:
                raise PredictionsError(f"not valid JSON ({exc.msg} at column {exc.colno})", path=path, line=number) from None
            except (ValueError, RecursionError) as exc:  # e.g. an integer of over 4300 digits, deep nesting
                reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
                raise PredictionsError(f"not valid JSON ({reason})", path=path, line=number) from None
            if not isinstance(item, dict):
                raise PredictionsError(f"expected a JSON object, got {_json_type(item)}", path=path, line=number)
            yield number, item


def check_answer(item: Mapping[str, Any], path: Path, number: int) -> tuple[str, str]:
    """``(question_id, response)`` of one answer object; a missing, repeated or non-string key or an
    empty id is a :class:`PredictionsError` naming the file and the line."""
    for key in ("question_id", "response"):
        if key not in item:
            raise PredictionsError(f"missing key {key!r}", path=path, line=number)
        if key in getattr(item, "repeated", ()):
            raise PredictionsError(f"key {key!r} given more than once", path=path, line=number)
        if not isinstance(item[key], str):
            raise PredictionsError(f"{key!r} must be a string, got {_json_type(item[key])}", path=path, line=number)
    if not item["question_id"]:
        raise PredictionsError("'question_id' is empty", path=path, line=number)
    return item["question_id"], item["response"]


class AnswerCollector:
    """``{question_id: response}`` gathered line by line; an id given twice is remembered with its
    lines and reported by :meth:`result` (count and line numbers)."""

    def __init__(self, path: Path):
        self.path = path
        self.answers: dict[str, str] = {}
        self.first_line: dict[str, int] = {}
        self.duplicates: dict[str, list[int]] = {}

    def add(self, qid: str, response: str, number: int) -> None:
        if qid in self.answers:
            self.duplicates.setdefault(qid, [self.first_line[qid]]).append(number)
            return
        self.answers[qid] = response
        self.first_line[qid] = number

    def result(self) -> dict[str, str]:
        if self.duplicates:
            shown = "; ".join(f"{qid[:80]!r} on lines {shown_numbers(lines)}"
                              for qid, lines in list(self.duplicates.items())[:_EXAMPLES])
            more = "; ..." if len(self.duplicates) > _EXAMPLES else ""
            raise PredictionsError(f"{len(self.duplicates)} duplicate question id(s): {shown}{more}", path=self.path,
                                   duplicate=list(self.duplicates))
        return self.answers


def load_predictions(path: str | Path, *, max_line_bytes: int = MAX_LINE_BYTES) -> dict[str, str]:
    """Read ``{question_id: raw response}`` from a JSONL file.

    One JSON object per line: ``{"question_id": "...", "response": "<raw model output>"}``
    (other keys ignored, blank lines skipped, a UTF-8 byte-order mark accepted). Read line by
    line: memory stays bounded by ``max_line_bytes`` plus the answers kept. Anything else raises
    :class:`PredictionsError` naming the file and, for a bad line, its number: an unreadable
    file, bytes that are not UTF-8 (and their byte offset), NUL, a line over ``max_line_bytes``,
    a line that is not a JSON object or lacks, repeats or mistypes a key, an empty id; a
    question id given on several lines raises it with the count and the line numbers.
    """
    path = Path(path)
    collected = AnswerCollector(path)
    for number, item in iter_json_objects(path, max_line_bytes=max_line_bytes):
        collected.add(*check_answer(item, path, number), number)
    return collected.result()
