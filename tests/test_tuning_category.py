"""FINER-Tuning's image-category filter (paper, appendix E.2): off by default; when on, the LLM's
class of every caption (through the transcript), the kept rows, and the counts per class."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finer_datasets.builders.tuning.category import CATEGORIES, check_category
from finer_datasets.errors import LLMError
from finer_datasets.testing.builder_tests import folder_files
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer
from test_tuning_build import SAMPLE, TUNING, build_tuning, records, replay_run, scripted_run

CLASSIFY = "Task: classify an image from its description."
#: caption openings the scripted model sorts into each class (the rest of a caption is the sample's)
KINDS = {"natural_image": "", "screenshot_ui": "A screenshot of a drawing app. ", "chart_graph": "A bar chart beside a "
         "drawing. ", "document_text": "A printed page with a drawing. "}
MIX = ["natural_image"] * 6 + ["screenshot_ui"] * 3 + ["chart_graph"] * 2 + ["document_text"]


def user_text(request):
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A Pixmo-like source of 12 rows: 6 natural images, 3 screenshots, 2 charts, 1 document."""
    root = tmp_path_factory.mktemp("mixed")
    table = pq.read_table(SAMPLE / "data" / "train-00000-of-00002.parquet").to_pylist()
    good = [r for r in table if r["image_url"] and "/files/img" in r["image_url"] and "?" not in r["image_url"]
            and r["caption"] and r["caption"].startswith("This picture")]
    rows = [{"image_url": r["image_url"], "caption": KINDS[kind] + r["caption"]} for r, kind in zip(good, MIX)]
    assert len(rows) == 12
    (root / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("image_url", pa.string()), ("caption", pa.string())])),
                   root / "data" / "train-00000-of-00001.parquet")
    shutil.copytree(SAMPLE / "images", root / "images")
    return root


def test_answers_name_one_of_the_four_classes():
    assert CATEGORIES == ("natural_image", "screenshot_ui", "chart_graph", "document_text")  # Table 11
    assert check_category({"category": "chart_graph"}) == ("chart_graph", None)
    assert check_category({"category": " Natural image "}) == ("natural_image", None)
    assert check_category({"category": "screenshot-UI"}) == ("screenshot_ui", None)
    assert "not one of" in check_category({"category": "painting"})[1]
    assert check_category({"kind": "chart_graph"})[1] and check_category("chart_graph")[1]


def test_the_filter_is_off_by_default_and_asks_nothing(tmp_path):
    asked = []
    with scripted_run(tmp_path / "t.sqlite", hook=lambda request, n: asked.append(user_text(request)) and None) as llm:
        result = build_tuning(tmp_path / "out", llm=llm)
    assert asked and not any(text.startswith(CLASSIFY) for text in asked)
    assert "image_category" not in result.manifest["counts"] and "image_category" not in result.manifest["builder"]["options"]
    assert result.manifest["provenance"]["image_category"] is None and "tuning_category" not in result.manifest["llm"]
    assert "Image-category filter: off, as in the paper's release" in (result.out / "README.md").read_text()


def test_kept_classes_counts_per_class_and_replay(mixed, tmp_path):
    with scripted_run(tmp_path / "t.sqlite") as llm:
        result = build_tuning(tmp_path / "rec", source=mixed, llm=llm, image_category="natural_image")
    counts = result.manifest["counts"]
    assert counts["image_category"] == {"classes": {"natural_image": 6, "screenshot_ui": 3, "chart_graph": 2,
                                                    "document_text": 1},
                                        "unusable": 0, "kept": ["natural_image"], "rows_kept": 6}
    assert counts["skips"]["image_category"] == 6 and counts["images"] == 6
    assert result.manifest["builder"]["options"]["image_category"] == "natural_image"
    assert result.manifest["provenance"]["image_category"] == {"keep": ["natural_image"]}
    assert all(not r["caption"].startswith(("A screenshot", "A bar chart", "A printed")) for r in records(result.out))
    report = json.loads((result.out / "build_report.json").read_text())["skipped"]
    skipped = [s for s in report if s["reason"] == "image_category"]
    assert {s["detail"] for s in skipped} == {"screenshot_ui (kept: natural_image)", "chart_graph (kept: natural_image)",
                                              "document_text (kept: natural_image)"}
    assert all(s["field"] == "caption" and s["file"].endswith(".parquet") for s in skipped)
    card = (result.out / "README.md").read_text()
    assert ("the LLM sorted 12 captions: natural_image 6 (50.0%; paper 78.13%), screenshot_ui 3 (25.0%; paper "
            "16.21%), chart_graph 2 (16.7%; paper 3.56%), document_text 1 (8.3%; paper 2.09%)") in card
    assert "- **Image categories**: filtered" in card.split("## Differences from the paper", 1)[1]
    keys = [json.loads(line) for line in (result.out / "transcript.jsonl").read_text().splitlines()]
    assert sum(CLASSIFY in json.dumps(k) for k in keys) == 12  # every class is a transcript entry
    replayed = build_tuning(tmp_path / "rep", source=mixed, llm=replay_run(result.out / "transcript.jsonl"),
                            image_category="natural_image")
    assert folder_files(replayed.out) == folder_files(result.out)
    asked = []
    with scripted_run(tmp_path / "t.sqlite", hook=lambda request, n: asked.append(user_text(request)) and None) as llm:
        wider = build_tuning(tmp_path / "wide", source=mixed, llm=llm, image_category="chart_graph,natural_image")
    assert wider.manifest["counts"]["image_category"]["kept"] == ["natural_image", "chart_graph"]
    assert wider.manifest["counts"]["image_category"]["rows_kept"] == 8 and wider.manifest["counts"]["images"] == 8
    assert asked and all("A bar chart" in text for text in asked)  # only the charts' phrases are new


