"""LLM stages of a build: negatives (+ entropy filter), attribute rewriting, Wh question templates.

Each stage has a ``prepare(...)`` step that sends all of its prompts concurrently (through the
client's transcript) before the deterministic, per-image part of the build reads the answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from typing import Any, Sequence

from tqdm.auto import tqdm

from .._errors import LLMError
from ..negatives import check_negatives
from ..pairs import relation_phrase
from ..scene_graph import SceneGraph
from .client import ChatClient, json_parser
from .entropy import Discriminator, LevelStats, Thresholds, discriminator_question, entropy
from .prompts import prompts_fingerprint, render

__all__ = ["LLMNegatives", "LLMAttributeRewriter", "WhQuestionWriter"]

logger = logging.getLogger(__name__)

_NEGATIVES_SCHEMA = {"type": "object", "required": ["negatives"],
                     "properties": {"negatives": {"type": "array", "items": {"type": "string", "minLength": 1},
                                                  "minItems": 4, "maxItems": 4}}}
_ONE_SCHEMA = {"type": "object", "required": ["negative"], "properties": {"negative": {"type": "string", "minLength": 1}}}
_PHRASES_SCHEMA = {"type": "object", "required": ["phrases"],
                   "properties": {"phrases": {"type": "array", "items": {"type": "string", "pattern": "^with "}}}}
_WH_SCHEMA = {"type": "object", "required": ["question"], "properties": {"question": {"type": "string", "minLength": 5}}}


async def _gather(tasks: Sequence[Any], desc: str) -> list[Any]:
    """``asyncio.gather`` with a progress bar."""
    bar = tqdm(total=len(tasks), desc=desc, unit="call", disable=None)

    async def tracked(task: Any) -> Any:
        try:
            return await task
        finally:
            bar.update()

    try:
        return await asyncio.gather(*(tracked(t) for t in tasks))
    finally:
        bar.close()


async def _ask_or_none(client: ChatClient, messages: list, parse: Any, purpose: str) -> Any:
    """The parsed answer, or ``None`` (logged) when the model gave no usable one after retries/re-asks."""
    try:
        return await client.ask(messages, parse, purpose=purpose)
    except LLMError as exc:
        logger.warning("%s: %s", purpose, exc)
        return None


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


class LLMNegatives:
    """Negatives from an LLM (section B.3), optionally filtered by an MLLM discriminator."""

    kind = "llm"

    def __init__(self, client: ChatClient, *, discriminator: Discriminator | None = None,
                 thresholds: Thresholds | None = None, rounds: int = 3, seed: int = 0):
        self.client = client
        self.discriminator = discriminator
        self.thresholds = thresholds
        self.rounds = rounds
        self.seed = seed
        self._negatives: dict[str, dict[str, tuple[str, ...]]] = {}
        self.stats: dict[str, LevelStats] = {}

    def fingerprint(self) -> str:
        payload = {"kind": self.kind, "model": self.client.model, "prompts": prompts_fingerprint(),
                   "discriminator": getattr(self.discriminator, "name", None),
                   "thresholds": vars(self.thresholds) if self.thresholds else None, "rounds": self.rounds}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def negatives_for(self, graph: SceneGraph, rng: random.Random) -> dict[str, tuple[str, ...]]:
        return dict(self._negatives.get(graph.image_id, {}))

    def prepare(self, images: Sequence[Any]) -> None:
        """Ask for every element's negatives (and filter them); ``images`` are ``SourceImage``s."""
        if self.discriminator is not None and self.thresholds is not None:
            self.stats = {k: LevelStats(theta=self.thresholds.of(k)) for k in ("object", "attribute", "relation")}
        self.client.run(self._prepare(images))

    async def _prepare(self, images: Sequence[Any]) -> None:
        jobs = [(image, kind, element_id, text) for image in images
                for kind, element_id, text in image.graph.elements()]
        answers = await _gather([self._propose(image.graph, kind, eid, text) for image, kind, eid, text in jobs],
                                "LLM negatives")
        for (image, _, element_id, _), negs in zip(jobs, answers):
            if negs is not None:
                self._negatives.setdefault(image.image_id, {})[element_id] = negs
        if self.discriminator is not None and self.thresholds is not None:
            work = [(image, kind, eid, text) for image, kind, eid, text in jobs
                    if eid in self._negatives.get(image.image_id, {})]
            await _gather([self._filter(image, kind, eid, text) for image, kind, eid, text in work], "MLLM filter")

    # -- proposal ----------------------------------------------------------------------------

    @staticmethod
    def _present(graph: SceneGraph, kind: str) -> list[str]:
        if kind == "object":
            return sorted({o.name for o in graph.objects})
        if kind == "attribute":
            return sorted({a.text for o in graph.objects for a in o.attributes})
        return sorted({r.predicate for r in graph.relations})

    def _context(self, graph: SceneGraph, kind: str, element_id: str) -> dict[str, str]:
        if kind == "attribute":
            owner = next(o for o in graph.objects if any(a.id == element_id for a in o.attributes))
            return {"object": owner.name}
        if kind == "relation":
            rel = next(r for r in graph.relations if r.id == element_id)
            return {"subject": graph.object(rel.subject).name, "object": graph.object(rel.object).name}
        return {}

    async def _propose(self, graph: SceneGraph, kind: str, element_id: str, positive: str) -> tuple[str, ...] | None:
        present = self._present(graph, kind)
        banned = {_norm(p) for p in present} | {_norm(positive)}

        def check(value: dict) -> str | None:
            negs = value["negatives"]
            problem = check_negatives(element_id, positive, negs)
            if problem:
                return problem.split(": ", 1)[1]
            clash = [n for n in negs if _norm(n) in banned]
            if clash:
                return f"{clash[0]!r} is annotated in the image"
            if kind == "attribute" and not all(n.lower().startswith("with ") for n in negs):
                return 'every negative must start with "with "'
            return None

        messages = render(f"negatives.{kind}", positive=positive, present=present, **self._context(graph, kind, element_id))
        answer = await _ask_or_none(self.client, messages, json_parser(_NEGATIVES_SCHEMA, check),
                                    f"{graph.image_id}/{element_id} negatives")
        return None if answer is None else tuple(answer["negatives"])

    # -- entropy filter ----------------------------------------------------------------------

    def _phrase(self, graph: SceneGraph, kind: str, element_id: str, text: str) -> tuple[str, str]:
        """(context shown in the question, the option phrase) for an element value ``text``."""
        if kind == "object":
            return "", text
        if kind == "attribute":
            return self._context(graph, kind, element_id)["object"], text
        rel = next(r for r in graph.relations if r.id == element_id)
        subject, obj = graph.object(rel.subject).name, graph.object(rel.object).name
        return f"{subject} / {obj}", f"the {subject} {relation_phrase(text, obj)}"

    async def _filter(self, image: Any, kind: str, element_id: str, positive: str) -> None:
        graph = image.graph
        negs = list(self._negatives[image.image_id][element_id])
        rejected: list[str] = []
        stats, theta = self.stats[kind], self.thresholds.of(kind)
        stats.count += 1
        for round_ in range(self.rounds + 1):
            values = [positive, *negs]
            order = list(range(5))
            random.Random(f"{self.seed}:mllm:{image.image_id}:{element_id}:{round_}").shuffle(order)
            context = self._phrase(graph, kind, element_id, positive)[0]
            options = [self._phrase(graph, kind, element_id, values[i])[1] for i in order]
            probs = await self.discriminator.choose(image.path, discriminator_question(kind, context, options))
            chosen = order[max(range(5), key=probs.__getitem__)]
            if chosen == 0 or entropy(probs) >= theta or round_ == self.rounds:
                stats.correct += chosen == 0
                break
            bad = values[chosen]
            rejected.append(bad)
            replacement = await self._replace(graph, kind, element_id, positive, negs, bad, rejected)
            if replacement is None:
                stats.correct += chosen == 0
                break
            negs[negs.index(bad)] = replacement
            stats.regenerated += 1
        self._negatives[image.image_id][element_id] = tuple(negs)

    async def _replace(self, graph: SceneGraph, kind: str, element_id: str, positive: str, negs: list[str],
                       bad: str, rejected: list[str]) -> str | None:
        taken = {_norm(x) for x in [positive, *negs, *rejected, *self._present(graph, kind)]}

        def check(value: dict) -> str | None:
            if _norm(value["negative"]) in taken:
                return f"{value['negative']!r} is already used, rejected or annotated"
            if kind == "attribute" and not value["negative"].lower().startswith("with "):
                return 'the negative must start with "with "'
            return None

        messages = render("negatives.replace", kind=kind, positive=positive, kept=[n for n in negs if n != bad],
                          rejected=bad, rejected_all=rejected, present=self._present(graph, kind),
                          context=json.dumps(self._context(graph, kind, element_id)))
        answer = await _ask_or_none(self.client, messages, json_parser(_ONE_SCHEMA, check),
                                    f"{graph.image_id}/{element_id} replacement")
        return None if answer is None else answer["negative"]

    def filter_report(self) -> dict[str, Any] | None:
        if not self.stats:
            return None
        return {"discriminator": self.discriminator.name, "rounds": self.rounds,
                "levels": {k: v.to_dict() for k, v in self.stats.items()}}


