"""Reading VLMEvalKit result files back, so that its runs give paired accuracy.

``finer export DATASET --format vlmevalkit`` writes a custom MCQ TSV with two extra columns,
``question_id`` and ``pair_id``. VLMEvalKit keeps every column of a dataset's TSV (except the
image) in the files it writes, so both come back in

* the prediction file ``<model>_<dataset>.xlsx`` (``.tsv`` with ``PRED_FORMAT=tsv``): the TSV's
  columns plus ``prediction``, the model's raw answer;
* the judged file ``<model>_<dataset>_<judge>_result.xlsx`` of its MCQ evaluation: the same,
  column names lower-cased except the option letters, plus ``hit`` (1 when its answer extraction,
  by exact matching or an LLM judge, found the right option) and ``log`` (``Match Log: <the text
  it matched>. ``). VLMEvalKit stores no column with the extracted letter itself.

:func:`read_vlmevalkit` turns either into ``{question_id: response}`` for
:func:`~finer_datasets.eval.scoring.score`, never by row order: ``answer="prediction"`` gives the
raw answers (read by our parser), ``answer="judged"`` gives VLMEvalKit's verdict: a hit is the
right letter, a miss the letter its log names when that is readable and wrong, otherwise an empty
answer (wrong, unparseable). ``.tsv``/``.csv`` always work; ``.xlsx`` needs ``openpyxl``.

Reads are bounded whatever the file holds (:data:`LIMITS`): a cell of at most 1 MiB (as a line of
a predictions JSONL), at most 1,024 columns and 1,000,000 rows, a ``.tsv``/``.csv`` of at most
1 GiB and an ``.xlsx`` whose parts unpack to at most 1 GiB (a zip bomb is refused before it is
opened); only the columns scoring needs are kept. Going over a limit is a
:class:`~finer_datasets.errors.PredictionsError` naming the file, the row and the limit.
"""

from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from finer_datasets.constants import LETTERS
from finer_datasets.errors import PredictionsError, UsageError
from finer_datasets.eval.predictions import MAX_LINE_BYTES, shown_numbers

__all__ = ["read_table", "read_vlmevalkit", "VLMEVALKIT_ANSWERS", "ID_COLUMNS", "LIMITS"]

VLMEVALKIT_ANSWERS = ("prediction", "judged")
ID_COLUMNS = ("question_id", "pair_id")
_LOG = re.compile(r"^\s*Match Log:\s*(.*?)\.?\s*$", re.S)
_EXAMPLES = 5
#: the bounds of a read (module docstring): characters per cell, columns, rows, bytes of the file
#: (for an .xlsx, of its unpacked parts)
LIMITS = {"cell": MAX_LINE_BYTES, "columns": 1024, "rows": 1_000_000, "bytes": 1 << 30}
#: the columns scoring reads (the others are dropped as they are read)
_USED = ("question_id", "prediction", "hit", "answer", "log", *LETTERS)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    try:
        from openpyxl import load_workbook
    except ImportError as exc:
        raise UsageError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl), or let VLMEvalKit write "
                         "TSV (PRED_FORMAT=tsv)") from exc
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise PredictionsError(f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})", path=path) from exc
    if unpacked > LIMITS["bytes"]:
        raise PredictionsError(f"the workbook unpacks to {unpacked:,} bytes, over the limit of {LIMITS['bytes']:,} "
                               "(a zip bomb?)", path=path)
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and its own errors for a broken file
        raise PredictionsError(f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})", path=path) from exc
    try:  # one column more than the limit is read, to notice a wider row
        for row in book.worksheets[0].iter_rows(values_only=True, max_col=LIMITS["columns"] + 1):
            yield [_cell(v) for v in row]
    finally:
        book.close()


def _text_rows(path: Path, delimiter: str) -> Iterator[list[str]]:
    size = path.stat().st_size
    if size > LIMITS["bytes"]:
        raise PredictionsError(f"{size:,} bytes, over the limit of {LIMITS['bytes']:,} for a result file", path=path)
    limit = csv.field_size_limit()
    csv.field_size_limit(LIMITS["cell"])
    number = 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
                yield row
    except UnicodeDecodeError as exc:
        raise PredictionsError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from exc
    except csv.Error as exc:
        reason = f"a cell longer than the limit of {LIMITS['cell']:,} characters" if "field limit" in str(exc) \
            else f"not readable as {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})"
        raise PredictionsError(f"row {number + 1}: {reason}", path=path) from None
    finally:
        csv.field_size_limit(limit)


