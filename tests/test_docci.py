"""FINER-DOCCI end to end against the scripted model on 127.0.0.1: every stage, the verbatim guard,
the relation-validation rule, θ per level, bad model answers, resume and deduplication, and the
bundled sample rebuilt offline byte for byte."""

import json
import math
import shutil

import pytest

from finer_datasets import get_builder
from finer_datasets.cli import main
from finer_datasets.constants import LETTERS
from finer_datasets.core.build import build
from finer_datasets.core.manifest import verify
from finer_datasets.core.reader import iter_records
from finer_datasets.errors import QualityError, StrictModeError, UsageError
from finer_datasets.llm import LLMConfig, LLMRun, PromptSet, Thresholds, TranscriptStore
from finer_datasets.testing.builder_tests import folder_files
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

BUILDER = get_builder("docci")
DUMMY = BUILDER.dummy_data_dir()
STAGE1, STAGE2 = "List the objects the description mentions", "explicitly state a spatial or semantic relation"
TRAIN_TEXT = "cat sleeping on a gray couch"  # the description of a train line of the dummy data and the sample


def logprobs(probs):
    """A logprobs block whose letters have the given probabilities (the rest share what is left)."""
    rest = (1 - sum(probs.values())) / (5 - len(probs))
    p = {letter: probs.get(letter, rest) for letter in LETTERS}
    top = max(p, key=p.get)
    return {"content": [{"token": top, "logprob": math.log(p[top]),
                         "top_logprobs": [{"token": k, "logprob": math.log(v)} for k, v in p.items()]}]}


class Steered(ScriptedLLM):
    """The scripted model with test handlers first and steerable MLLM answers: ``image_yes(statement)``
    for the relation check, ``five_way`` logprobs for the entropy filter's questions."""

    def __init__(self, *handlers, image_yes=None, five_way=None):
        super().__init__(handlers=[*handlers, *BUILDER.scripted_handlers()])
        self.image_yes, self.five_way = image_yes, five_way

    def respond(self, request):
        if request.get("logprobs"):
            text = next(c["text"] for c in request["messages"][-1]["content"] if c.get("type") == "text")
            if self.image_yes is not None and "Is the following statement true" in text:
                statement = text.split('"')[1]
                return self._completion(request, "", logprobs(
                    {"A": 0.9, "B": 0.05} if self.image_yes(statement) else {"A": 0.05, "B": 0.9}))
            if self.five_way is not None and "Which of the following" in text:
                return self._completion(request, "", logprobs(self.five_way))
        return super().respond(request)


def llm(server, transcript, *, mllm=True, stages=None):
    def config(model):
        return LLMConfig(base_url=server.url, model=model, api_key_env="", backoff=0.01, concurrency=16)

    chosen = {n: BUILDER.llm_stages[n] for n in (stages or BUILDER.llm_stages)}
    return LLMRun.create(TranscriptStore(transcript), llm=config("scripted"), stages=chosen,
                         mllm=config("scripted-vl") if mllm else None,
                         thresholds=Thresholds(**BUILDER.entropy_thresholds) if mllm else None,
                         prompts=PromptSet.for_builder(BUILDER.prompts_dir()))


def records(out):
    return list(iter_records(out, verify(out)))


def statements(out):
    """Every relation of a build as "<image>: the <subject> <predicate> the <object>"."""
    found = set()
    for record in records(out):
        names = {o["id"]: o["name"] for o in record["scene_graph"]["objects"]}
        for r in record["scene_graph"]["relations"]:
            found.add(f"{record['image_id']}: the {names[r['subject']]} {r['predicate']} the {names[r['object']]}")
    return found


def text_of(body):
    return "\n".join(m["content"] if isinstance(m["content"], str) else "" for m in body["messages"])


# --- the bundled sample --------------------------------------------------------------------------

