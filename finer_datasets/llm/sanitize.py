"""What of a server's answer may be shown: a short, printable reason that never holds the API key.

A model endpoint controls its error bodies, and it knows the key (we send it): a body may echo
the request, headers included. So no body is ever shown or written verbatim. :func:`server_reason`
takes the error message of an OpenAI-style JSON error (``{"error": {"message": ...}}``,
``{"error": "..."}``, ``{"message": ...}``, ``{"detail": [{"msg": ...}]}``), or says only how
long a non-JSON body was; :func:`redact` removes the key, masks long opaque tokens, drops control characters and
caps the length. :func:`scrub` removes the key from a whole body before it is parsed (answers
go into transcripts and records).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["REASON_CHARS", "redact", "scrub", "server_reason"]

#: the most characters of a server's reason shown in a log line or an error message
REASON_CHARS = 120
_MASK = "[redacted]"
_TOKEN = re.compile(r"[A-Za-z0-9_\-+=]{32,}")  # keys, bearer tokens, digests: never worth showing
_MIN_KEY = 6  # shorter "keys" (tests, placeholders) would mask ordinary words


def scrub(text: str, key: str | None) -> str:
    """``text`` without any occurrence of ``key`` (JSON stays valid: the mask has no quote)."""
    return text.replace(key, _MASK) if key and len(key) >= _MIN_KEY and key in text else text


def redact(text: str, key: str | None = None, *, limit: int = REASON_CHARS) -> str:
    """One printable line of at most ``limit`` characters, without ``key`` or long opaque tokens."""
    text = _TOKEN.sub(_MASK, scrub(str(text), key))
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(data: Any) -> str | None:
    if isinstance(data, dict):
        for name in ("error", "message", "detail", "msg"):
            found = _message(data.get(name))
            if found:
                return found
        return None
    if isinstance(data, list) and data:
        return _message(data[0])
    return str(data) if isinstance(data, (str, int, float)) and str(data).strip() else None


def server_reason(body: str, key: str | None = None) -> str:
    """A short reason from an error body: its JSON error message, redacted, or its size."""
    try:
        message = _message(json.loads(body))
    except (ValueError, RecursionError):
        message = None
    if message is None:
        return f"a {len(body.encode('utf-8', 'replace'))}-byte body without a JSON error message" if body.strip() \
            else "an empty body"
    return redact(message, key)
