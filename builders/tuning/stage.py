"""The LLM stage of FINER-Tuning: phrases, negatives and Wh questions from captions (paper, section 3).

Per image, six prompts (``prompts/``), pipelined so that the client's concurrency stays full:
``tuning_extract`` (objects with attributes and relations) and ``tuning_wh_positive`` at once;
then, from the extraction, the three negatives (``tuning_negative_obj|attr|rel``: the instance to
replace is drawn by :func:`~finer_datasets.preference.construct.plan_phrases`, seeded) and,
from the Wh answer, ``tuning_wh_negative``. Images do not wait for each other.

Every answer the model gives is kept in the transcript, usable or not: the stage checks answers
itself and re-asks (at most :data:`MAX_REASKS` times, a follow-up turn naming the problem), so a
replay reproduces the same answers, the same re-asks and the same skips. Only requests the
endpoint never answered (retries exhausted) are missing from a transcript.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from finer_datasets.llm.client import LLMAnswerError
from finer_datasets.llm.stages import Stage, gather, norm
from finer_datasets.preference.construct import (
    Phrase,
    PhrasePlan,
    SceneObject,
    WhPair,
    plan_phrases,
)

from .source import Row, prompt_caption

__all__ = ["AskingStage", "TuningPhrases", "ImageAnswers", "MAX_REASKS", "TASKS", "Checked", "prompt_identity"]

MAX_REASKS = 2
TASKS = ("tuning_extract", "tuning_negative_obj", "tuning_negative_attr", "tuning_negative_rel",
         "tuning_wh_positive", "tuning_wh_negative")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_REASK = ("That answer cannot be used: {problem}. Reply again with only the JSON object described above, "
          "and nothing else.")
_MAX_CHARS = 160
_LIMITS = {"objects": 8, "attributes": 4, "relations": 3}
Checked = tuple[Any, "str | None"]


def prompt_identity(row: Row) -> str:
    """What every prompt of ``row`` depends on besides the seed, the model and the answers to
    earlier prompts of the same caption: its caption as the prompts see it
    (:func:`~.source.prompt_caption`). Parts (``--part I/N``) are assigned by it, so rows that
    share a caption (at other URLs) share a part and a prompt is never asked in two parts."""
    return prompt_caption(row.caption)[0]


def _content(response: dict) -> Checked:
    """The client's parse: any non-empty text is an answer (checked by the stage, not the client)."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None, "the response has no choices[0].message.content"
    if not isinstance(content, str) or not content.strip():
        return None, "empty answer"
    return content, None


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split()).rstrip(".;,")
    return text if text and len(text) <= _MAX_CHARS else None


def _strings(values: Any, limit: int) -> list[str]:
    out: list[str] = []
    for value in values if isinstance(values, list) else []:
        text = _clean(value)
        if text and norm(text) not in {norm(o) for o in out}:
            out.append(text)
    return out[:limit]


def check_extraction(value: Any) -> Checked:
    """Usable objects of an extraction answer (cleaned, de-duplicated, capped) or the problem."""
    if not isinstance(value, dict) or not isinstance(value.get("objects"), list):
        return None, 'expected {"objects": [...]}'
    objects: list[SceneObject] = []
    for item in value["objects"]:
        if not isinstance(item, dict):
            continue
        phrase, name = _clean(item.get("phrase")), _clean(item.get("name"))
        if not phrase or not name or norm(phrase) in {norm(o.phrase) for o in objects}:
            continue
        objects.append(SceneObject(phrase, name, tuple(_strings(item.get("attributes"), _LIMITS["attributes"])),
                                   tuple(_strings(item.get("relations"), _LIMITS["relations"]))))
    if value["objects"] and not objects:
        return None, 'no object has both a "phrase" and a "name" string'
    return tuple(objects[:_LIMITS["objects"]]), None


def check_replacement(plan: PhrasePlan, caption: str) -> Callable[[Any], Checked]:
    def check(value: Any) -> Checked:
        text = _clean(value.get("replacement")) if isinstance(value, dict) else None
        if not text:
            return None, 'expected {"replacement": "..."} with a short phrase'
        if norm(text) in {norm(i) for i in plan.items}:
            return None, f'"{text}" is already in the phrase; give something different'
        if plan.type == "obj":
            core = re.sub(r"^(a|an|the|one|two|three|some|several)\s+", "", norm(text))
            if re.search(rf"\b{re.escape(core)}\b", norm(caption)):
                return None, f'the description mentions "{core}"; choose an object it does not mention'
        return text, None
    return check


def _fields(value: Any, names: Sequence[str]) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    out = {name: " ".join(value[name].split()) for name in names if isinstance(value.get(name), str)}
    return out if len(out) == len(names) and all(out.values()) else None


def check_wh_positive(value: Any) -> Checked:
    found = _fields(value, ("statement", "question", "answer"))
    if found is None:
        return None, 'expected {"statement", "question", "answer"}, all non-empty strings'
    if not found["question"].endswith("?"):
        return None, "the question must end with a question mark"
    return found, None