def test_the_sample_rebuilds_offline_byte_for_byte_and_its_card_documents_the_pipeline(tmp_path):
    assert main(["build", "docci", "--sample", "--replay", "sample", "--no-progress", "--out", str(tmp_path / "a")]) == 0
    assert main(["build", "docci", "--sample", "--no-progress", "--out", str(tmp_path / "b")]) == 0  # replays by default
    assert main(["build", "docci", "--sample", "--no-progress", "--out", str(tmp_path / "c"),
                 "--replay", str(tmp_path / "a" / "transcript.jsonl")]) == 0
    a = folder_files(tmp_path / "a")
    assert a == folder_files(tmp_path / "b") == folder_files(tmp_path / "c")

    manifest = json.loads(a["manifest.json"])
    levels = manifest["llm"]["entropy_filter"]["levels"]
    assert {k: v["theta"] for k, v in levels.items()} == {"object": 0.8, "attribute": 0.4, "relation": 0.8}
    assert manifest["provenance"]["docci"]["split"] == "test"
    assert manifest["provenance"]["docci"]["skipped_lines_by_split"] == {"qual_dev": 1, "train": 2}
    counts = manifest["counts"]
    assert counts["paper"]["mcqs"] == {"multi_obj": 10000, "multi_attr": 28630, "multi_rel": 11542, "wh": 20944}
    assert counts["mcqs"] == {s: 2 * n for s, n in counts["pairs"].items()} and all(counts["pairs"].values())
    extraction = counts["extraction"]
    assert extraction["dropped_objects"] > 0 and extraction["dropped_attributes"] > 0  # the stand-in invents
    assert extraction["relations_discarded"] > 0 and extraction["relations_validated"] == extraction["relations_found"]
    assert max(int(k) for k in counts["pairs_by_k"]["multi_obj"]) == 6
    card = a["README.md"].decode()
    for text in ("## Scene graph extraction", "Verbatim guard", "discarded when both disagree",
                 f"{extraction['relations_discarded']} relations were discarded", "| Attr | 0.4 |",
                 "| `multi_attr` | ", "| 28,630 |", "CC BY 4.0", "## Differences from the paper", "Gemini-2.0-Flash",
                 "Qwen2.5-VL-72B", "split `test`", "train 2", "--docci-split test", "onoe2024docci"):
        assert text in card, text
    assert TRAIN_TEXT.encode() not in a["transcript.jsonl"] and TRAIN_TEXT not in card  # train never read