class LLMAttributeRewriter:
    """Attribute sentences -> ``with ...`` phrases by an LLM (section B.1)."""

    def __init__(self, client: ChatClient):
        self.client = client
        self._phrases: dict[tuple[str, str], list[str] | None] = {}

    def prepare(self, items: Sequence[tuple[str, str]]) -> None:
        """``items``: ``(sentence, object name)`` pairs to rewrite."""
        unique = sorted(set(items))
        self._phrases.update(zip(unique, self.client.run(_gather([self._one(s, n) for s, n in unique], "LLM rewrite"))))

    async def _one(self, sentence: str, name: str) -> list[str] | None:
        messages = render("rewrite_attribute", sentence=sentence, object=name)
        answer = await _ask_or_none(self.client, messages, json_parser(_PHRASES_SCHEMA), f"rewrite {sentence!r}")
        return (answer["phrases"] or None) if answer else None

    def __call__(self, sentence: str, name: str) -> list[str] | None:
        return self._phrases.get((sentence, name))


class WhQuestionWriter:
    """Wh question templates from relation triplets with the answer target masked (section B.4)."""

    def __init__(self, client: ChatClient):
        self.client = client
        self._templates: dict[str, dict[tuple[str, str], str]] = {}

    def prepare(self, images: Sequence[Any]) -> None:
        jobs = []
        for image in images:
            g = image.graph
            for rel in g.relations:
                for side in ("subject", "object"):
                    jobs.append((image.image_id, rel, side, g))
        results = self.client.run(_gather([self._one(g, rel, side) for _, rel, side, g in jobs], "LLM Wh"))
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

        messages = render("wh_question", subject=subject, predicate=rel.predicate, object=obj,
                          target_role=side, target=target, context=context)
        answer = await _ask_or_none(self.client, messages, json_parser(_WH_SCHEMA, check), f"wh {g.image_id}/{rel.id}")
        return None if answer is None else answer["question"].strip()

    def for_image(self, image_id: str) -> dict[tuple[str, str], str]:
        """``{(relation id, target side): template}`` of one image."""
        return dict(self._templates.get(image_id, {}))

