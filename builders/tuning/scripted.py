"""How the scripted stand-in model (``finer_datasets.testing.scripted``) answers FINER-Tuning's prompts.

Rule-based, for the captions of the bundled sample and dummy data (written by
``maintenance/make_sample.py`` in a small grammar: "There is a red ball with white stripes.",
"The ball is to the left of the box."), so the LLM path can be recorded and replayed offline.
It is not a model: on other captions it extracts nothing and gives no Wh question (which the
stage counts as an unusable answer). It sorts captions into image categories by a few words
("screenshot", "chart", "receipt", ...; anything else is a natural image).
"""

from __future__ import annotations

import random
import re
from typing import Any

__all__ = ["answer", "OBJECTS", "COLORS", "PARTS", "RELATIONS", "OPPOSITE"]

OBJECTS = ("ball", "box", "cup", "kite", "lamp", "book", "tree", "house", "car", "flower", "sun", "cloud")
COLORS = ("red", "blue", "green", "yellow", "orange", "purple", "white", "black", "brown", "gray", "pink")
PARTS = {
    "ball": ("white stripes", "black dots"), "box": ("a metal lid", "a paper label"), "cup": ("a curved handle",
    "a thin rim"), "kite": ("a long tail", "a short string"), "lamp": ("a round shade", "a thin stand"),
    "book": ("a torn cover", "a ribbon bookmark"), "tree": ("a thick trunk", "round leaves"),
    "house": ("a slanted roof", "a square window"), "car": ("black wheels", "a tinted windshield"),
    "flower": ("five petals", "a long stem"), "sun": ("short rays", "a bright glow"),
    "cloud": ("fluffy edges", "a gray underside"),
}
RELATIONS = ("to the left of", "to the right of", "above", "below", "next to")
OPPOSITE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
            "below": "above", "next to": "far from"}

_CAPTION = re.compile(r'"""\s*(.*?)\s*"""', re.S)
#: the image-category prompt: the first class whose words the caption uses, else natural_image
_KINDS = (("screenshot_ui", re.compile(r"\b(screenshots?|app|website|web page|user interface|browser window)\b", re.I)),
          ("chart_graph", re.compile(r"\b(charts?|graphs?|diagrams?|plots?|flowcharts?)\b", re.I)),
          ("document_text", re.compile(r"\b(documents?|receipts?|printed page|handwritten|form)\b", re.I)))
_THERE_IS = re.compile(r"There is an? (\w+) (\w+) with ([^.]+)\.")
_RELATION = re.compile(r"The (\w+) is (" + "|".join(map(re.escape, RELATIONS)) + r") the (\w+)\.")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _scene(caption: str) -> list[dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {}
    for color, noun, part in _THERE_IS.findall(caption):
        objects.setdefault(noun, {"phrase": f"{_article(color)} {color} {noun}", "name": f"the {noun}",
                                  "attributes": [f"{_article(color)} {color} color", part], "relations": [],
                                  "color": color})
    for subject, relation, other in _RELATION.findall(caption):
        if subject in objects and other in objects:
            objects[subject]["relations"].append(f"{relation} the {other}")
    return list(objects.values())


def _quoted(text: str, before: str) -> str:
    return re.search(before + r' "(.+?)"', text).group(1)


def _replace_object(text: str, caption: str, rng: random.Random) -> dict[str, Any]:
    present = {w for w in OBJECTS if re.search(rf"\b{w}\b", caption)}
    noun = rng.choice(sorted(set(OBJECTS) - present) or ["umbrella"])
    color = rng.choice(COLORS)
    return {"replacement": f"{_article(color)} {color} {noun}"}


def _replace_attribute(text: str, caption: str, rng: random.Random) -> dict[str, Any]:
    target = _quoted(text, "Replace the detail")
    color = re.fullmatch(r"an? (\w+) color", target)
    if color:
        other = rng.choice([c for c in COLORS if c != color.group(1) and c not in caption])
        return {"replacement": f"{_article(other)} {other} color"}
    parts = sorted({p for ps in PARTS.values() for p in ps if p not in caption})
    return {"replacement": rng.choice(parts)}


def _replace_relation(text: str, rng: random.Random) -> dict[str, Any]:
    target = _quoted(text, "Replace the relation")
    for relation, opposite in OPPOSITE.items():
        if target.startswith(relation + " "):
            return {"replacement": opposite + target[len(relation):]}
    return {"replacement": "far from " + target.split(" the ", 1)[-1]}


def _wh(caption: str, negative: bool) -> dict[str, Any]:
    scene = {o["name"][4:]: o for o in _scene(caption)}
    for subject, relation, other in _RELATION.findall(caption):
        if subject in scene and other in scene:
            color = scene[subject]["color"]
            if not negative:
                return {"statement": f"The {color} {subject} is {relation} the {other}.",
                        "question": f"What color is the {subject} that is {relation} the {other}?",
                        "answer": f"The {subject} that is {relation} the {other} is {color}."}
            wrong = OPPOSITE[relation]
            return {"question": f"What color is the {subject} that is {wrong} the {other}?",
                    "answer": f"No {subject} is {wrong} the {other}; the {subject} is {relation} the {other}, "
                              f"and it is {color}.",
                    "changed": f"{wrong} instead of {relation}"}
    return {"error": "the description relates no two objects"}


def answer(text: str, rng: random.Random) -> dict[str, Any] | None:
    """The answer to one of FINER-Tuning's prompts (``None`` for any other prompt)."""
    if not text.startswith("Task: "):
        return None
    found = _CAPTION.search(text)
    caption = found.group(1) if found else ""
    task = text.split("\n", 1)[0]
    if task == "Task: classify an image from its description.":
        return {"category": next((kind for kind, words in _KINDS if words.search(caption)), "natural_image")}
    if task == "Task: list the objects of an image from its description.":
        return {"objects": [{k: v for k, v in o.items() if k != "color"} for o in _scene(caption)]}
    if task == "Task: replace an object.":
        return _replace_object(text, caption, rng)
    if task == "Task: replace an attribute.":
        return _replace_attribute(text, caption, rng)
    if task == "Task: replace a relation.":
        return _replace_relation(text, rng)
    if task == "Task: write a Wh question.":
        return _wh(caption, negative=False)
    if task == "Task: write a Wh question with a false premise.":
        return _wh(caption, negative=True)
    return None
