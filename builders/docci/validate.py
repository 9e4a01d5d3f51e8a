"""Relation validation of FINER-DOCCI (paper, section B.2): the MLLM looks, the LLM reads.

For every extracted relation two yes/no votes are collected concurrently:

* the **MLLM** (the build's discriminator, ``--mllm-*``) answers "A. Yes / B. No" about the
  statement on the image (task ``validate_relation_image``); its vote is *yes* when it gives
  A a higher probability than B;
* the **LLM** is asked whether the caption explicitly supports the statement (task
  ``validate_relation``).

Rule (:func:`keep`): a relation is discarded when both disagree with it, kept when at least one
agrees. A vote that is unavailable -- no MLLM configured, or no usable answer -- counts as
disagreement, so without an MLLM the LLM alone decides (conservative: precision over recall).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finer_datasets.llm.client import LLMAnswerError, json_parser
from finer_datasets.llm.stages import gather

__all__ = ["RelationValidator", "Verdict", "keep"]

_SUPPORTED_SCHEMA = {"type": "object", "required": ["supported"], "properties": {"supported": {"type": "boolean"}}}


@dataclass(frozen=True)
class Verdict:
    """The two votes on one relation: ``True`` agrees, ``False`` disagrees, ``None`` unavailable."""

    llm: bool | None
    mllm: bool | None


def keep(verdict: Verdict) -> bool:
    """Keep a relation unless both models disagree with it (a missing vote disagrees)."""
    return verdict.llm is True or verdict.mllm is True


class RelationValidator:
    """Stage 3: MLLM yes/no on the image and LLM yes/no on the caption for each relation."""

    label = "relation validation"
    tasks = ("validate_relation", "validate_relation_image")

    def __init__(self, client: Any, prompts: Any, discriminator: Any = None):
        self.client = client
        self.prompts = prompts
        self.discriminator = discriminator

    @classmethod
    def from_run(cls, run: Any) -> RelationValidator:
        return cls(run.client, run.prompts, run.discriminator)

    @property
    def mllm(self) -> str | None:
        return getattr(self.discriminator, "name", None)

    def prepare(self, jobs: Sequence[tuple[Any, str]]) -> list[Verdict]:
        """``jobs``: ``(caption, statement)``; one :class:`Verdict` per job, in order."""
        tasks = [self._text(c, s) for c, s in jobs] + [self._image(c, s) for c, s in jobs]
        votes = self.client.run(gather(tasks, "LLM+MLLM relation check"))
        n = len(jobs)
        return [Verdict(llm=votes[k], mllm=votes[n + k]) for k in range(n)]

    async def _text(self, caption: Any, statement: str) -> bool | None:
        messages = self.prompts.render("validate_relation", description=caption.description, statement=statement)
        try:
            answer = await self.client.ask(messages, json_parser(_SUPPORTED_SCHEMA),
                                           purpose=f"{caption.example_id} check {statement!r}")
        except LLMAnswerError:
            return None
        return bool(answer["supported"])

    async def _image(self, caption: Any, statement: str) -> bool | None:
        if self.discriminator is None:
            return None
        question = self.prompts.render("validate_relation_image", statement=statement)[-1]["content"]
        try:
            probs = await self.discriminator.choose(caption.image, question)
        except LLMAnswerError:
            return None
        return probs[0] > probs[1]