def test_a_build_needs_a_model_the_extract_stage_and_a_benchmark_split(tmp_path, capsys):
    with pytest.raises(UsageError, match="needs a model"):
        build(BUILDER, source=DUMMY, out=tmp_path / "o", progress=False)
    replay = LLMRun.replay(BUILDER.sample_dir() / "transcript.jsonl", stages=BUILDER.llm_stages,
                           prompts=PromptSet.for_builder(BUILDER.prompts_dir()))
    replay.stages.pop("extract")
    with pytest.raises(UsageError, match="'extract' stage must run"):
        build(BUILDER, source=DUMMY, out=tmp_path / "o", progress=False, llm=replay)
    with pytest.raises(UsageError, match="never train"):
        build(BUILDER, source=DUMMY, out=tmp_path / "o", progress=False, llm=replay, options={"docci_split": "train"})
    with pytest.raises(SystemExit) as exit_:
        main(["build", "docci", "--sample", "--replay", "sample", "--out", str(tmp_path / "o"), "--docci-split", "train"])
    assert exit_.value.code == 2
    assert "--docci-split" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_no_usable_image_is_a_quality_error_not_an_empty_dataset(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(DUMMY, src)
    shutil.rmtree(src / "images")
    (src / "images").mkdir()
    replay = LLMRun.replay(BUILDER.sample_dir() / "transcript.jsonl", stages=BUILDER.llm_stages,
                           prompts=PromptSet.for_builder(BUILDER.prompts_dir()))
    with pytest.raises(QualityError, match="no image kept a usable element .3 skipped: image_missing 3"):
        build(BUILDER, source=src, out=tmp_path / "o", progress=False, llm=replay)
    assert not (tmp_path / "o").exists()


# --- every stage against the scripted server -----------------------------------------------------

def test_every_stage_runs_each_prompt_once_and_a_rerun_pays_for_nothing(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(DUMMY, src)
    lines = (src / "docci_descriptions.jsonlines").read_text().splitlines()
    twin = json.loads(lines[1])  # test_00000 again under another id: the same stage-1 prompt
    twin.update(example_id="test_00009", image_file="test_00009.jpg")
    shutil.copyfile(src / "images" / "test_00000.jpg", src / "images" / "test_00009.jpg")
    (src / "docci_descriptions.jsonlines").write_text("\n".join([*lines, json.dumps(twin)]) + "\n")
    with ScriptedServer(Steered()) as server:
        first = build(BUILDER, source=src, out=tmp_path / "a", progress=False, llm=llm(server, tmp_path / "t.sqlite"))
        paid = server.requests
        assert paid > 0 and set(server.answered.values()) == {1}  # no prompt was ever sent twice
        again = build(BUILDER, source=src, out=tmp_path / "b", progress=False, llm=llm(server, tmp_path / "t.sqlite"))
        assert server.requests == paid  # everything came from the transcript
    assert folder_files(first.out) == folder_files(again.out)
    manifest = first.manifest
    assert manifest["llm"]["stages"] == ["extract", "negatives", "relations", "validate", "wh"]
    assert manifest["llm"]["usage"]["cache_hits"] > 0
    extraction = manifest["counts"]["extraction"]
    assert extraction["captions"] == 4 and extraction["relations_validated"] == extraction["relations_found"] > 0
    descriptions = {json.loads(x)["example_id"]: json.loads(x)["description"].lower() for x in lines}
    recs = records(first.out)
    assert {r["image_id"] for r in recs} == {"test_00000", "test_00001", "test_00002", "test_00009"}
    for record in recs:
        caption = descriptions.get(record["image_id"], descriptions["test_00000"])
        graph = record["scene_graph"]
        for obj in graph["objects"]:
            assert obj["name"] in caption and len(obj["negatives"]) in (0, 4)
            for attr in obj["attributes"]:
                assert attr["text"].startswith("with ") and attr["source_text"].lower() in caption
        for rel in graph["relations"]:
            assert rel["source_text"].lower() in caption
        assert {p["setting"] for p in record["pairs"]} >= {"multi_obj", "multi_attr"}


def test_relation_validation_discards_exactly_what_both_models_reject(tmp_path):
    with ScriptedServer(Steered()) as server:  # without validation: every extracted relation
        unvalidated = build(BUILDER, source=DUMMY, out=tmp_path / "all", progress=False,
                            llm=llm(server, tmp_path / "all.sqlite", mllm=False,
                                    stages=["extract", "relations", "negatives", "wh"]))
    every = statements(unvalidated.out)

    def text_yes(text, rng):  # the LLM agrees with statements about a tree
        if "explicitly support the statement" not in text:
            return None
        return {"supported": "tree" in text.split("Statement:")[1]}

    image_yes = lambda statement: "right" in statement  # the MLLM agrees with "... to the right of ..."
    with ScriptedServer(Steered(text_yes, image_yes=image_yes)) as server:
        validated = build(BUILDER, source=DUMMY, out=tmp_path / "val", progress=False,
                          llm=llm(server, tmp_path / "val.sqlite"))
    kept = statements(validated.out)
    llm_only = {s for s in every if "tree" in s.split(": ")[1] and "right" not in s}
    mllm_only = {s for s in every if "right" in s and "tree" not in s.split(": ")[1]}
    neither = {s for s in every if "right" not in s and "tree" not in s.split(": ")[1]}
    assert llm_only and mllm_only and neither  # every case of the rule occurs
    assert kept == every - neither
    extraction = validated.manifest["counts"]["extraction"]
    assert extraction["relations_discarded"] == len(neither) and extraction["relations_kept"] == len(kept)
    assert extraction["validation_mllm_disagreed"] == len({s for s in every if "right" not in s})
    assert validated.manifest["provenance"]["extraction"]["validation_mllm"] == "openai-logprobs:scripted-vl"


def test_entropy_thresholds_per_level_are_docci_s(tmp_path):
    # the discriminator picks option B with entropy ~0.63: below θ for objects and relations (0.8),
    # above θ for attributes (0.4); so only objects and relations get regenerated negatives
    steer = Steered(five_way={"B": 0.85})
    with ScriptedServer(steer) as server:
        base = ["build", "docci", "--source", str(DUMMY), "--no-progress", "--llm-base-url", server.url,
                "--llm-model", "scripted", "--mllm-base-url", server.url, "--mllm-model", "scripted-vl",
                "--llm-api-key-env", "", "--mllm-api-key-env", ""]
        assert main([*base, "--out", str(tmp_path / "a")]) == 0
        assert main([*base, "--out", str(tmp_path / "b"), "--theta-attr", "0.7"]) == 0
    levels = json.loads((tmp_path / "a" / "manifest.json").read_text())["llm"]["entropy_filter"]["levels"]
    assert {k: v["theta"] for k, v in levels.items()} == {"object": 0.8, "attribute": 0.4, "relation": 0.8}
    assert levels["object"]["regenerated"] > 0 and levels["relation"]["regenerated"] > 0
    assert levels["attribute"]["regenerated"] == 0
    raised = json.loads((tmp_path / "b" / "manifest.json").read_text())["llm"]["entropy_filter"]["levels"]
    assert raised["attribute"]["theta"] == 0.7 and raised["attribute"]["regenerated"] > 0


# --- bad model answers ------------------------------------------------------------------------------

def test_unusable_or_invented_answers_are_counted_skips_and_strict_fails(tmp_path):
    def hook(body, n):  # stage 1 of test_00001: prose, never JSON; of test_00002: cut off mid-answer
        text = text_of(body)
        if STAGE1 not in text:
            return None
        if "black table" in text:
            content = "Sure! The objects are a table, a chair and a window."
        elif "purple box" in text:
            content = '{"objects": [{"name": "tree", "attributes": [{"text": "gre'
        else:
            return None
        return 200, json.dumps({"choices": [{"message": {"content": content}, "finish_reason": "length"}]}).encode()

    def inventive(text, rng):  # test_00000: an object and an attribute that are not in the caption,
        if "pink house" not in text:  # and relation answers naming an object id it was not given
            return None
        if STAGE1 in text:
            return {"objects": [{"name": "house", "attributes": [{"text": "pink", "kind": "quality"},
                                                                 {"text": "purple", "kind": "quality"}]},
                                {"name": "giraffe", "attributes": []},
                                {"name": "tree", "attributes": [{"text": "green", "kind": "quality"}]},
                                {"name": "car", "attributes": [{"text": "white", "kind": "quality"}]}]}
        if STAGE2 in text:
            return {"relation": {"subject": "o99", "object": "o0", "phrase": "above"}}
        return None

    with ScriptedServer(Steered(inventive), hook=hook) as server:
        with pytest.raises(QualityError, match="skipped for defects .*more than --max-skip-rate 0.25"):
            build(BUILDER, source=DUMMY, out=tmp_path / "o", progress=False,
                  llm=llm(server, tmp_path / "t.sqlite", mllm=False))
        result = build(BUILDER, source=DUMMY, out=tmp_path / "o", progress=False, max_skip_rate=1.0,
                       llm=llm(server, tmp_path / "t.sqlite", mllm=False))
        with pytest.raises(StrictModeError, match="not_in_caption|relation_answer_unusable|extraction_failed"):
            build(BUILDER, source=DUMMY, out=tmp_path / "strict", progress=False, strict=True,
                  llm=llm(server, tmp_path / "t.sqlite", mllm=False))
    assert not (tmp_path / "strict").exists()
    skips = result.manifest["counts"]["skips"]
    assert skips["extraction_failed"] == 2 and skips["not_in_caption"] == 2 and skips["relation_answer_unusable"] >= 2
    report = json.loads((tmp_path / "o" / "build_report.json").read_text())["skipped"]
    where = {(s["reason"], s["record"], s["field"]) for s in report}
    assert ("extraction_failed", "test_00001 (line 3)", "description") in where
    assert ("not_in_caption", "test_00000 (line 2)", "stage1.objects[1].name") in where
    assert ("not_in_caption", "test_00000 (line 2)", "stage1.objects[0].attributes[1]") in where
    assert all(s["file"] == "docci_descriptions.jsonlines" for s in report)
    (record,) = records(tmp_path / "o")  # the one image left, without the invented phrases
    names = [o["name"] for o in record["scene_graph"]["objects"]]
    assert names == ["house", "tree", "car"] and record["scene_graph"]["relations"] == []
    assert [a["source_text"] for a in record["scene_graph"]["objects"][0]["attributes"]] == ["pink"]
    assert result.manifest["counts"]["extraction"]["extraction_failed"] == 2
