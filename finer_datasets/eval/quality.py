"""Loud results: a scoring result whose answers could mostly not be read says so.

A model that answers off-format (a wrong chat template, a token budget too small to reach the
letter, a prompt it does not follow) gets unparseable answers, which are scored as wrong: its
paired accuracy is near 0% for a reason that has nothing to do with hallucination. :func:`assess`
measures the share of answers the parser could not read; above ``max_unparseable``
(:data:`DEFAULT_MAX_UNPARSEABLE`) the result carries a warning, which the report shows as a
banner at the top of ``report.md`` and as ``quality`` in ``report.json``, and :func:`warn` logs
as one line. A result with no answer read at all is no result: :func:`require_usable` raises
:class:`~finer_datasets.errors.QualityError` (exit status 7), to be called after the report is
written so that the report explains why.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from finer_datasets.errors import QualityError

__all__ = ["assess", "warn", "require_usable", "DEFAULT_MAX_UNPARSEABLE", "CAUSES"]

logger = logging.getLogger("finer.score")

#: warn when more than this share of the answers given could not be read
DEFAULT_MAX_UNPARSEABLE = 0.10
CAUSES = ("the model's chat template (answers off the expected format), --max-new-tokens too small to reach the "
          "letter, or a prompt the model does not follow")


def assess(result: Mapping[str, Any], max_unparseable: float | None = None) -> dict[str, Any]:
    """The ``quality`` block of a :func:`~finer_datasets.eval.scoring.score` result.

    ``status`` is ``ok``, ``warning`` (more than ``max_unparseable`` of the answers given were
    unparseable) or ``unusable`` (no answer could be read); ``message`` is one line saying so,
    with the likely causes and a few of the answers, or ``None`` when ``ok``."""
    limit = DEFAULT_MAX_UNPARSEABLE if max_unparseable is None else max_unparseable
    overall = result.get("overall") or {}
    parser = result.get("parser", "strict")
    answered = int(overall.get("answered", overall.get("n_questions", 0)))
    unparseable = int(overall.get("unparseable", 0))
    read = answered - unparseable
    share = unparseable / answered if answered else None
    status = "unusable" if read <= 0 else "warning" if share is not None and share > limit else "ok"
    message = None
    if status != "ok":
        message = (f"{unparseable} of {answered} answers ({100 * (share or 0):.0f}%) could not be read by the "
                   f"{parser} parser" if answered else "no question was answered")
        if answered:
            if status == "warning":
                message += f" (more than --max-unparseable {100 * limit:.0f}%)"
            message += f"; likely causes: {CAUSES}"
            examples = result.get("unparseable_examples") or []
            if examples:
                message += "; e.g. " + ", ".join(repr(e) for e in examples)
            for mode, block in (result.get("by_parser") or {}).items():
                other = (block.get("overall") or {}).get("unparseable")
                if mode != parser and other is not None and other < unparseable:
                    message += f"; the {mode} parser reads {answered - other} of them (--parser {mode})"
    return {"status": status, "parser": parser, "answered": answered, "unparseable": unparseable,
            "unparseable_share": share, "max_unparseable": limit, "message": message}


def warn(quality: Mapping[str, Any]) -> None:
    """Log the quality warning, one line, unless the result is ``ok``."""
    if quality.get("message"):
        logger.warning("%s", quality["message"])


def require_usable(quality: Mapping[str, Any], report: object = None) -> None:
    """Raise :class:`QualityError` (exit 7) when no answer could be read."""
    if quality.get("status") == "unusable":
        where = f"; the report in {report} says why" if report is not None else ""
        raise QualityError(f"no usable result: none of the {quality.get('answered', 0)} answers could be read by the "
                           f"{quality.get('parser')} parser{where}")
