"""The HTTP side every model client shares: one TLS context per process and a GET whose whole
answer is bounded in time."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import httpx

__all__ = ["bounded_get", "tls"]


@lru_cache(maxsize=1)
def tls() -> Any:
    """One TLS context for every HTTP client of the process (building one costs ~25 ms of CPU;
    httpx would build it again for each client). Honours SSL_CERT_FILE / SSL_CERT_DIR as httpx does."""
    return httpx.create_ssl_context()


def bounded_get(http: httpx.Client, url: str, headers: dict[str, str], seconds: float) -> tuple[int, str]:
    """``GET url`` -> (status, text), the whole answer within about ``seconds`` (a body that
    drips is cut: httpx's own timeouts only bound each read)."""
    deadline = time.monotonic() + seconds
    with http.stream("GET", url, headers=headers) as r:
        body = bytearray()
        for chunk in r.iter_bytes():
            body += chunk
            if time.monotonic() > deadline or len(body) > 1 << 20:
                raise httpx.ReadTimeout(f"no complete answer within {seconds:g} s", request=r.request)
        return r.status_code, body.decode(r.encoding or "utf-8", "replace")
