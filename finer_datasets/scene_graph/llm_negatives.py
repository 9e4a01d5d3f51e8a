"""Negatives from an LLM (paper, section B.3), optionally filtered by an MLLM discriminator.

:class:`LLMNegatives` is a model stage (see :mod:`finer_datasets.llm.stages`) and a
:class:`~finer_datasets.scene_graph.negatives.NegativesProvider`: ``prepare(images)`` asks for 4
negatives of every element of every image (at once, concurrently, through the transcript), then
runs the entropy filter: the discriminator picks among the positive and its 4 negatives; a
negative it picks with entropy below the level's threshold is regenerated, up to ``rounds`` times.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Sequence

from finer_datasets.llm.client import json_parser
from finer_datasets.llm.entropy import LevelStats, discriminator_question, entropy
from finer_datasets.llm.stages import ask_or_none, gather
from finer_datasets.scene_graph.graph import SceneGraph, reading, relation_phrase
from finer_datasets.scene_graph.negatives import check_negatives, present_phrases

__all__ = ["LLMNegatives"]

_NEGATIVES_SCHEMA = {"type": "object", "required": ["negatives"],
                     "properties": {"negatives": {"type": "array", "items": {"type": "string", "minLength": 1},
                                                  "minItems": 4, "maxItems": 4}}}
_ONE_SCHEMA = {"type": "object", "required": ["negative"], "properties": {"negative": {"type": "string", "minLength": 1}}}
_LEVELS = ("object", "attribute", "relation")


class LLMNegatives:
    """Negatives from an LLM (section B.3), optionally filtered by an MLLM discriminator."""

    kind = "llm"
    label = "negatives"
    tasks = ("negatives.object", "negatives.attribute", "negatives.relation", "negatives.replace")

    def __init__(self, client: Any, prompts: Any, *, discriminator: Any = None, thresholds: Any = None,
                 rounds: int = 3, seed: int = 0):
        self.client = client
        self.prompts = prompts
        self.discriminator = discriminator
        self.thresholds = thresholds
        self.rounds = rounds
        self.seed = seed
        self._negatives: dict[str, dict[str, tuple[str, ...]]] = {}
        self.stats: dict[str, LevelStats] = {}

    @classmethod
    def from_run(cls, run: Any) -> LLMNegatives:
        return cls(run.client, run.prompts, discriminator=run.discriminator, thresholds=run.thresholds,
                   rounds=run.rounds, seed=run.seed)

    def fingerprint(self) -> str:
        payload = {"kind": self.kind, "model": self.client.model, "prompts": self.prompts.fingerprint(self.tasks),
                   "discriminator": getattr(self.discriminator, "name", None),
                   "thresholds": vars(self.thresholds) if self.thresholds else None, "rounds": self.rounds}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def negatives_for(self, graph: SceneGraph, rng: random.Random) -> dict[str, tuple[str, ...]]:
        return dict(self._negatives.get(graph.image_id, {}))

    def prepare(self, images: Sequence[Any]) -> None:
        """Ask for every element's negatives (and filter them); ``images`` are ``SourceImage``s."""
        if self.discriminator is not None and self.thresholds is not None:
            self.stats = {k: LevelStats(theta=self.thresholds.of(k)) for k in _LEVELS}
        self.client.run(self._prepare(images))

    async def _prepare(self, images: Sequence[Any]) -> None:
        jobs = [(image, kind, element_id, text) for image in images
                for kind, element_id, text in image.graph.elements()]
        answers = await gather([self._propose(image.graph, kind, eid, text) for image, kind, eid, text in jobs],
                                "LLM negatives")
        for (image, _, element_id, _), negs in zip(jobs, answers):
            if negs is not None:
                self._negatives.setdefault(image.image_id, {})[element_id] = negs
        if self.discriminator is not None and self.thresholds is not None:
            work = [(image, kind, eid, text) for image, kind, eid, text in jobs
                    if eid in self._negatives.get(image.image_id, {})]
            await gather([self._filter(image, kind, eid, text) for image, kind, eid, text in work], "MLLM filter")

    # -- proposal ----------------------------------------------------------------------------

    def _context(self, graph: SceneGraph, kind: str, element_id: str) -> dict[str, str]:
        if kind == "attribute":
            owner = next(o for o in graph.objects if any(a.id == element_id for a in o.attributes))
            return {"object": owner.name}
        if kind == "relation":
            rel = next(r for r in graph.relations if r.id == element_id)
            return {"subject": graph.object(rel.subject).name, "object": graph.object(rel.object).name}
        return {}

    async def _propose(self, graph: SceneGraph, kind: str, element_id: str, positive: str) -> tuple[str, ...] | None:
        present = present_phrases(graph, kind)
        banned = {reading(kind, p) for p in present} | {reading(kind, positive)}

        def check(value: dict) -> str | None:
            negs = value["negatives"]
            problem = check_negatives(element_id, positive, negs, kind=kind)
            if problem:
                return problem.split(": ", 1)[1]
            clash = [n for n in negs if reading(kind, n) in banned]
            if clash:
                return f"{clash[0]!r} is annotated in the image"
            if kind == "attribute" and not all(n.lower().startswith("with ") for n in negs):
                return 'every negative must start with "with "'
            return None

        messages = self.prompts.render(f"negatives.{kind}", positive=positive, present=present, **self._context(graph, kind, element_id))
        answer = await ask_or_none(self.client, messages, json_parser(_NEGATIVES_SCHEMA, check),
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
        taken = {reading(kind, x) for x in [positive, *negs, *rejected, *present_phrases(graph, kind)]}

        def check(value: dict) -> str | None:
            if not reading(kind, value["negative"]):
                return "the negative is empty"
            if reading(kind, value["negative"]) in taken:  # as it reads in a question: "are on" is "is on"
                return f"{value['negative']!r} reads like a phrase already used, rejected or annotated"
            if kind == "attribute" and not value["negative"].lower().startswith("with "):
                return 'the negative must start with "with "'
            return None

        messages = self.prompts.render("negatives.replace", kind=kind, positive=positive, kept=[n for n in negs if n != bad],
                          rejected=bad, rejected_all=rejected, present=present_phrases(graph, kind),
                          context=json.dumps(self._context(graph, kind, element_id)))
        answer = await ask_or_none(self.client, messages, json_parser(_ONE_SCHEMA, check),
                                    f"{graph.image_id}/{element_id} replacement")
        return None if answer is None else answer["negative"]

    def filter_report(self) -> dict[str, Any] | None:
        if not self.stats:
            return None
        return {"discriminator": self.discriminator.name, "rounds": self.rounds,
                "levels": {k: v.to_dict() for k, v in self.stats.items()}}

    def report(self) -> dict[str, Any]:
        """The manifest's ``entropy_filter`` block (``None`` without a discriminator)."""
        return {"entropy_filter": self.filter_report()}

    def card_text(self) -> str:
        filt = self.filter_report()
        if not filt:
            return ""
        rows = "\n".join(
            f"  | {level} | {v['theta']} | {v['count']} | {v['regenerated']} | "
            f"{'-' if v['discriminator_accuracy'] is None else v['discriminator_accuracy']} |"
            for level, v in filt["levels"].items())
        return ("\n\n  Entropy filter (up to " + str(filt["rounds"]) + " rounds; cf. Tables 7 and 8 of the paper):\n\n"
                "  | level | θ | count | regenerated | discriminator accuracy (%) |\n  |---|---|---|---|---|\n" + rows)
