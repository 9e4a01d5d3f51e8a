"""The paper's protocol by default: the official prompt byte for byte, the official setting names
everywhere a setting is named, and FINER's official row contract running unchanged on our rows."""

import json
import re

import pytest

from finer_datasets.cli import main
from finer_datasets.constants import LETTERS, SETTINGS
from finer_datasets.errors import UsageError
from finer_datasets.eval.prompts import DEFAULT_PROMPT, PROMPTS, get_prompt, official_prompt
from finer_datasets.eval.scoring import pair_records, score

OPTIONS = ["Yes, I can see a cat.", "No, but I can see a dog.", "No, but I can see an owl.",
           "No, but I can see a fox.", "No, but I can see a hen."]


def test_official_template_is_byte_exact():
    expected = (b"Select the best answer for the multiple-choice question.\n"
                b"\n"
                b"Can you see a cat?\n"
                b"\n"
                b"(A) Yes, I can see a cat.\n"
                b"(B) No, but I can see a dog.\n"
                b"(C) No, but I can see an owl.\n"
                b"(D) No, but I can see a fox.\n"
                b"(E) No, but I can see a hen.\n"
                b"\n"
                b"Please answer with a single capital letter (A, B, C, D, or E):")
    assert official_prompt("Can you see a cat?", OPTIONS).encode("utf-8") == expected
    assert get_prompt().format("Can you see a cat?", OPTIONS).encode("utf-8") == expected
    assert DEFAULT_PROMPT == "official" and PROMPTS["official"].max_new_tokens == 2


def test_appendix_d_template_is_kept_by_name():
    template = get_prompt("appendix-d")
    assert template.max_new_tokens == 3
    assert template.format("Q?", OPTIONS) == ("Q?\nA. Yes, I can see a cat.\nB. No, but I can see a dog.\n"
                                              "C. No, but I can see an owl.\nD. No, but I can see a fox.\n"
                                              "E. No, but I can see a hen.\n"
                                              "Please answer with a single capital letter (A, B, C, D, or E).")
    with pytest.raises(UsageError, match="--prompt 'paper' is not a prompt template; use one of official, appendix-d"):
        get_prompt("paper")


# ---------------------------------------------------------------- official setting names


@pytest.mark.parametrize("name, ours", [("multi_object", "multi_obj"), ("multi_attribute", "multi_attr"),
                                        ("multi_relation", "multi_rel"), ("multi-obj", "multi_obj"), ("wh", "wh")])
def test_official_names_work_in_finer_score_and_export(sample_build, tmp_path, name, ours, capsys):
    answers = tmp_path / "p.jsonl"
    with answers.open("w") as f:
        for pair in pair_records_of(sample_build):
            for polarity in ("positive", "negative"):
                f.write(json.dumps({"question_id": pair[polarity]["question_id"], "response": "A"}) + "\n")
    out = tmp_path / "r"
    assert main(["score", str(sample_build.out), "--predictions", str(answers), "--out", str(out), "--setting", name,
                 "--bootstrap", "0"]) == 0  # answers to other settings are ignored and counted ...
    assert json.loads((out / "report.json").read_text())["coverage"]["ignored"] > 0
    chosen = tmp_path / "chosen.jsonl"
    chosen.write_text("".join(line + "\n" for line in answers.read_text().splitlines()
                              if json.loads(line)["question_id"].startswith(ours + "_")))
    assert main(["score", str(sample_build.out), "--predictions", str(chosen), "--out", str(out), "--setting", name,
                 "--bootstrap", "0"]) == 0  # ... and with only this setting's answers it scores too
    assert list(json.loads((out / "report.json").read_text())["settings"]) == [ours]
    csv_out = tmp_path / "x.csv"
    assert main(["export", str(sample_build.out), "--format", "official-csv", "--out", str(csv_out), "--setting",
                 name]) == 0
    assert {line.split(",")[1] for line in csv_out.read_text().splitlines()[1:]} == {f"{ours}_pos", f"{ours}_neg"}


