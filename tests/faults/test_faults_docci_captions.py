"""Real-world captions against the scripted model: long descriptions whose relation negatives could
read the same once put in a question (``is far from`` / ``are far from``), a server that answers no
prompt at all, and the property behind the fix -- negatives are compared as they read in a question,
so negatives that pass the check always give distinct options."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from faultkit import leftovers, tree
from finer_datasets import get_builder
from finer_datasets.core.manifest import verify
from finer_datasets.core.reader import iter_records
from finer_datasets.mcq.construct import NOT_DISTINCT, yesno_pair
from finer_datasets.mcq.pairs import pairs_for_image
from finer_datasets.scene_graph.graph import SceneGraph, SGObject, SGRelation, reading, relation_phrase
from finer_datasets.scene_graph.negatives import check_negatives
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

DOCCI = get_builder("docci")
DESCRIPTIONS = "docci_descriptions.jsonlines"
NOUNS = ("cat", "dog", "table", "chair", "lamp", "book", "cup", "ball", "tree", "car", "house", "window", "box", "kite")
RELATIONS = ("near", "next to", "on", "under", "above", "behind", "beside", "in front of", "to the left of")
COLOURS = ("red", "blue", "green", "white", "black", "brown")


def long_captions(src: Path, n: int) -> None:
    """A DOCCI-layout source of ``n`` long scene descriptions (six objects, five relations each,
    singular and plural verbs mixed as in real descriptions of COCO scenes)."""
    rng = random.Random(0)
    (src / "images").mkdir(parents=True)
    image = next((DOCCI.sample_dir() / "images").iterdir())
    lines = []
    for i in range(n):
        names = rng.sample(NOUNS, 6)
        sentences = [f"A photo of a {rng.choice(COLOURS)} {names[0]} with a {rng.choice(COLOURS)} handle."]
        sentences += [f"The {rng.choice(COLOURS)} {a} {rng.choice(['is', 'are'])} {rng.choice(RELATIONS)} the {b}."
                      for a, b in zip(names, names[1:])]
        example = f"test_{i:05d}"
        shutil.copy(image, src / "images" / f"{example}.jpg")
        lines.append({"example_id": example, "split": "test", "image_file": f"{example}.jpg",
                      "description": " ".join(sentences)})
    (src / DESCRIPTIONS).write_text("".join(json.dumps(line) + "\n" for line in lines))


class Watching(ScriptedLLM):
    """The scripted model (DOCCI's rules), noting replacements that read like a kept negative."""

    def __init__(self):
        super().__init__(handlers=DOCCI.scripted_handlers())
        self.colliding: list[tuple[str, list[str]]] = []

    def respond(self, request):
        answer = super().respond(request)
        text = request["messages"][-1]["content"]
        if isinstance(text, str) and "For the relation" in text and "must be replaced" in text:
            kept = json.loads(re.search(r"these negatives are kept: (\[.*?\])\.", text).group(1))
            new = json.loads(answer["choices"][0]["message"]["content"])["negative"]
            if reading("relation", new) in {reading("relation", k) for k in kept}:
                self.colliding.append((new, kept))
        return answer


def scripted_args(url: str) -> list[str]:
    return ["--llm-base-url", url, "--llm-model", "scripted", "--mllm-base-url", url, "--mllm-model", "scripted-vl",
            "--llm-api-key-env", "", "--mllm-api-key-env", ""]


def test_long_captions_complete_with_distinct_options_and_counted_skips(tmp_path, finer):
    src, out = tmp_path / "src", tmp_path / "out"
    long_captions(src, 10)
    before = tree(src)
    model = Watching()
    with ScriptedServer(model) as server:
        run = finer("build", "docci", "--source", src, "--out", out, "--no-progress", *scripted_args(server.url))
    assert model.colliding, "the source no longer makes the model propose a negative that reads like a kept one"
    assert run.code == 0 and "Traceback" not in run.err, run.err[-3000:]
    report = json.loads((out / "build_report.json").read_text())
    manifest = verify(out)
    assert report["skips"] == manifest["counts"]["skips"] and sum(report["skips"].values()) == len(report["skipped"])
    for record in iter_records(out, manifest):
        for pair in record["pairs"]:
            for question in (pair["positive"], pair["negative"]):
                shown = [" ".join(o.lower().split()) for o in question["options"]]
                assert len(set(shown)) == 5, question
        for rel in record["scene_graph"]["relations"]:
            assert check_negatives(rel["id"], rel["predicate"], rel["negatives"], kind="relation") is None
    assert tree(src) == before and leftovers(tmp_path) == []


def test_a_server_that_answers_no_prompt_says_what_happened(tmp_path, finer):
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(DOCCI.dummy_data_dir(), src)
    before = tree(src)
    with ScriptedServer(ScriptedLLM()) as server:  # the generic scripted model: no rule for DOCCI's prompts
        run = finer("build", "docci", "--source", src, "--out", out, "--no-progress", *scripted_args(server.url))
    run.clean_failure(7, "no image kept a usable element", "3 skipped: extraction_failed 3", "see the log")
    assert "holds no records" not in run.err
    assert tree(src) == before and not out.exists() and leftovers(tmp_path) == []


def test_an_empty_split_still_says_the_source_holds_no_records(tmp_path, finer):
    src = tmp_path / "src"
    shutil.copytree(DOCCI.dummy_data_dir(), src)
    lines = [json.loads(line) for line in (src / DESCRIPTIONS).read_text().splitlines()]
    for line in lines:
        line["description"] = "" if line["split"] == "test" else line["description"]
    (src / DESCRIPTIONS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = finer("build", "docci", "--source", src, "--out", tmp_path / "out", "--no-progress",
                "--replay", DOCCI.sample_dir() / "transcript.jsonl")
    run.clean_failure(7, "no image kept a usable element", "empty_description 3")


# -- the property: negatives that pass the check give distinct options --------------------------------

CORES = ("looking at", "throwing", "touching", "holding", "on top of", "next to", "far from", "under", "behind",
         "in front of", "to the left of", "sitting on", "leaning against", "near")


def phrasing(core: str, rng: random.Random) -> str:
    """One way a model may write the relation ``core``: copula or none, articles, case, spacing."""
    words = core.split()
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), rng.choice(["the", "a", "The"]))
    text = rng.choice(["", "is ", "are ", "Is ", "ARE ", "that "]) + " ".join(words)
    text = rng.choice([str.lower, str.upper, str.title, str])(text) if rng.random() < 0.3 else text
    return re.sub(" ", lambda _: rng.choice([" ", "  ", "\t"]), text) + rng.choice(["", " ", ",", "."])


