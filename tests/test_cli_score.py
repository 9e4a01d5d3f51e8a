"""`finer score` and `finer export` from the command line."""

import csv
import json

import datasets

from finer_datasets import SETTINGS
from finer_datasets.cli import main


def write_predictions(path, sample_build, answer):
    with open(path, "w") as f:
        for row in datasets.load_dataset(str(sample_build.out), split="test")["json"]:
            for record in row["pairs"]:
                for polarity in ("positive", "negative"):
                    q = record[polarity]
                    f.write(json.dumps({"question_id": q["question_id"], "response": answer(q)}) + "\n")


def test_score_oracle_and_always_yes(sample_build, tmp_path, capsys):
    oracle = tmp_path / "oracle.jsonl"
    write_predictions(oracle, sample_build, lambda q: f"The answer is {q['answer']}.")
    assert main(["score", str(sample_build.out), "--predictions", str(oracle), "--out", str(tmp_path / "r1")]) == 0
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert all(report["settings"][s]["paired_accuracy"] == 100.0 for s in SETTINGS)
    # the official parser reads "The answer is B." as "E": published-number compatibility, flaws included
    assert main(["score", str(sample_build.out), "--predictions", str(oracle), "--out", str(tmp_path / "r2"),
                 "--parser", "official"]) == 0
    official = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert official["settings"]["multi_obj"]["paired_accuracy"] < 100.0
    yes = tmp_path / "yes.jsonl"
    write_predictions(yes, sample_build, lambda q: "ABCDE"[q["option_types"].index("affirm")])
    assert main(["score", str(sample_build.out), "--predictions", str(yes), "--out", str(tmp_path / "r3")]) == 0
    always_yes = json.loads((tmp_path / "r3" / "report.json").read_text())["settings"]["multi_obj"]
    assert always_yes["paired_accuracy"] == 0.0 and always_yes["false_positive_rate"] == 100.0
    assert "multi_obj" in capsys.readouterr().out


def test_score_rejects_incomplete_predictions(sample_build, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"question_id": "nope", "response": "A"}) + "\n")
    assert main(["score", str(sample_build.out), "--predictions", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "unknown" in err
    assert not (tmp_path / "r" / "report.json").exists()


def test_export_official_csv(sample_build, tmp_path):
    out = tmp_path / "wh.csv"
    assert main(["export", str(sample_build.out), "--format", "official-csv", "--out", str(out), "--setting", "wh"]) == 0
    rows = list(csv.DictReader(out.open()))
    n = sample_build.manifest["counts"]["pairs"]["wh"]
    assert len(rows) == 2 * n
    assert [r["qtype"] for r in rows[:2]] == ["wh_pos", "wh_neg"]


def test_score_records_the_run_and_names_the_model(sample_build, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    answers = run / "predictions.jsonl"
    write_predictions(answers, sample_build, lambda q: q["answer"])
    made = {"engine": "generate", "model": "org/vlm-7b", "prompt": "appendix-d", "max_new_tokens": 3,
            "package": {"name": "finer-datasets"}}  # as baselines/score.py records it
    (run / "run.json").write_text(json.dumps(made))
    # scored into the run's own folder: the model run's record is kept, the report says what made the answers
    assert main(["score", str(sample_build.out), "--predictions", str(answers), "--out", str(run), "--bootstrap", "0"]) == 0
    assert json.loads((run / "run.json").read_text()) == made
    report = json.loads((run / "report.json").read_text())
    assert report["title"] == "FINER evaluation: org/vlm-7b on FINER-CompreCap 2.1.0"  # the dataset by name, not path
    assert (report["model"], report["engine"], report["prompt"]) == ("org/vlm-7b", "generate",
                                                                     {"name": "appendix-d", "max_new_tokens": 3})
    assert "Prompt template: `appendix-d`, at most 3 new tokens." in (run / "report.md").read_text()
    # scored elsewhere with --name and --prompt: a run.json of the scoring is written there
    out = tmp_path / "elsewhere"
    assert main(["score", str(sample_build.out), "--predictions", str(answers), "--out", str(out), "--name", "Mine",
                 "--prompt", "official", "--bootstrap", "0"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert (record["engine"], record["model"], record["prompt"], record["parser"]) == ("generate", "Mine", "official",
                                                                                      "strict")
    assert record["dataset"]["manifest_digest"] == sample_build.manifest["digest"] and record["answers_run"] == made
    assert json.loads((out / "report.json").read_text())["title"].startswith("FINER evaluation: Mine on ")


def test_score_without_a_recorded_prompt_says_so(sample_build, tmp_path):
    answers = tmp_path / "p.jsonl"
    write_predictions(answers, sample_build, lambda q: q["answer"])
    assert main(["score", str(sample_build.out), "--predictions", str(answers), "--out", str(tmp_path / "r"),
                 "--bootstrap", "0"]) == 0
    assert "Prompt template: not recorded" in (tmp_path / "r" / "report.md").read_text()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["engine"] == "predictions-file"