def test_an_unknown_setting_is_a_one_line_usage_error(sample_build, tmp_path, capsys):
    assert main(["export", str(sample_build.out), "--format", "official-csv", "--out", str(tmp_path / "x.csv"),
                 "--setting", "multi_objects"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "multi_object, multi_attribute, multi_relation" in err


def pair_records_of(sample_build):
    from finer_datasets.core.reader import iter_records

    return pair_records(iter_records(sample_build.out, sample_build.manifest))


# ---------------------------------------------------------------- the official row contract
#
# FINER's released evaluation walks per-question rows in order, per subset: it prompts with
# official_prompt(question, options), reads the first character in [A-Ea-e] of the output as the
# choice, and counts a pair right when two consecutive rows -- same image file, same question type
# up to the _pos/_neg suffix, one of each -- are both right; a row that breaks these checks stops
# it. Reimplemented here from that description (its code is not copied).


def official_pair_accuracy(rows, generate):
    """Paired accuracy (percent) of one subset's rows as the official script computes it."""
    rows = list(rows)
    if len(rows) % 2:
        raise ValueError(f"row count must be even, got {len(rows)}")
    pairs = right = 0
    for first, second in zip(rows[0::2], rows[1::2]):
        if first["image_filename"] != second["image_filename"]:
            raise ValueError("a pair spans two images")
        base = {re.sub(r"_(pos|neg)$", "", r["qtype"]) for r in (first, second)}
        suffixes = {re.search(r"_(pos|neg)$", r["qtype"]).group(1) for r in (first, second)}
        if len(base) != 1 or suffixes != {"pos", "neg"}:
            raise ValueError("a pair must be one pos and one neg question of one type")
        correct = []
        for row in (first, second):
            text = generate(row["image"], official_prompt(row["question"], row["options"]))
            found = re.search(r"[A-Ea-e]", text)
            pred = LETTERS.index(found.group(0).upper()) if found else -1
            correct.append(pred == row["gt_index"])
        pairs += 1
        right += all(correct)
    return 100.0 * right / pairs


@pytest.fixture(scope="module")
def question_view(sample_build):
    from finer_datasets.hub.load import load_finer

    return load_finer(str(sample_build.out), "questions", split="test")


def test_the_official_row_contract_runs_on_our_question_view(question_view, sample_build):
    import random

    records = pair_records_of(sample_build)
    rng = random.Random(7)
    outputs = {}
    for pair in records:
        for polarity in ("positive", "negative"):
            q = pair[polarity]
            outputs[q["question_id"]] = rng.choice([q["answer"], q["answer"].lower(), "The answer is " + q["answer"],
                                                    rng.choice(LETTERS), "Yes"])
    by_prompt = {}

    def generate(image, prompt):
        assert image.size[0] > 0  # the row carries the decoded image
        return by_prompt[prompt].pop(0)

    rows = list(question_view)
    for row in rows:
        prompt = official_prompt(row["question"], row["options"])
        by_prompt.setdefault(prompt, []).append(outputs[row["question_id"]])
    ours = score(records, outputs, parser="official", bootstrap=0)
    subsets = sorted({row["subset"] for row in rows})
    assert subsets == sorted(["multi_object", "multi_attribute", "multi_relation", "wh"])
    for setting in SETTINGS:
        official_name = {"multi_obj": "multi_object", "multi_attr": "multi_attribute",
                         "multi_rel": "multi_relation"}.get(setting, setting)
        subset_rows = [row for row in rows if row["subset"] == official_name]
        assert official_pair_accuracy(subset_rows, generate) == pytest.approx(ours["settings"][setting]["paired_accuracy"])


def test_the_contract_would_catch_rows_out_of_pair_order(question_view):
    rows = [row for row in question_view if row["subset"] == "wh"][:4]
    with pytest.raises(ValueError, match="one pos and one neg"):
        official_pair_accuracy([rows[0], rows[2], rows[1], rows[3]], lambda image, prompt: "A")
