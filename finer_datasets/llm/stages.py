"""What every model stage shares: progress-tracked concurrent asks and the per-element failure rule.

A stage (e.g. ``scene_graph.llm_negatives.LLMNegatives``) is a class with

* ``tasks``: the prompt templates it renders (the build's prompt fingerprint covers only these);
* ``label``: a few words for the card ("negatives", "Wh questions");
* ``from_run(run)``: build it from an :class:`~finer_datasets.llm.run.LLMRun` (client,
  discriminator, prompts, thresholds, seed);
* a ``prepare(...)`` step that sends all of its prompts concurrently before the deterministic,
  per-image part of the build reads the answers; optionally ``report()`` (manifest) and
  ``card_text()``.

:func:`ask_or_none` turns a request that got no usable answer into ``None`` (the element is then
skipped and counted); an endpoint failure (:class:`~finer_datasets.errors.LLMError` that is not an
:class:`~finer_datasets.llm.client.LLMAnswerError`) propagates and aborts the build.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Sequence

from tqdm.auto import tqdm

from finer_datasets.core.text import norm
from finer_datasets.llm.client import ChatClient, LLMAnswerError

__all__ = ["Stage", "gather", "ask_or_none", "norm"]

logger = logging.getLogger(__name__)


async def gather(tasks: Sequence[Any], desc: str) -> list[Any]:
    """``asyncio.gather`` with a progress bar (rate and ETA). The first endpoint failure cancels
    the others and propagates."""
    bar = tqdm(total=len(tasks), desc=desc, unit="call", disable=None)

    async def tracked(task: Any) -> Any:
        try:
            return await task
        finally:
            bar.update()

    jobs = [asyncio.ensure_future(tracked(t)) for t in tasks]
    try:
        return await asyncio.gather(*jobs)
    except BaseException:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        raise
    finally:
        bar.close()


async def ask_or_none(client: ChatClient, messages: list, parse: Any, purpose: str) -> Any:
    """The parsed answer, or ``None`` (logged: the first few, then counted) when this request got no usable answer."""
    try:
        return await client.ask(messages, parse, purpose=purpose)
    except LLMAnswerError as exc:
        client.note_unanswered(purpose, exc)
        return None


class Stage:
    """Base of a model stage that needs the run's LLM client and prompt set: subclasses declare
    ``label`` and ``tasks`` and implement ``prepare``; ``from_run`` builds one from an ``LLMRun``."""

    label: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, client: Any, prompts: Any):
        self.client = client
        self.prompts = prompts

    @classmethod
    def from_run(cls, run: Any) -> Stage:
        return cls(run.client, run.prompts)