def test_negatives_that_pass_the_check_read_distinctly_in_every_question():
    rng = random.Random(19)
    objects = (SGObject("o0", "man"), SGObject("o1", "glasses"), SGObject("o2", "table"))
    for trial in range(3000):
        positive = "is " + rng.choice(CORES)
        negatives = [phrasing(rng.choice(CORES), rng) for _ in range(4)]
        problem = check_negatives("r0", positive, negatives, kind="relation")
        rendered = [relation_phrase(n, "glasses") for n in negatives]
        shown = {" ".join(p.lower().split()) for p in [relation_phrase(positive, "glasses"), *rendered]}
        if problem is None:
            assert len(shown) == 5, (positive, negatives)
            graph = SceneGraph("x", "x.jpg", objects, (SGRelation("r0", "o0", positive, "o1"),
                                                        SGRelation("r1", "o0", "is near", "o2")))
            negs = {"r0": tuple(negatives), "r1": ("is under", "is behind", "is on", "is above")}
            pairs, skips = pairs_for_image(graph, negs, seed=trial, key="x")
            assert not [s for s in skips if s[0] == NOT_DISTINCT] and pairs
        elif len(shown) < 5:
            assert "not distinct" in problem or "equals the positive" in problem


@pytest.mark.parametrize("negatives", [
    ("is throwing", "is touching", "is looking at", "are looking at"),  # the crash of issue 19
    ("is throwing", "is touching", "is looking at", "is Looking At"),
    ("is throwing", "is touching", "is looking at", "is looking\tat"),
])
def test_negatives_that_read_the_same_are_refused_and_never_end_a_build(negatives):
    assert "not distinct" in check_negatives("r0", "is holding", negatives, kind="relation")
    objects = (SGObject("o0", "man"), SGObject("o1", "glasses"))
    graph = SceneGraph("x", "x.jpg", objects, (SGRelation("r0", "o0", "is holding", "o1"),))
    pairs, skips = pairs_for_image(graph, {"r0": negatives}, seed=0, key="x")  # a provider that let them through
    counted = [detail for reason, detail in skips if reason == NOT_DISTINCT]
    assert len(counted) == 1 and counted[0].startswith("multi_rel_x_o0_k1: ") and pairs == []
    with pytest.raises(ValueError, match="distinct"):
        yesno_pair("p", "multi_rel", ["holding the glasses"], 0,
                   [relation_phrase(n, "glasses") for n in negatives], random.Random(0))


@pytest.mark.parametrize("fourth", ["is looking at the", "that looking at", "Looking at", "is looking at."])
def test_negatives_that_differ_only_in_articles_copula_or_punctuation_are_refused_too(fourth):
    negatives = ("is throwing", "is touching", "is looking at", fourth)
    assert "not distinct" in check_negatives("r0", "is holding", negatives, kind="relation")
    assert "equals the positive" in check_negatives("r0", "is holding", ("are holding", "is a b", "is c", "is d"),
                                                    kind="relation")
