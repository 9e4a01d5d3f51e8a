"""FINER-Tuning rows: TRL's conversational vision format, SFT rows, and the LLaMA-Factory export."""

from __future__ import annotations

import json

import pytest

from finer_datasets.errors import OutputError, SourceError, UsageError, VerificationError
from finer_datasets.preference.llamafactory import check_sharegpt, export_llamafactory
from finer_datasets.preference.records import sft_rows, trl_rows
from test_tuning_build import build_tuning, records

RECORD = {"tuples": [
    {"id": "k_obj_pos", "type": "obj", "query": "positive", "template": 1, "question": "Q1?", "chosen": "Yes, a.",
     "rejected": "No, but b.", "selected": True},
    {"id": "k_obj_neg", "type": "obj", "query": "negative", "template": 2, "question": "Q2?", "chosen": "No, but a.",
     "rejected": "Yes, b.", "selected": False},
]}


def test_trl_rows_use_the_rlaif_v_formatted_layout():
    assert trl_rows(RECORD) == [{
        "id": "k_obj_pos", "subset": "obj", "query_type": "positive",
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q1?"}]}],
        "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "Yes, a."}]}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "No, but b."}]}], "granularity": 1}]
    assert trl_rows({"tuples": []}) == []


def test_sft_rows_keep_only_the_chosen_answer():
    (row,) = sft_rows(RECORD)
    assert row["messages"][0]["role"] == "user" and row["messages"][1] == {
        "role": "assistant", "content": [{"type": "text", "text": "Yes, a."}]}
    assert "rejected" not in json.dumps(row)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tuning(tmp_path_factory.mktemp("export") / "sample").out


def test_the_llamafactory_export_matches_the_documented_sharegpt_ranking_format(built, tmp_path):
    out = tmp_path / "lf"
    counts = export_llamafactory(built, out)
    selected = {t["id"]: t for r in records(built) for t in r["tuples"]}
    assert sum(counts.values()) == len(selected) == 120
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["finer_tuning"] == {"file_name": "finer_tuning_train.jsonl", "formatting": "sharegpt", "ranking": True,
                                    "columns": {"messages": "conversations", "chosen": "chosen",
                                                "rejected": "rejected", "images": "images"}}
    assert set(info) == {"finer_tuning", "finer_tuning_validation"}
    assert check_sharegpt(out) == {"finer_tuning": counts["train"], "finer_tuning_validation": counts["validation"]}
    line = json.loads((out / "finer_tuning_train.jsonl").read_text().splitlines()[0])
    t = selected[line["id"]]
    assert line["conversations"] == [{"from": "human", "value": "<image>" + t["question"]}]
    assert line["chosen"] == {"from": "gpt", "value": t["chosen"]} and line["rejected"]["value"] == t["rejected"]
    assert (out / line["images"][0]).read_bytes()[:3] in (b"\xff\xd8\xff", b"\x89PN")
    assert len(list((out / "images").iterdir())) == 30  # each image once
    again = tmp_path / "again"
    export_llamafactory(built, again)
    assert (again / "finer_tuning_train.jsonl").read_bytes() == (out / "finer_tuning_train.jsonl").read_bytes()


def test_the_sft_export_and_the_output_rules(built, tmp_path):
    out = tmp_path / "sft"
    export_llamafactory(built, out, kind="sft")
    info = json.loads((out / "dataset_info.json").read_text())
    assert "ranking" not in info["finer_tuning"] and check_sharegpt(out)["finer_tuning"] > 0
    line = json.loads((out / "finer_tuning_train.jsonl").read_text().splitlines()[0])
    assert [t["from"] for t in line["conversations"]] == ["human", "gpt"] and "chosen" not in line
    with pytest.raises(OutputError, match="already exists"):
        export_llamafactory(built, out)
    export_llamafactory(built, out, overwrite=True)  # a previous export is replaced
    assert "ranking" in json.loads((out / "dataset_info.json").read_text())["finer_tuning"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="no export wrote it"):
        export_llamafactory(built, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(OutputError, match="inside the dataset"):
        export_llamafactory(built, built / "lf")
    with pytest.raises(UsageError, match="kind"):
        export_llamafactory(built, tmp_path / "x", kind="kto")
    with pytest.raises(VerificationError):
        export_llamafactory(tmp_path, tmp_path / "y")
    assert not any(p.name.startswith(".") and not p.name.endswith(".finer-lock") for p in tmp_path.iterdir())  # no staging


@pytest.mark.parametrize("edit, field", [
    (lambda r: r.update(images=[]), "images"),
    (lambda r: r.update(images=["images/missing.jpg"]), "images"),
    (lambda r: r["conversations"][0].update(value="no token"), "images"),
    (lambda r: r.update(chosen={"from": "human", "value": "x"}), "chosen"),
    (lambda r: r.update(rejected=r["chosen"]), "rejected"),
    (lambda r: r["conversations"].append({"from": "gpt", "value": "x"}), "conversations"),
])
def test_the_format_check_names_the_bad_line_and_field(built, tmp_path, edit, field):
    out = tmp_path / "lf"
    export_llamafactory(built, out)
    path = out / "finer_tuning_train.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    edit(row)
    lines[1] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=f"line 2.*{field}|{field}.*line 2") as info:
        check_sharegpt(out)
    assert "finer_tuning_train.jsonl" in str(info.value)
