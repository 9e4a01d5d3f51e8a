"""FINER-Tuning's source reader, leakage guard and LLM answer checks (units, no build)."""

from __future__ import annotations

import asyncio
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finer_datasets.builders.tuning.source import (
    CAPTION_WORDS,
    leakage_match,
    prompt_caption,
    read_rows,
)
from finer_datasets.builders.tuning.stage import (
    MAX_REASKS,
    TuningPhrases,
    check_extraction,
    check_replacement,
    check_wh_negative,
    check_wh_positive,
)
from finer_datasets.core.builder import BuildReport
from finer_datasets.errors import SourceError
from finer_datasets.llm.client import LLMAnswerError
from finer_datasets.preference.construct import PhrasePlan

CAPTION = "There is a red ball with white stripes. The ball is next to the box. There is a blue box with a lid."


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("image_url", pa.string()), ("caption", pa.string())])),
                   path)


def test_rows_are_validated_deduplicated_and_keyed_by_file_and_row(tmp_path):
    write(tmp_path / "data" / "train-00000-of-00002.parquet", [
        {"image_url": "https://a.example/1.jpg", "caption": "one"},
        {"image_url": "ftp://a.example/2.jpg", "caption": "two"},
        {"image_url": " https://a.example/3.jpg", "caption": "three"},
        {"image_url": None, "caption": "four"},
        {"image_url": "https://a.example/5.jpg", "caption": "   "},
        {"image_url": "https://a.example/1.jpg", "caption": "again"},
    ])
    write(tmp_path / "data" / "train-00001-of-00002.parquet", [
        {"image_url": "https://images.cocodataset.org/val2017/000000000139.jpg", "caption": "coco"},
        {"image_url": "https://b.example/coco/123.jpg", "caption": "coco folder"},
        {"image_url": "https://b.example/docci_images/train_00001.jpg", "caption": "docci"},
        {"image_url": "https://b.example/coconut-cake.jpg", "caption": "not coco"},
        {"image_url": "https://b.example/doccia-moderna.jpg", "caption": "not docci"},
    ])
    report = BuildReport(root=tmp_path)
    totals: dict[str, int] = {}
    rows = read_rows(tmp_path, report, totals=totals)
    assert [(r.rel, r.row, r.caption) for r in rows] == [
        ("data/train-00000-of-00002.parquet", 0, "one"), ("data/train-00001-of-00002.parquet", 3, "not coco"),
        ("data/train-00001-of-00002.parquet", 4, "not docci")]
    assert rows[0].key == "data-train-00000-of-00002-0000000"
    assert totals == {"data/train-00000-of-00002.parquet": 6, "data/train-00001-of-00002.parquet": 5}
    assert report.skip_counts() == {"duplicate_url": 1, "invalid_url": 3, "leakage_excluded": 3, "missing_caption": 1}
    duplicate = next(s for s in report.skips if s["reason"] == "duplicate_url")
    assert duplicate["record"] == "5" and "row 0" in duplicate["detail"]
    assert len(read_rows(tmp_path, BuildReport(), max_images=2)) == 2


def test_two_files_that_give_one_key_are_an_error(tmp_path):
    write(tmp_path / "a" / "b.parquet", [{"image_url": "https://x.example/1.jpg", "caption": "c"}])
    write(tmp_path / "a-b.parquet", [{"image_url": "https://x.example/2.jpg", "caption": "c"}])
    with pytest.raises(SourceError, match="both give sample key"):
        read_rows(tmp_path, BuildReport())


def test_a_parquet_link_out_of_the_source_or_a_fifo_is_refused_without_being_read(tmp_path):
    import os

    source, outside = tmp_path / "src", tmp_path / "outside"
    write(outside / "secret.parquet", [{"image_url": "https://x.example/1.jpg", "caption": "c"}])
    write(source / "data" / "ok.parquet", [{"image_url": "https://x.example/2.jpg", "caption": "c"}])
    (source / "data" / "linked.parquet").symlink_to(outside / "secret.parquet")
    with pytest.raises(SourceError, match="outside the source"):
        read_rows(source, BuildReport())
    (source / "data" / "linked.parquet").unlink()
    os.mkfifo(source / "data" / "pipe.parquet")
    with pytest.raises(SourceError, match="not a regular file"):
        read_rows(source, BuildReport())


def test_leakage_patterns():
    assert leakage_match("http://images.cocodataset.org/train2017/000000000009.jpg") == "COCO"
    assert leakage_match("https://farm4.example.com/COCO_train2014_000000000009.jpg") == "COCO"
    assert leakage_match("https://storage.googleapis.com/docci/data/images/test_01.jpg") == "DOCCI"
    assert leakage_match("https://example.com/photos/coco-the-dog.jpg") is None
    assert leakage_match("https://example.com/photos/2014/beach.jpg") is None


def test_the_llm_sees_the_first_512_words():
    text, words = prompt_caption("word  " * 600 + "\n tail")
    assert words == CAPTION_WORDS and text == " ".join(["word"] * CAPTION_WORDS)
    assert prompt_caption(" a  b\nc ") == ("a b c", 3)


