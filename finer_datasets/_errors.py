"""The exceptions raised by ``finer_datasets``.

Every error the package raises on purpose derives from one base class::

    FinerError                     anything finer_datasets raises on purpose
    ├── SourceError                malformed source input: names file, record and field
    │   ├── NegativesError         a negatives file or generator that cannot give 4 valid negatives
    │   └── StrictModeError        a skippable content problem, raised because of ``--strict``
    ├── PredictionsError           predictions that cannot be scored (bad file; missing, duplicate
    │                              or unknown question ids)
    ├── LLMError                   a model backend that failed for good (after retries / re-asks)
    │   └── TranscriptMissError    ``--replay``: a request whose answer is not in the transcript
    ├── RecordValidationError      a record that does not match its JSON Schema (never written)
    └── VerificationError          a built folder that differs from its manifest

The command line prints the message and exits with a non-zero status (2 for input
problems, 3 for verification failures, 1 for anything else).
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "FinerError",
    "SourceError",
    "NegativesError",
    "StrictModeError",
    "PredictionsError",
    "LLMError",
    "TranscriptMissError",
    "RecordValidationError",
    "VerificationError",
]


def _located(message: str, **where: object) -> str:
    """``"file F, record R, field 'x': message"`` with the parts that are known."""
    parts = [f"{name} {value!r}" if name == "field" else f"{name} {value}" for name, value in where.items()
             if value is not None]
    return f"{', '.join(parts)}: {message}" if parts else message


class FinerError(Exception):
    """Base class of every error raised on purpose by ``finer_datasets``."""

    exit_code = 1


class SourceError(FinerError):
    """Structurally malformed source input.

    The message always names the file; ``record`` (an index or an id) and ``field`` are
    given whenever the problem is inside one record.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: object = None, record: object = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.record = record
        self.field = field
        self.reason = message
        super().__init__(_located(message, file=self.path, record=record, field=field))


class NegativesError(SourceError):
    """A negatives file entry or generator that cannot provide 4 valid negatives."""


class StrictModeError(SourceError):
    """A content problem that would normally be skipped, raised because ``strict`` is on."""


class RecordValidationError(FinerError):
    """A record that does not match its JSON Schema; nothing is written."""

    def __init__(self, message: str, *, schema: str, key: str | None = None, path: str = ""):
        self.schema = schema
        self.key = key
        self.instance_path = path
        self.message = message
        where = f"record {key}: " if key else ""
        super().__init__(f"{where}{schema}: {path or '<root>'}: {message}")


class LLMError(FinerError):
    """A model backend that failed for good: retries and re-asks exhausted, or a bad answer."""

    exit_code = 5


class TranscriptMissError(LLMError):
    """Replay mode: the transcript holds no answer for a request (nothing is sent to a model)."""


class VerificationError(FinerError):
    """A built dataset folder that differs from its manifest."""

    exit_code = 3

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} problem(s):\n  {shown}{more}")


class PredictionsError(FinerError):
    """Predictions that cannot be scored: an unreadable file, or answers that do not cover
    exactly the dataset's questions (missing, duplicate or unknown question ids).

    ``missing``, ``duplicate`` and ``unknown`` hold every offending question id.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: object = None,
        line: int | None = None,
        missing: Sequence[str] = (),
        duplicate: Sequence[str] = (),
        unknown: Sequence[str] = (),
    ):
        self.path = None if path is None else str(path)
        self.line = line
        self.missing = list(missing)
        self.duplicate = list(duplicate)
        self.unknown = list(unknown)
        self.reason = message
        super().__init__(_located(message, file=self.path, line=line))
