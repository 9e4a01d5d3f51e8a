"""CompreCap attribute sentences -> ``with ...`` phrases by an LLM (paper, section B.1).

A model stage (see :mod:`finer_datasets.llm.stages`) that replaces the rule-based rewriter of
:mod:`.parsing` when ``rewrite`` is among ``--llm-stages``.
"""

from __future__ import annotations

from typing import Any, Sequence

from finer_datasets.llm.client import json_parser
from finer_datasets.llm.stages import Stage, ask_or_none, gather

__all__ = ["LLMAttributeRewriter"]

_PHRASES_SCHEMA = {"type": "object", "required": ["phrases"],
                   "properties": {"phrases": {"type": "array", "items": {"type": "string", "pattern": "^with "}}}}


class LLMAttributeRewriter(Stage):
    """Attribute sentences -> ``with ...`` phrases by an LLM (section B.1)."""

    label = "attribute rewriting"
    tasks = ("rewrite_attribute",)

    def __init__(self, client: Any, prompts: Any):
        super().__init__(client, prompts)
        self._phrases: dict[tuple[str, str], list[str] | None] = {}

    def prepare(self, items: Sequence[tuple[str, str]]) -> None:
        """``items``: ``(sentence, object name)`` pairs to rewrite."""
        unique = sorted(set(items))
        self._phrases.update(zip(unique, self.client.run(gather([self._one(s, n) for s, n in unique], "LLM rewrite"))))

    async def _one(self, sentence: str, name: str) -> list[str] | None:
        messages = self.prompts.render("rewrite_attribute", sentence=sentence, object=name)
        answer = await ask_or_none(self.client, messages, json_parser(_PHRASES_SCHEMA), f"rewrite {sentence!r}")
        return (answer["phrases"] or None) if answer else None

    def __call__(self, sentence: str, name: str) -> list[str] | None:
        return self._phrases.get((sentence, name))
