"""Wh question templates written by an LLM from relation triplets, the answer masked (paper, B.4).

A model stage (see :mod:`finer_datasets.llm.stages`): ``prepare(images)`` asks, for every relation
and each side (subject / object) that could be the answer, for one "What ..." question with the
context object as ``[CONTEXT]``; :func:`finer_datasets.mcq.pairs.pairs_for_image` uses them in
place of its rule-based templates.
"""

from __future__ import annotations

from typing import Any, Sequence

from finer_datasets.llm.client import json_parser
from finer_datasets.llm.stages import Stage, ask_or_none, gather
from finer_datasets.scene_graph.graph import SceneGraph

__all__ = ["WhQuestionWriter"]

_WH_SCHEMA = {"type": "object", "required": ["question"], "properties": {"question": {"type": "string", "minLength": 5}}}


class WhQuestionWriter(Stage):
    """Wh question templates from relation triplets with the answer target masked (section B.4)."""

    label = "Wh questions"
    tasks = ("wh_question",)

    def __init__(self, client: Any, prompts: Any):
        super().__init__(client, prompts)
        self._templates: dict[str, dict[tuple[str, str], str]] = {}

    def prepare(self, images: Sequence[Any]) -> None:
        jobs = []
        for image in images:
            g = image.graph
            for rel in g.relations:
                for side in ("subject", "object"):
                    jobs.append((image.image_id, rel, side, g))
        results = self.client.run(gather([self._one(g, rel, side) for _, rel, side, g in jobs], "LLM Wh"))
        for (image_id, rel, side, _), template in zip(jobs, results):
            if template:
                self._templates.setdefault(image_id, {})[(rel.id, side)] = template

    async def _one(self, g: SceneGraph, rel: Any, side: str) -> str | None:
        subject, obj = g.object(rel.subject).name, g.object(rel.object).name
        target, context = (subject, obj) if side == "subject" else (obj, subject)

        def check(value: dict) -> str | None:
            q = value["question"].strip()
            if q.count("[CONTEXT]") != 1:
                return "the question must contain [CONTEXT] exactly once"
            if not q.endswith("?") or not q.lower().startswith("what"):
                return 'the question must start with "What" and end with "?"'
            if target.lower() in q.lower().replace("[context]", ""):
                return f"the question must not name the answer {target!r}"
            return None

        messages = self.prompts.render("wh_question", subject=subject, predicate=rel.predicate, object=obj,
                          target_role=side, target=target, context=context)
        answer = await ask_or_none(self.client, messages, json_parser(_WH_SCHEMA, check), f"wh {g.image_id}/{rel.id}")
        return None if answer is None else answer["question"].strip()

    def for_image(self, image_id: str) -> dict[tuple[str, str], str]:
        """``{(relation id, target side): template}`` of one image."""
        return dict(self._templates.get(image_id, {}))