def _bounded(rows: Iterable[list[str]], path: Path) -> Iterator[list[str]]:
    """The rows, each checked against :data:`LIMITS` (columns, cell size, row count)."""
    for number, values in enumerate(rows, start=1):
        if number > LIMITS["rows"] + 1:
            raise PredictionsError(f"more than {LIMITS['rows']:,} rows", path=path)
        while values and not values[-1]:
            values = values[:-1]  # empty cells at the end of a row (a spreadsheet's declared width)
        if len(values) > LIMITS["columns"]:
            raise PredictionsError(f"row {number}: more than {LIMITS['columns']:,} columns", path=path)
        for value in values:
            if len(value) > LIMITS["cell"]:
                raise PredictionsError(f"row {number}: a cell longer than the limit of {LIMITS['cell']:,} characters",
                                       path=path)
        yield values


def read_table(path: str | Path, columns: Iterable[str] | None = None) -> list[dict[str, str]]:
    """The rows of a ``.tsv``, ``.csv`` or ``.xlsx`` file as ``{column: text}`` (first row: header),
    keeping only ``columns`` when given; reads are bounded by :data:`LIMITS`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".tsv", ".csv", ".xlsx"):
        raise PredictionsError("a VLMEvalKit result must be a .xlsx, .tsv or .csv file", path=path)
    if not path.is_file():
        raise PredictionsError("no such file", path=path)
    rows = _bounded(_xlsx_rows(path) if suffix == ".xlsx" else _text_rows(path, "\t" if suffix == ".tsv" else ","),
                    path)
    header = next(rows, None)
    if not header:
        raise PredictionsError("empty file (no header row)", path=path)
    wanted = set(header if columns is None else columns)
    kept = [(i, name) for i, name in enumerate(header) if name in wanted]
    out = []
    for values in rows:
        if not any(values):
            continue
        out.append({name: values[i] if i < len(values) else "" for i, name in kept})
    return out


def _logged_text(log: str) -> str:
    match = _LOG.match(log or "")
    return match.group(1).strip() if match else ""


def _judged(row: Mapping[str, str], path: Path, number: int) -> str:
    from finer_datasets.eval.answers import parse_answer

    answer = row.get("answer", "").strip()
    hit = row["hit"].strip()
    if hit not in ("0", "1", "True", "False"):
        raise PredictionsError(f"row {number}: 'hit' must be 0 or 1, got {hit!r}", path=path)
    if hit in ("1", "True"):
        if not answer:
            raise PredictionsError(f"row {number}: a hit without an 'answer' column value", path=path)
        return answer
    options = [row[letter] for letter in LETTERS] if all(letter in row for letter in LETTERS) else None
    letter = parse_answer(_logged_text(row.get("log", "")), options)
    return letter if letter and letter != answer else ""


def read_vlmevalkit(path: str | Path, *, answer: str = "prediction") -> dict[str, str]:
    """``{question_id: response}`` from a VLMEvalKit prediction or judged file (module docstring).

    Every problem is a :class:`PredictionsError` naming the file: no ``question_id`` column (a
    TSV exported before ids existed: re-export it), no ``prediction`` / ``hit`` column for the
    chosen ``answer``, an empty or repeated question id (with the row numbers).
    """
    if answer not in VLMEVALKIT_ANSWERS:
        raise UsageError(f"--vlmevalkit-answer {answer!r}: use one of {', '.join(VLMEVALKIT_ANSWERS)}")
    path = Path(path)
    rows = read_table(path, _USED)
    columns = set(rows[0]) if rows else set()
    if rows and "question_id" not in columns:
        raise PredictionsError("no 'question_id' column: the TSV VLMEvalKit ran on was exported without ids; "
                               "re-export it with `finer export DATASET --format vlmevalkit` and rerun", path=path)
    needed = "prediction" if answer == "prediction" else "hit"
    if rows and needed not in columns:
        hint = " (use the *_result file of VLMEvalKit's evaluation)" if needed == "hit" else ""
        raise PredictionsError(f"no {needed!r} column for --vlmevalkit-answer {answer}{hint}", path=path)
    out: dict[str, str] = {}
    first: dict[str, int] = {}
    repeated: dict[str, list[int]] = {}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        qid = row["question_id"].strip()
        if not qid:
            raise PredictionsError(f"row {number}: empty 'question_id'", path=path)
        if qid in out:
            repeated.setdefault(qid, [first[qid]]).append(number)
            continue
        first[qid] = number
        out[qid] = row["prediction"] if answer == "prediction" else _judged(row, path, number)
    if repeated:
        shown = "; ".join(f"{qid[:80]!r} on rows {shown_numbers(n)}" for qid, n in list(repeated.items())[:_EXAMPLES])
        more = "; ..." if len(repeated) > _EXAMPLES else ""
        raise PredictionsError(f"{len(repeated)} repeated question id(s): {shown}{more}", path=path,
                               duplicate=list(repeated))
    return out