def check_wh_negative(positive: dict[str, str]) -> Callable[[Any], Checked]:
    def check(value: Any) -> Checked:
        found = _fields(value, ("question", "answer"))
        if found is None:
            return None, 'expected {"question", "answer", "changed"} with non-empty question and answer'
        found["changed"] = " ".join(value["changed"].split()) if isinstance(value.get("changed"), str) else ""
        if not found["question"].endswith("?"):
            return None, "the question must end with a question mark"
        if norm(found["question"]) == norm(positive["question"]):
            return None, "the question is the same as the one with a true premise; change one detail"
        if norm(found["answer"]) == norm(positive["answer"]):
            return None, "the answer must reject the false premise, not repeat the first answer"
        return found, None
    return check


@dataclass
class ImageAnswers:
    """What the stage got for one image; ``problems`` lists (task, why) of prompts with no usable answer."""

    objects: tuple[SceneObject, ...] | None = None
    phrases: dict[str, Phrase] = field(default_factory=dict)
    wh: WhPair | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)


class AskingStage(Stage):
    """A stage whose answers are JSON objects it checks itself, re-asking (at most
    :data:`MAX_REASKS` times) with the problem; counts re-asks and unusable answers per task."""

    def __init__(self, client: Any, prompts: Any):
        super().__init__(client, prompts)
        self.reasks: Counter[str] = Counter()
        self.unusable: Counter[str] = Counter()
        self.images = 0

    async def _ask(self, task: str, values: dict[str, Any], check: Callable[[Any], Checked], purpose: str) -> Checked:
        messages = self.prompts.render(task, **values)
        problem = ""
        for attempt in range(MAX_REASKS + 1):
            try:
                content = await self.client.ask(messages, _content, purpose=purpose)
            except LLMAnswerError as exc:
                self.unusable[task] += 1
                return None, f"no answer from the endpoint ({exc})"
            text = content.strip()
            fenced = _FENCE.match(text)
            try:
                value, problem = check(json.loads(fenced.group(1) if fenced else text))
            except json.JSONDecodeError as exc:
                value, problem = None, f"not valid JSON ({exc.msg})"
            if problem is None:
                return value, None
            if attempt < MAX_REASKS:
                self.reasks[task] += 1
                messages = messages + [{"role": "assistant", "content": content},
                                       {"role": "user", "content": _REASK.format(problem=problem)}]
        self.unusable[task] += 1
        return None, f"unusable after {MAX_REASKS} re-asks: {problem}"


class TuningPhrases(AskingStage):
    """The stage (``llm_stages = {"phrases": TuningPhrases, ...}``)."""

    label = "phrase extraction, negatives and Wh questions"
    tasks = TASKS

    async def _image(self, row: Row, seed: int) -> ImageAnswers:
        caption, _ = prompt_caption(row.caption)
        where = f"{row.rel} row {row.row}"
        out = ImageAnswers()
        (objects, p1), (wh, p2) = await asyncio.gather(
            self._ask("tuning_extract", {"caption": caption}, check_extraction, f"extract {where}"),
            self._ask("tuning_wh_positive", {"caption": caption}, check_wh_positive, f"wh {where}"))
        out.problems += [(t, p) for t, p in (("tuning_extract", p1), ("tuning_wh_positive", p2)) if p]
        out.objects = objects
        plans = plan_phrases(objects or (), row.key, seed)
        jobs = [self._ask(f"tuning_negative_{kind}", {"caption": caption, "items": list(plan.items),
                                                      "target": plan.items[plan.target], "subject": plan.subject},
                          check_replacement(plan, caption), f"negative {kind} {where}")
                for kind, plan in plans.items()]
        if wh is not None:
            jobs.append(self._ask("tuning_wh_negative", {"caption": caption, **wh}, check_wh_negative(wh),
                                  f"wh negative {where}"))
        answers = await asyncio.gather(*jobs)
        for (kind, plan), (replacement, problem) in zip(plans.items(), answers):
            if problem:
                out.problems.append((f"tuning_negative_{kind}", problem))
            else:
                out.phrases[kind] = Phrase(plan, replacement)
        if wh is not None:
            negative, problem = answers[-1]
            if problem:
                out.problems.append(("tuning_wh_negative", problem))
            else:
                out.wh = WhPair(wh["statement"], wh["question"], wh["answer"], negative["question"],
                                negative["answer"], negative["changed"])
        return out

    def run(self, rows: Sequence[Row], seed: int) -> dict[str, ImageAnswers]:
        """Ask every prompt of every row (concurrently, bounded by the client); answers by row key."""
        self.images += len(rows)
        results = self.client.run(gather([self._image(r, seed) for r in rows], "LLM phrases"))
        return {row.key: answer for row, answer in zip(rows, results)}

    def report(self) -> dict[str, Any]:
        """For the manifest's ``llm`` block: deterministic (the same when the build is replayed)."""
        return {"tuning": {"images": self.images, "reasks": dict(sorted(self.reasks.items())),
                           "unusable": dict(sorted(self.unusable.items()))}}

    def card_text(self) -> str:
        unusable = sum(self.unusable.values())
        return (f"; {self.images} captions, {sum(self.reasks.values())} re-asks, "
                f"{unusable} prompt(s) without a usable answer")
