"""An OpenAI-compatible chat-completions client (vLLM, SGLang, Ollama, llama.cpp server, hosted APIs).

Asynchronous with bounded concurrency; timeouts; retries with exponential backoff on 429, 5xx
and connection errors/timeouts; a bounded re-ask when the answer is not what was asked for (not
JSON, truncated, wrong shape: every answer is checked by a ``parse`` function, usually a small
JSON Schema). Every request goes through a :class:`~finer_datasets.llm.transcript.TranscriptStore`
first. The API key is read from an environment variable, sent only in the ``Authorization``
header, and never logged or written anywhere.

Failures are of two kinds. :class:`LLMAnswerError` is about one request (no usable answer after
the re-asks, or a 400 for that prompt): the stage skips that element. :class:`LLMError` is about
the endpoint and aborts the build before anything is written: 401/403 (unauthorised), 404 or an
unknown model, connection refused at the :meth:`ChatClient.preflight` check, or the **circuit
breaker**: after ``breaker_failures`` consecutive requests exhausted their retries, after
``max(breaker_failures, 8 x concurrency)`` consecutive requests refused with another 4xx (an
endpoint that refuses everything), or when no request has succeeded for ``breaker_seconds`` (in
wall time: a request in flight is cut when that moment comes), every pending request fails at once.

Time: each attempt, from connect to the last byte of the body, ends after ``timeout`` seconds
(an endpoint that drips its answer cannot hold a request longer); the preflight check likewise.
What a server says is never shown verbatim (:mod:`finer_datasets.llm.sanitize`: its status and a
short JSON error message without the key); the first few unanswered requests are logged, the rest
counted (:meth:`ChatClient.note_unanswered`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

try:  # httpcore asks sniffio which async library runs, at every lock; without sniffio that is a failed
    import sniffio  # noqa: F401  # import walking sys.path each time (~0.1 ms of CPU per request):
except ImportError:  # remember the absence once, as the import system does for a None entry
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

from finer_datasets.core.aio import run_async
from finer_datasets.errors import LLMError, TranscriptMissError
from finer_datasets.llm.answers import Parsed, essentials, json_parser
from finer_datasets.llm.sanitize import redact, scrub, server_reason
from finer_datasets.llm.transcript import TranscriptStore, request_key
from finer_datasets.llm.wire import bounded_get, tls

__all__ = ["ChatClient", "LLMAnswerError", "LLMConfig", "Parsed", "close_loop_sessions", "json_parser"]

logger = logging.getLogger(__name__)

#: unanswered requests logged one by one per ChatClient.run (the others are counted)
SHOWN_FAILURES = 5


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to ask; ``api_key_env`` names the variable holding the key (never the key)."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 6
    max_reasks: int = 2
    backoff: float = 0.5
    max_backoff: float = 30.0
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    breaker_failures: int = 3
    breaker_seconds: float = 120.0


class LLMAnswerError(LLMError):
    """One request got no usable answer (re-asks exhausted, or the server refused this prompt)."""


@dataclass
class _Session:
    """What one event loop's requests of one client share: a pooled HTTP client (connections
    sized to the concurrency), the concurrency bound and the per-key locks of :meth:`ChatClient.ask`."""

    http: httpx.AsyncClient
    semaphore: asyncio.Semaphore
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


#: event loop -> the HTTP clients opened in it (closed by close_loop_sessions at the end of ChatClient.run)
_OPEN: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[httpx.AsyncClient]] = weakref.WeakKeyDictionary()


async def close_loop_sessions() -> None:
    """Close the HTTP connections every :class:`ChatClient` opened in the running event loop.

    :meth:`ChatClient.run` calls it when its coroutine ends; a caller running ``ask`` in its own
    loop (``asyncio.run``) may call it before that loop ends, or leave the sockets to the loop's end.
    """
    for http in _OPEN.pop(asyncio.get_running_loop(), []):
        await http.aclose()


class ChatClient:
    """Chat completions through a transcript; ``transport`` is injectable (tests, proxies).

    Cheap per request: one pooled ``httpx.AsyncClient`` per event loop (not one per request,
    whose TLS set-up alone cost ~25 ms of CPU) sharing one TLS context, one compiled schema per
    parser shape, and each answer parsed once for the asker that fetched it.
    """

    backend = "openai-chat"

    def __init__(self, config: LLMConfig, store: TranscriptStore, *, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.store = store
        self._transport = transport
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Session] = weakref.WeakKeyDictionary()
        self.used: dict[str, dict[str, int]] = {}  # key -> recorded usage, for the manifest
        self._responses: dict[str, dict] = {}
        self.lookups = 0  # requests made by the build logic (deterministic)
        self.live: Counter[str] = Counter()  # what happened on the wire this run (logged only)
        self._failures = 0  # consecutive requests that exhausted their retries
        self._rejections = 0  # consecutive requests refused with a 4xx (not 401/403/404)
        self.unanswered = 0  # requests that got no usable answer in the current run()
        self._last_ok: float | None = None
        self._started: float | None = None
        self._broken: LLMError | None = None

    @property
    def model(self) -> str:
        return self.config.model

    def run(self, coroutine: Any) -> Any:
        """Run ``coroutine`` to completion in a fresh event loop, then close the connections that
        any client opened in it (asyncio primitives and connections are per loop)."""

        async def closing() -> Any:
            try:
                return await coroutine
            finally:
                await close_loop_sessions()

        self.unanswered = 0
        try:
            return run_async(closing())
        finally:
            if self.unanswered > SHOWN_FAILURES:
                logger.warning("%d requests got no usable answer (the first %d shown above)", self.unanswered,
                               SHOWN_FAILURES)

    def note_unanswered(self, purpose: str, exc: Exception) -> None:
        """Log a request that got no usable answer: the first few one by one, then only a count."""
        self.unanswered += 1
        if self.unanswered <= SHOWN_FAILURES:
            logger.warning("%s: %s", purpose, exc)
        elif self.unanswered == SHOWN_FAILURES + 1:
            logger.warning("more requests got no usable answer: counted, not shown")

    def _session(self) -> _Session:
        """This client's session in the running event loop (made on first use in that loop)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.http.is_closed:  # (closed by close_loop_sessions, the loop goes on)
            n = self.config.concurrency
            http = httpx.AsyncClient(transport=self._transport, timeout=self.config.timeout, verify=tls(),
                                     limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
            _OPEN.setdefault(loop, []).append(http)
            if session is None:
                session = self._sessions[loop] = _Session(http, asyncio.Semaphore(n))
            session.http = http
        return session

    def preflight(self) -> None:
        """Check the endpoint before any work: reachable, authorised, serving the model.

        ``GET <base_url>/models``: a connection error (after 3 quick tries), 401/403, or a model
        list without this model raises :class:`LLMError` naming the endpoint; a server without
        the route (404/405/501) is accepted, its first real request will tell.
        """
        url = self.config.base_url.rstrip("/") + "/models"
        if self._transport is not None and not hasattr(self._transport, "handle_request"):
            return  # an async-only test transport: nothing to check synchronously
        seconds = min(self.config.timeout, 10.0)
        for attempt in range(3):
            try:
                with httpx.Client(transport=self._sync_transport(), timeout=seconds, verify=tls()) as http:
                    status, text = bounded_get(http, url, self._headers(), seconds)
                break
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt == 2:
                    raise LLMError(f"{self.config.base_url}: cannot reach the endpoint ({type(exc).__name__}: {exc})") from exc
                time.sleep(0.5 * (attempt + 1))
        if status in (401, 403):
            raise LLMError(f"{self.config.base_url}: HTTP {status} unauthorised; check the key in "
                           f"${self.config.api_key_env or '(no key variable)'}")
        if status != 200:
            return
        try:
            served = [m.get("id") for m in json.loads(scrub(text, self._key())).get("data", []) if isinstance(m, dict)]
        except (json.JSONDecodeError, AttributeError):
            return
        if served and self.config.model not in served:
            shown = redact(", ".join(map(str, served[:5])), self._key())
            raise LLMError(f"{self.config.base_url}: model {self.config.model!r} is not served there (it serves {shown})")

    def _sync_transport(self) -> Any:
        return self._transport  # None (the network) or a transport with handle_request (httpx.MockTransport)

    def _key(self) -> str | None:
        return os.environ.get(self.config.api_key_env) if self.config.api_key_env else None

    def _headers(self) -> dict[str, str]:
        key = self._key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def params(self, **extra: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        if self.config.seed is not None:
            params["seed"] = self.config.seed
        params.update(extra)
        return params

    async def ask(self, messages: list[dict[str, Any]], parse: Callable[[dict], Parsed], *, purpose: str = "",
                  wire: list[dict[str, Any]] | None = None, **extra_params: Any) -> Any:
        """The parsed answer to ``messages`` (from the transcript when it has it).

        ``wire`` is what is actually sent when it differs from what is keyed and recorded (e.g. an
        image as a data URL on the wire, its sha256 in the key). Concurrent asks of one key wait for
        the first, so a prompt is never sent twice.
        """
        params = self.params(**extra_params)
        key = request_key(self.backend, self.config.model, messages, params)
        self.lookups += 1
        session = self._session()
        lock = session.locks.get(key)
        if lock is None:
            lock = session.locks[key] = asyncio.Lock()
        async with lock:
            if key not in self._responses:
                self._responses[key], value = await self._answer(session, key, messages, wire or messages, params,
                                                                 parse, purpose)
                return value
        value, _ = parse(self._responses[key])
        return value

    async def _answer(self, session: _Session, key: str, messages: list, wire: list, params: dict,
                      parse: Callable[[dict], Parsed], purpose: str) -> tuple[dict, Any]:
        """(response to keep, its parsed value): from the transcript, else asked and stored."""
        entry = self.store.get(key)
        if entry is not None:
            value, problem = parse(entry["response"])
            if problem is None:
                self.used[key] = entry["usage"]
                self.live["from_transcript"] += 1
                return entry["response"], value
        if self.store.replay:
            raise TranscriptMissError(f"--replay: no answer in {self.store.path} for {purpose or 'a request'} (key {key[:16]})")
        async with session.semaphore:
            response, usage, value = await self._converse(session.http, wire, params, parse, purpose)
        self.store.put(key, {"model": self.config.model, "messages": messages, "params": params}, response, usage)
        self.used[key] = usage
        self.live["answered"] += 1
        return response, value

    async def _converse(self, http: httpx.AsyncClient, messages: list[dict], params: dict,
                        parse: Callable[[dict], Parsed], purpose: str) -> tuple[dict, dict, Any]:
        conversation = list(messages)
        usage: Counter[str] = Counter()
        for attempt in range(self.config.max_reasks + 1):
            response = await self._post(http, conversation, params)
            for name in ("prompt_tokens", "completion_tokens"):
                usage[name] += int((response.get("usage") or {}).get(name) or 0)
            value, problem = parse(response)
            if problem is None:
                usage["reasks"] = attempt
                return essentials(response), dict(usage), value
            self.live["reasks"] += 1
            logger.info("re-asking (%s): %s", purpose, redact(problem))
            content = ((response.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
            conversation = conversation + [
                {"role": "assistant", "content": content},
                {"role": "user", "content": f"Your answer could not be used: {problem}. "
                                            "Reply again with only the JSON object asked for, and nothing else."},
            ]
        raise LLMAnswerError(f"{purpose or 'request'}: no usable answer after {self.config.max_reasks} re-ask(s): "
                             f"{redact(problem)}")

    def _check_breaker(self) -> None:
        if self._broken is not None:
            raise self._broken

    def _breaker_left(self) -> float:
        """Seconds until the breaker opens unless a request succeeds first."""
        return (self._last_ok or self._started or time.monotonic()) + self.config.breaker_seconds - time.monotonic()

    def _trip(self, url: str, reason: str, *, exhausted: bool) -> None:
        """Open the circuit breaker when the endpoint looks dead (then every request fails)."""
        self._failures += exhausted
        if self._failures >= self.config.breaker_failures:
            self._broken = LLMError(f"{url}: {self._failures} requests in a row failed after retries ({reason}); "
                                    "circuit breaker open, giving up")
        elif self._breaker_left() <= 0:
            self._broken = LLMError(f"{url}: no successful answer for {self.config.breaker_seconds:g} s ({reason}); "
                                    "circuit breaker open")
        if self._broken is not None:
            raise self._broken

    async def _post(self, http: httpx.AsyncClient, messages: list[dict], params: dict) -> dict:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        payload = {"model": self.config.model, "messages": messages, **params}
        delay = self.config.backoff
        if self._started is None:
            self._started = time.monotonic()
        for attempt in range(self.config.max_retries + 1):
            self._check_breaker()
            budget = min(self.config.timeout, self._breaker_left())  # the breaker's moment cuts a request too
            reason, retry_after = "no successful answer", None
            if budget > 0:
                self.live["http_requests"] += 1
                try:
                    r = await asyncio.wait_for(http.post(url, json=payload, headers=self._headers()), budget)
                    body, reason, retry_after = self._read(url, r)
                    if body is not None:
                        self._failures, self._rejections, self._last_ok = 0, 0, time.monotonic()
                        return body
                except asyncio.TimeoutError:
                    reason = f"no complete answer within {budget:.3g} s"
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    reason = f"{type(exc).__name__}"
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.config.max_backoff))
            if attempt == self.config.max_retries:
                self._trip(url, reason, exhausted=True)
                raise LLMAnswerError(f"{url}: giving up after {attempt + 1} attempts ({reason})")
            self._trip(url, reason, exhausted=False)
            self.live["retries"] += 1
            logger.info("retrying %s in %.2fs (%s)", url, delay, reason)
            await asyncio.sleep(max(0.0, min(delay, self._breaker_left())))
            delay = min(delay * 2, self.config.max_backoff)
        raise LLMAnswerError(f"{url}: no response")  # not reached

    def _read(self, url: str, r: httpx.Response) -> tuple[dict | None, str, float | None]:
        """(body, "", None) for a usable 200; (None, reason, Retry-After) for a retryable answer;
        raises for the others (:meth:`_refused`). The key never survives into the body."""
        if r.status_code == 200:
            try:
                return json.loads(scrub(r.text, self._key())), "", None
            except json.JSONDecodeError:
                return None, "truncated or non-JSON response body", None
        if r.status_code == 429 or r.status_code >= 500:
            retry_after = r.headers.get("retry-after") or ""
            return None, f"HTTP {r.status_code}", float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None
        raise self._refused(url, r)

    def _refused(self, url: str, r: httpx.Response) -> LLMError:
        """The error of a 4xx: 401/403/404 and model errors abort everything (the breaker opens);
        another 4xx fails this request only, unless every request is refused
        (``max(breaker_failures, 8 x concurrency)`` in a row)."""
        status, why = r.status_code, server_reason(r.text, self._key())
        text = r.text[:2000].lower()
        if status in (401, 403):
            self._broken = LLMError(f"{url}: HTTP {status} unauthorised; check the key in "
                                    f"${self.config.api_key_env or '(no key variable)'}")
        elif status == 404 or "model" in text and ("not found" in text or "does not exist" in text):
            self._broken = LLMError(f"{url}: HTTP {status}: endpoint or model {self.config.model!r} not found ({why})")
        else:
            self._rejections += 1
            if self._rejections >= max(self.config.breaker_failures, 8 * self.config.concurrency):
                self._broken = LLMError(f"{url}: {self._rejections} requests in a row refused (HTTP {status}: {why}); "
                                        "circuit breaker open, giving up")
        return self._broken if self._broken is not None else LLMAnswerError(f"{url}: HTTP {status}: {why}")

    def usage_summary(self) -> dict[str, int]:
        """Deterministic accounting for the manifest (identical when the build is replayed)."""
        return {
            "requests": self.lookups,
            "unique_prompts": len(self.used),
            "cache_hits": self.lookups - len(self.used),
            "prompt_tokens": sum(u.get("prompt_tokens", 0) for u in self.used.values()),
            "completion_tokens": sum(u.get("completion_tokens", 0) for u in self.used.values()),
        }