def test_a_killed_build_never_asks_for_a_class_twice(mixed, tmp_path):
    store = tmp_path / "t.sqlite"
    first = []

    def down_after_classes(request, n):
        text = user_text(request)
        first.append(text)
        return None if text.startswith(CLASSIFY) else (500, b"down")

    with scripted_run(store, hook=down_after_classes) as llm, pytest.raises(LLMError):
        build_tuning(tmp_path / "killed", source=mixed, llm=llm, image_category="natural_image")
    assert sum(t.startswith(CLASSIFY) for t in first) == 12 and not (tmp_path / "killed").exists()
    again = []
    with scripted_run(store, hook=lambda request, n: again.append(user_text(request)) and None) as llm:
        result = build_tuning(tmp_path / "resumed", source=mixed, llm=llm, image_category="natural_image")
    assert again and not any(t.startswith(CLASSIFY) for t in again)  # paid once, in the killed run
    assert result.manifest["counts"]["image_category"]["rows_kept"] == 6


def test_an_unclassifiable_caption_is_reasked_then_counted(mixed, tmp_path):
    def garbage(request, n):
        if user_text(request).startswith(CLASSIFY) and "A printed page" in user_text(request):
            return 200, json.dumps({"choices": [{"message": {"role": "assistant",
                                                             "content": '{"category": "poster"}'}}]}).encode()
        return None

    with scripted_run(tmp_path / "t.sqlite", hook=garbage) as llm:
        result = build_tuning(tmp_path / "out", source=mixed, llm=llm, image_category="natural_image,document_text")
    found = result.manifest["counts"]["image_category"]
    assert found["unusable"] == 1 and found["classes"]["document_text"] == 0 and found["rows_kept"] == 6
    assert result.manifest["llm"]["tuning_category"] == {"images": 12, "reasks": {"tuning_category": 2},
                                                         "unusable": {"tuning_category": 1}}
    skip = [s for s in json.loads((result.out / "build_report.json").read_text())["skipped"]
            if s["field"] == "tuning_category"]
    assert len(skip) == 1 and skip[0]["reason"] == "llm_unusable_answer" and "not one of" in skip[0]["detail"]


def finer(*args):
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_the_command_line_filter_with_an_endpoint_and_its_replay(tmp_path):
    with ScriptedServer(ScriptedLLM(handlers=TUNING.scripted_handlers())) as server:
        run = finer("build", "tuning", "--sample", "--image-category", "--llm-base-url", server.url, "--llm-model",
                    "scripted", "--out", tmp_path / "cat", "--no-progress")
    assert run.returncode == 0, run.stderr
    manifest = json.loads((tmp_path / "cat" / "manifest.json").read_text())
    assert manifest["counts"]["image_category"]["classes"] == {"natural_image": 33, "screenshot_ui": 1,
                                                               "chart_graph": 0, "document_text": 0}
    assert manifest["counts"]["skips"]["image_category"] == 1 and "no_tuples" not in manifest["counts"]["skips"]
    replay = finer("build", "tuning", "--sample", "--image-category", "--replay", tmp_path / "cat" / "transcript.jsonl",
                   "--out", tmp_path / "again", "--no-progress")
    assert replay.returncode == 0, replay.stderr
    assert folder_files(tmp_path / "again") == folder_files(tmp_path / "cat")
    bundled = finer("build", "tuning", "--sample", "--image-category", "--out", tmp_path / "no", "--no-progress")
    assert bundled.returncode == 2 and not (tmp_path / "no").exists()
    assert bundled.stderr.strip().splitlines() == [
        "error: --image-category needs the LLM stage 'category', which this run lacks (its transcript was recorded "
        "without it, or --llm-stages leaves it out): build with --llm-base-url and --llm-model"]
    bad = finer("build", "tuning", "--sample", "--image-category", "photos", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "--image-category 'photos': use a comma list of natural_image" in bad.stderr
