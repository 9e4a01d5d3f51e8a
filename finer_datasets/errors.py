"""The exceptions raised by ``finer_datasets`` and the exit codes of the ``finer`` command.

Every error the package raises on purpose derives from one base class::

    FinerError                     anything finer_datasets raises on purpose          exit 1
    ├── UsageError                 an option value that cannot work (--setting typo, negative
    │                              --shard-samples, a file where a folder is needed)    exit 2
    ├── SourceError                malformed source input: names file, record and field exit 2
    │   ├── NegativesError         a negatives file or generator that cannot give 4 valid negatives
    │   └── StrictModeError        a skippable content problem, raised because of ``--strict``
    ├── PredictionsError           predictions that cannot be scored (bad file; missing, duplicate
    │                              or unknown question ids)                             exit 2
    ├── VerificationError          a built folder that differs from its manifest        exit 3
    ├── ReleaseError               a release or publication refused (existing tag, remote
    │                              mismatch, dirty or foreign repository)                exit 4
    ├── LLMError                   a model backend that failed for good: unreachable, unauthorised,
    │   │                          unknown model, circuit breaker open, answers unusable exit 5
    │   └── TranscriptMissError    ``--replay``: a request whose answer is not in the transcript
    ├── OutputError                an output location refused or unwritable (inside a source,
    │                              not a previous build, read-only, disk full)          exit 6
    ├── QualityError               a finished build whose result is unusable (no records, skip
    │                              rate above ``--max-skip-rate``); nothing is replaced  exit 7
    └── RecordValidationError      a record that does not match its JSON Schema (never written)

The command line prints ``error: <one line>`` on stderr and exits with the error's
``exit_code`` (:data:`EXIT_CODES`); Ctrl-C exits with 130 after removing temporary output.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "EXIT_CODES",
    "FinerError",
    "UsageError",
    "OutputError",
    "QualityError",
    "SourceError",
    "NegativesError",
    "StrictModeError",
    "PredictionsError",
    "LLMError",
    "TranscriptMissError",
    "RecordValidationError",
    "VerificationError",
    "ReleaseError",
]


def _located(message: str, **where: object) -> str:
    """``"file F, record R, field 'x': message"`` with the parts that are known."""
    parts = [f"{name} {value!r}" if name == "field" else f"{name} {value}" for name, value in where.items()
             if value is not None]
    return f"{', '.join(parts)}: {message}" if parts else message


class FinerError(Exception):
    """Base class of every error raised on purpose by ``finer_datasets``."""

    exit_code = 1


class UsageError(FinerError):
    """An option or argument value that cannot work; the message names the option."""

    exit_code = 2


class OutputError(FinerError):
    """An output location that is refused (it is, contains or sits inside a source; it exists and
    was not written by a previous build) or cannot be written (read-only, disk full)."""

    exit_code = 6


class QualityError(FinerError):
    """A build that ran to the end but whose result is unusable (no records, or a skip rate above
    ``max_skip_rate``); the previous output, if any, is left untouched."""

    exit_code = 7


class SourceError(FinerError):
    """Structurally malformed source input.

    The message always names the file; ``record`` (an index or an id) and ``field`` are
    given whenever the problem is inside one record.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: object = None, record: object = None, field: str | None = None,
                 line: int | None = None):
        self.path = None if path is None else str(path)
        self.record = record
        self.field = field
        self.line = line
        self.reason = message
        super().__init__(_located(message, file=self.path, line=line, record=record, field=field))


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
    """A model backend that failed for good: unreachable, unauthorised or unknown model, the
    circuit breaker open after persistent failures, or retries and re-asks exhausted."""

    exit_code = 5


class TranscriptMissError(LLMError):
    """Replay mode: the transcript holds no answer for a request (nothing is sent to a model)."""


class ReleaseError(FinerError):
    """A release or publication that cannot go ahead (existing tag, remote mismatch, git failure)."""

    exit_code = 4


class VerificationError(FinerError):
    """A built dataset folder that differs from its manifest."""

    exit_code = 3

    def __init__(self, problems: list[str], *, subject: str | None = None):
        self.problems = list(problems)
        self.subject = subject
        shown = "; ".join(self.problems[:5])
        more = f"; ... and {len(self.problems) - 5} more (run finer verify)" if len(self.problems) > 5 else ""
        lead = f"{subject} does not verify: " if subject else ""
        super().__init__(f"{lead}{len(self.problems)} problem(s): {shown}{more}")


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


#: exit status of the ``finer`` command -> what it means (README, "Exit codes and errors")
EXIT_CODES = {
    0: "success",
    1: "an unexpected error (a bug: please report it with the command line)",
    2: "bad input or usage: source data, predictions file or an option value; the message names the file, record and field",
    3: "verification failed: a dataset folder differs from its manifest",
    4: "release or publication refused: the version is already released, or the remote differs",
    5: "model backend failed: unreachable, unauthorised, unknown model, persistent errors, or --replay miss",
    6: "output refused or unwritable: --out is, contains or sits inside a source, is not a previous build, is read-only or full",
    7: "the build produced no usable result: no records, or more skips than --max-skip-rate",
    130: "interrupted (Ctrl-C); temporary output removed",
    141: "standard output closed by its reader (e.g. `| head`) after the work was done",
}
