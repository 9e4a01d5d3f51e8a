"""Scoring a model served behind an OpenAI-compatible chat API (vLLM, SGLang, hosted APIs).

Each question is one chat request: the image (its original bytes as a data URL) and the prompt
text, greedy, ``max_tokens`` = the template's budget. Requests go through the library's async
:class:`~finer_datasets.llm.client.ChatClient`: bounded concurrency, retries with backoff on
429/5xx/timeouts, a circuit breaker, and a transcript (SQLite, keyed by the prompt, the image's
sha256, the model and the parameters) so that an answer paid for is never asked for again, even
when the run is killed between the server's reply and the predictions file.

``logprobs`` are asked for (``top_logprobs`` 20); when the server returns them, the 5-way letter
distribution of the first generated token is kept beside the text (``probs``); a server that
refuses the parameter (HTTP 400 naming it) is asked again without it for the rest of the run.
The text is always what is scored.

Failures: :class:`~finer_datasets.llm.client.LLMAnswerError` is about one question (it is left
unanswered and counted); :class:`~finer_datasets.errors.LLMError` (unreachable, unauthorised,
unknown model, breaker open) stops the run at once. Answers already written are kept either way,
and rerunning the same command asks only what is missing.

With vLLM, serve the model with prefix caching (on by default in vLLM's V1 engine; the official
prompt's fixed header and the image are then computed once per image)::

    vllm serve Qwen/Qwen2.5-VL-7B-Instruct --enable-prefix-caching --max-model-len 8192
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from finer_datasets.constants import LETTERS
from finer_datasets.eval.questions import RunQuestion
from finer_datasets.llm.client import ChatClient, LLMAnswerError, LLMConfig, Parsed
from finer_datasets.llm.transcript import TranscriptStore

__all__ = ["ServedModel", "ServedSummary", "letter_distribution", "parse_reply", "TOP_LOGPROBS"]

logger = logging.getLogger(__name__)

TOP_LOGPROBS = 20  # the most OpenAI's API (and vLLM's default --max-logprobs) returns


def letter_distribution(logprobs: Any) -> list[float] | None:
    """Probabilities of A..E from the first generated token's ``top_logprobs`` (renormalised over
    the letters present; a letter absent from the list gets 0), or ``None`` when no letter is
    among them. Tokens are compared without surrounding spaces, brackets and periods."""
    try:
        first = logprobs["content"][0]
    except (KeyError, IndexError, TypeError):
        return None
    scores = {letter: -math.inf for letter in LETTERS}
    for item in [*(first.get("top_logprobs") or []), {"token": first.get("token"), "logprob": first.get("logprob")}]:
        token = str(item.get("token") or "").strip().strip(".()")
        if token in scores and item.get("logprob") is not None:
            scores[token] = max(scores[token], float(item["logprob"]))
    top = max(scores.values())
    if top == -math.inf:
        return None
    weights = [math.exp(scores[letter] - top) for letter in LETTERS]
    total = sum(weights)
    return [w / total for w in weights]


def parse_reply(response: dict) -> Parsed:
    """``({"response": text, "probs": [...] | None}, None)``; a reply without a message is a problem."""
    try:
        choice = response["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        return None, "the response has no choices[0].message"
    return {"response": (message or {}).get("content") or "", "probs": letter_distribution(choice.get("logprobs"))}, None


@dataclass
class ServedSummary:
    """What one pass over the questions did."""

    answered: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (question id, reason)
    logprobs: bool = True


class ServedModel:
    """Answers :class:`~finer_datasets.eval.questions.RunQuestion` objects through a chat endpoint."""

    engine = "openai"

    def __init__(self, client: ChatClient, *, max_new_tokens: int, logprobs: bool = True, window: int | None = None):
        self.client = client
        self.max_new_tokens = max_new_tokens
        self.logprobs = logprobs
        self.window = window or 4 * client.config.concurrency

    @classmethod
    def connect(cls, base_url: str, model: str, *, transcript: str | Path, max_new_tokens: int,
                api_key_env: str = "OPENAI_API_KEY", concurrency: int = 16, timeout: float = 120.0,
                max_retries: int = 6, seed: int | None = 0, logprobs: bool = True,
                transport: Any = None, **config: Any) -> ServedModel:
        """A client for ``model`` at ``base_url`` (``.../v1``) whose transcript is ``transcript``."""
        settings = LLMConfig(base_url=base_url, model=model, api_key_env=api_key_env, concurrency=concurrency,
                             timeout=timeout, max_retries=max_retries, max_reasks=0, temperature=0.0,
                             max_tokens=max_new_tokens, seed=seed, **config)
        client = ChatClient(settings, TranscriptStore(transcript), transport=transport)
        return cls(client, max_new_tokens=max_new_tokens, logprobs=logprobs)

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": self.max_new_tokens}
        if self.logprobs:
            params.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return params

    @staticmethod
    def messages(question: RunQuestion) -> tuple[list[dict], list[dict]]:
        """``(keyed, wire)``: the request as recorded (image by sha256) and as sent (data URL)."""
        ref = question.image_ref
        text = {"type": "text", "text": question.prompt}
        keyed = [{"role": "user", "content": [{"type": "image_sha256", "sha256": ref.sha256}, text]}]
        url = f"data:{ref.mime};base64,{base64.b64encode(ref.data).decode('ascii')}"
        wire = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, text]}]
        return keyed, wire

    async def _ask(self, question: RunQuestion) -> tuple[RunQuestion, dict | None, str | None]:
        keyed, wire = self.messages(question)
        while True:
            asked_logprobs = self.logprobs
            try:
                value = await self.client.ask(keyed, parse_reply, wire=wire, purpose=f"question {question.question_id}",
                                              **self._params())
                return question, value, None
            except LLMAnswerError as exc:
                if asked_logprobs and "HTTP 400" in str(exc) and "logprob" in str(exc).lower():
                    if self.logprobs:
                        logger.warning("the server refuses logprobs (%s); asking for text only from now on", exc)
                        self.logprobs = False
                    continue
                return question, None, str(exc)

    async def _run(self, questions: Iterator[RunQuestion], write: Callable[[dict], None], summary: ServedSummary,
                   tick: Callable[[], None]) -> None:
        pending: set[asyncio.Future] = set()
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.window:
                    question = next(questions, None)
                    if question is None:
                        exhausted = True
                    else:
                        pending.add(asyncio.ensure_future(self._ask(question)))
                if not pending:
                    return
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                fatal = next((t.exception() for t in done if t.exception() is not None), None)
                for task in done:
                    if task.exception() is not None:
                        continue
                    question, value, problem = task.result()
                    tick()
                    if value is None:
                        summary.failed.append((question.question_id, problem or "no answer"))
                        continue
                    answer = {"question_id": question.question_id, "response": value["response"]}
                    if value.get("probs") is not None:
                        answer["probs"] = [round(p, 6) for p in value["probs"]]
                    write(answer)
                    summary.answered += 1
                if fatal is not None:  # the endpoint failed for good: stop, after keeping what came
                    raise fatal
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def answer(self, questions: Iterable[RunQuestion], write: Callable[[dict], None], *,
               total: int | None = None, progress: bool = True) -> ServedSummary:
        """Ask every question, ``write`` each answer (``{"question_id", "response"[, "probs"]}``) as
        it arrives, and return what happened. Raises :class:`~finer_datasets.errors.LLMError` when
        the endpoint fails for good (after writing every answer that came before)."""
        from tqdm.auto import tqdm

        self.client.preflight()
        summary = ServedSummary()
        with tqdm(total=total, desc="openai", unit="q", disable=not progress) as bar:
            self.client.run(self._run(iter(questions), write, summary, lambda: bar.update(1)))
        summary.logprobs = self.logprobs
        logger.info("served model: %d answered, %d failed, %s", summary.answered, len(summary.failed),
                    dict(self.client.live))
        return summary

    def close(self) -> None:
        self.client.store.close()
