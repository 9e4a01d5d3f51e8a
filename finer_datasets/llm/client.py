"""An OpenAI-compatible chat-completions client (vLLM, SGLang, Ollama, llama.cpp server, hosted APIs).

Asynchronous with bounded concurrency; timeouts; retries with exponential backoff on 429, 5xx
and connection errors/timeouts; a bounded re-ask when the answer is not what was asked for (not
JSON, truncated, wrong shape: every answer is checked by a ``parse`` function, usually a small
JSON Schema). Every request goes through a :class:`~finer_datasets.llm.transcript.TranscriptStore`
first. The API key is read from an environment variable, sent only in the ``Authorization``
header, and never logged or written anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import jsonschema_rs

from .._errors import LLMError, TranscriptMissError
from .transcript import TranscriptStore, request_key

__all__ = ["LLMConfig", "ChatClient", "json_parser", "Parsed"]

logger = logging.getLogger(__name__)

# parse(response_json) -> (value, None) when usable, (None, "what is wrong") otherwise
Parsed = tuple[Any, "str | None"]


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


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def json_parser(schema: dict[str, Any], check: Callable[[Any], str | None] | None = None) -> Callable[[dict], Parsed]:
    """Parse ``choices[0].message.content`` as JSON matching ``schema`` (and ``check``, if given)."""
    compiled = jsonschema_rs.validator_for(schema)

    def parse(response: dict) -> Parsed:
        try:
            content = response["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return None, "the response has no choices[0].message.content"
        text = content.strip()
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, f"not valid JSON ({exc.msg})"
        errors = list(compiled.iter_errors(value))
        if errors:
            return None, f"wrong shape: {errors[0].message}"
        problem = check(value) if check else None
        return (None, problem) if problem else (value, None)

    return parse


def _essentials(response: dict) -> dict:
    """What a parser reads from a chat completion (kept in the transcript; ids and timings dropped)."""
    choice = (response.get("choices") or [{}])[0]
    kept: dict[str, Any] = {"message": {"content": (choice.get("message") or {}).get("content")}}
    if choice.get("logprobs") is not None:
        kept["logprobs"] = choice["logprobs"]
    return {"choices": [kept]}


class ChatClient:
    """Chat completions through a transcript; ``transport`` is injectable (tests, proxies)."""

    backend = "openai-chat"

    def __init__(self, config: LLMConfig, store: TranscriptStore, *, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.store = store
        self._transport = transport
        self._semaphore: asyncio.Semaphore | None = None
        self.used: dict[str, dict[str, int]] = {}  # key -> recorded usage, for the manifest
        self._responses: dict[str, dict] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.lookups = 0  # requests made by the build logic (deterministic)
        self.live: Counter[str] = Counter()  # what happened on the wire this run (logged only)

    @property
    def model(self) -> str:
        return self.config.model

    def run(self, coroutine: Any) -> Any:
        """Run ``coroutine`` to completion in a fresh event loop (asyncio primitives are per loop)."""
        self._semaphore = None
        self._locks = {}
        return asyncio.run(coroutine)

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
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
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._responses:
                self._responses[key] = await self._answer(key, messages, wire or messages, params, parse, purpose)
        value, _ = parse(self._responses[key])
        return value

    async def _answer(self, key: str, messages: list, wire: list, params: dict, parse: Callable[[dict], Parsed],
                      purpose: str) -> dict:
        entry = self.store.get(key)
        if entry is not None and parse(entry["response"])[1] is None:
            self.used[key] = entry["usage"]
            self.live["from_transcript"] += 1
            return entry["response"]
        if self.store.replay:
            raise TranscriptMissError(f"--replay: no answer in {self.store.path} for {purpose or 'a request'} (key {key[:16]})")
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
        async with self._semaphore:
            response, usage = await self._converse(wire, params, parse, purpose)
        self.store.put(key, {"model": self.config.model, "messages": messages, "params": params}, response, usage)
        self.used[key] = usage
        self.live["answered"] += 1
        return response

    async def _converse(self, messages: list[dict], params: dict, parse: Callable[[dict], Parsed], purpose: str) -> tuple[dict, dict]:
        conversation = list(messages)
        usage: Counter[str] = Counter()
        async with httpx.AsyncClient(transport=self._transport, timeout=self.config.timeout) as http:
            for attempt in range(self.config.max_reasks + 1):
                response = await self._post(http, conversation, params)
                for name in ("prompt_tokens", "completion_tokens"):
                    usage[name] += int((response.get("usage") or {}).get(name) or 0)
                value, problem = parse(response)
                if problem is None:
                    usage["reasks"] = attempt
                    return _essentials(response), dict(usage)
                self.live["reasks"] += 1
                logger.info("re-asking (%s): %s", purpose, problem)
                content = ((response.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
                conversation = conversation + [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": f"Your answer could not be used: {problem}. "
                                                "Reply again with only the JSON object asked for, and nothing else."},
                ]
        raise LLMError(f"{purpose or 'request'}: no usable answer after {self.config.max_reasks} re-ask(s): {problem}")

    async def _post(self, http: httpx.AsyncClient, messages: list[dict], params: dict) -> dict:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        payload = {"model": self.config.model, "messages": messages, **params}
        delay = self.config.backoff
        for attempt in range(self.config.max_retries + 1):
            reason = ""
            try:
                self.live["http_requests"] += 1
                r = await http.post(url, json=payload, headers=self._headers())
                if r.status_code == 200:
                    try:
                        return r.json()
                    except json.JSONDecodeError:
                        reason = "truncated or non-JSON response body"
                elif r.status_code == 429 or r.status_code >= 500:
                    reason = f"HTTP {r.status_code}"
                    retry_after = r.headers.get("retry-after")
                    if retry_after and retry_after.replace(".", "", 1).isdigit():
                        delay = max(delay, min(float(retry_after), self.config.max_backoff))
                else:
                    raise LLMError(f"{url}: HTTP {r.status_code}: {r.text[:300]}")
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                reason = f"{type(exc).__name__}"
            if attempt == self.config.max_retries:
                raise LLMError(f"{url}: giving up after {attempt + 1} attempts ({reason})")
            self.live["retries"] += 1
            logger.info("retrying %s in %.2fs (%s)", url, delay, reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.max_backoff)
        raise LLMError(f"{url}: no response")  # not reached

    def usage_summary(self) -> dict[str, int]:
        """Deterministic accounting for the manifest (identical when the build is replayed)."""
        return {
            "requests": self.lookups,
            "unique_prompts": len(self.used),
            "cache_hits": self.lookups - len(self.used),
            "prompt_tokens": sum(u.get("prompt_tokens", 0) for u in self.used.values()),
            "completion_tokens": sum(u.get("completion_tokens", 0) for u in self.used.values()),
        }