def test_extraction_answers_are_cleaned_and_capped():
    value = {"objects": [
        {"phrase": " a red  ball. ", "name": "the ball", "attributes": ["a red color", "A red color", 3, "x" * 200],
         "relations": ["next to the box", "", "near the box", "under the box", "over the box"]},
        {"phrase": "a red ball", "name": "the ball again"},
        {"phrase": "a box"},
        "junk"]}
    objects, problem = check_extraction(value)
    assert problem is None and len(objects) == 1
    assert objects[0].phrase == "a red ball" and objects[0].attributes == ("a red color",)
    assert objects[0].relations == ("next to the box", "near the box", "under the box")
    assert check_extraction({"objects": []}) == ((), None)
    assert check_extraction({"objects": [{"phrase": 1}]})[1]
    assert check_extraction([1, 2])[1]


def test_replacements_must_be_new_and_absent_from_the_caption():
    obj = PhrasePlan("obj", "", ("a red ball", "a blue box"), 0)
    check = check_replacement(obj, CAPTION)
    assert check({"replacement": "a green kite"}) == ("a green kite", None)
    assert "mentions" in check({"replacement": "a box"})[1]
    assert "already" in check({"replacement": "A blue box"})[1]
    assert check({"replacement": ""})[1] and check({"other": "x"})[1] and check("a kite")[1]
    attr = PhrasePlan("attr", "the ball", ("white stripes",), 0)
    assert check_replacement(attr, CAPTION)({"replacement": "a blue box"}) == ("a blue box", None)


def test_wh_answers_are_checked():
    positive = {"statement": "s", "question": "What is next to the box?", "answer": "A ball."}
    assert check_wh_positive(positive) == (positive, None)
    assert "question mark" in check_wh_positive({**positive, "question": "What"})[1]
    assert check_wh_positive({"statement": "s", "question": "q?"})[1]
    check = check_wh_negative(positive)
    good = {"question": "What is next to the lamp?", "answer": "There is no lamp; a ball is next to the box."}
    assert check(good)[0] == {**good, "changed": ""}
    assert "same" in check({**good, "question": "what is next to  the box?"})[1]
    assert "reject" in check({**good, "answer": "A ball."})[1]


class FakeClient:
    """Answers from a list of contents (or raises); records what was asked."""

    def __init__(self, contents):
        self.contents, self.asked = list(contents), []

    def run(self, coroutine):
        return asyncio.run(coroutine)

    async def ask(self, messages, parse, *, purpose=""):
        self.asked.append(messages)
        content = self.contents.pop(0)
        if isinstance(content, Exception):
            raise content
        value, problem = parse({"choices": [{"message": {"content": content}}]})
        if problem:
            raise LLMAnswerError(problem)
        return value


class Prompts:
    def render(self, task, **values):
        return [{"role": "user", "content": f"Task {task}: {json.dumps(values, sort_keys=True)}"}]


def ask(client, check=check_wh_positive):
    stage = TuningPhrases(client, Prompts())
    return stage, asyncio.run(stage._ask("tuning_wh_positive", {"caption": "c"}, check, "test"))


def test_the_stage_reasks_with_the_problem_then_gives_up():
    good = json.dumps({"statement": "s", "question": "q?", "answer": "a"})
    client = FakeClient(["not json", "```json\n" + good + "\n```"])
    stage, (value, problem) = ask(client)
    assert problem is None and value["question"] == "q?"
    assert len(client.asked) == 2 and client.asked[1][-2] == {"role": "assistant", "content": "not json"}
    assert "not valid JSON" in client.asked[1][-1]["content"]
    assert stage.reasks == {"tuning_wh_positive": 1}
    client = FakeClient(["[]"] * (MAX_REASKS + 1))
    stage, (value, problem) = ask(client)
    assert value is None and "unusable after 2 re-asks" in problem and len(client.asked) == MAX_REASKS + 1
    assert stage.unusable == {"tuning_wh_positive": 1}
    stage, (value, problem) = ask(FakeClient([LLMAnswerError("HTTP 400: too long")]))
    assert value is None and "no answer from the endpoint" in problem
    stage, (value, problem) = ask(FakeClient(["   "]))  # an empty answer is the client's problem
    assert value is None and "empty answer" in problem


def test_the_hub_download_takes_the_first_parquet_shards(tmp_path, monkeypatch):
    import huggingface_hub

    from finer_datasets.builders.tuning.source import download_source

    files = [f"data/train-{i:05d}-of-00075.parquet" for i in (3, 0, 2, 1)] + ["README.md", ".gitattributes"]
    calls = []

    class Api:
        def list_repo_files(self, repo_id, repo_type=None, revision=None):
            assert (repo_id, repo_type, revision) == ("allenai/pixmo-cap", "dataset", "abc")
            return files

    def download(repo_id, name, repo_type=None, revision=None, local_dir=None):
        calls.append(name)
        return f"{local_dir}/{name}"

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    got = download_source(tmp_path, files=2, revision="abc")
    assert calls == ["data/train-00000-of-00075.parquet", "data/train-00001-of-00075.parquet"]
    assert got == [tmp_path / c for c in calls]
    files[:] = ["README.md"]
    with pytest.raises(SourceError, match="no Parquet files"):
        download_source(tmp_path, revision="abc")
