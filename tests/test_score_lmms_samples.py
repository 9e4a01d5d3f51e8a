"""`finer score --from lmms-eval`: a real lmms-eval 0.7.3 --log_samples run read back into our report.

The fixture tests/fixtures/lmms_eval/ is the output folder of a real run (lmms-eval 0.7.3, the tiny
random LLaVA of finer_datasets.testing.tiny_vlm, the bundled CompreCap sample built with seed 0,
tasks from `finer export --format lmms-eval`), cut to 5 questions per task with --limit 5 --offset 27:
questions 27-31 of each setting, i.e. the negative half of pair 13 and pairs 14 and 15 in full. Its
results.json holds lmms-eval's own numbers, which `finer score` must equal.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finer_datasets import SETTINGS
from finer_datasets.cli import main
from finer_datasets.eval.lmms.samples import find_run, read_lmms_run

RUN = Path(__file__).parent / "fixtures" / "lmms_eval"
MODEL_DIR = RUN / "fs__tiny-llava"
RESULTS = MODEL_DIR / "20261206_121922_results.json"


def finer(*args, cwd=None):
    exe = Path(sys.executable).parent / "finer"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "finer_datasets.cli"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def lmms_numbers(metric):
    results = json.loads(RESULTS.read_text())
    per_task = {task.rsplit("finer_compre_cap_", 1)[1]: block[f"{metric},none"]
                for task, block in results["results"].items() if task.startswith("finer_compre_cap_")}
    return per_task, results["results"]["finer_compre_cap"][f"{metric},none"]


def test_the_fixture_is_what_lmms_eval_wrote():
    results = json.loads(RESULTS.read_text())
    assert results["config"]["limit"] == 5 and results["config"]["offset"] == 27
    line = json.loads((MODEL_DIR / "20261206_121922_samples_finer_compre_cap_wh.jsonl").read_text().splitlines()[0])
    # the keys lmms-eval 0.7.3 writes per document; the document itself is not saved, our item is
    assert {"doc_id", "target", "filtered_resps", "doc_hash", "input"} <= set(line) and "doc" not in line
    item = line["acc_paired"]
    assert item == line["acc_paired_official"] == line["acc_question"]
    assert item["response"] == line["filtered_resps"] and line["target"] == item["answer"]
    assert item["question_id"].startswith("wh_") and item["setting"] == "wh"


def test_score_from_lmms_eval_equals_its_own_table(sample_build, tmp_path):
    out = tmp_path / "report"
    done = finer("score", sample_build.out, "--from", "lmms-eval", "--predictions", RUN, "--parser", "official",
                 "--out", out)
    assert done.returncode == 0, done.stderr
    assert "cut by lmms-eval --limit 5 --offset 27" in done.stdout
    report = json.loads((out / "report.json").read_text())
    per_task, group = lmms_numbers("acc_paired_official")
    assert {s: report["settings"][s]["paired_accuracy"] for s in SETTINGS} == pytest.approx(per_task)
    assert report["overall"]["paired_accuracy"] == pytest.approx(group) == 25.0
    strict, strict_group = lmms_numbers("acc_paired")
    assert {s: b["paired_accuracy"] for s, b in report["by_parser"]["strict"]["settings"].items()} == pytest.approx(strict)
    # pairs 14 and 15 of each setting; the answer to the half-asked pair 13 is ignored, not an error
    assert report["n_pairs"] == 8 and report["coverage"]["ignored"] == 4 and report["coverage"]["missing"] == 0
    assert (report["model"], report["engine"]) == ("/tmp/fs/tiny-llava", "lmms-eval llava_hf")
    assert report["prompt"] == {"name": "official", "max_new_tokens": 2}
    assert report["headline"]["comparable_with_table1"] == "official"
    assert report["title"] == "FINER evaluation: tiny-llava on FINER-CompreCap 2.1.0"
    md = (out / "report.md").read_text()
    assert "lmms-eval --limit 5 --offset 27" in md and "4 answers to questions outside the scored pairs" in md


def test_the_strict_reading_of_the_same_run_is_no_usable_result(sample_build, tmp_path):
    # the tiny random model answers "~D", "~ white": the first-letter parser reads them, the strict one cannot
    done = finer("score", sample_build.out, "--from", "lmms-eval", "--predictions", RUN, "--out", tmp_path / "r")
    assert done.returncode == 7
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "could not be read by the strict parser" in lines[0] and "'~D'" in lines[0]
    assert lines[1].startswith("error: no usable result")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["quality"]["status"] == "unusable"
    assert (tmp_path / "r" / "report.md").read_text().splitlines()[2].startswith("> **No usable result:**")


@pytest.mark.parametrize("given", ["results", "samples", "folder"])
def test_predictions_may_be_the_results_file_a_samples_file_or_the_folder(given):
    path = {"results": RESULTS, "samples": MODEL_DIR / "20261206_121922_samples_finer_compre_cap_wh.jsonl",
            "folder": RUN}[given]
    files, results = find_run(path)
    assert results == RESULTS
    assert len(files) == (1 if given == "samples" else 4)
    answers = read_lmms_run(path)
    assert answers.settings == (("wh",) if given == "samples" else SETTINGS)
    assert len(answers.predictions) == 5 * len(answers.settings) and len(answers.pair_ids) == 2 * len(answers.settings)


def test_one_samples_file_scores_its_setting(sample_build, tmp_path, capsys):
    path = MODEL_DIR / "20261206_121922_samples_finer_compre_cap_wh.jsonl"
    assert main(["score", str(sample_build.out), "--from", "lmms-eval", "--predictions", str(path), "--parser",
                 "official", "--out", str(tmp_path), "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["settings"]) == ["wh"] and report["settings"]["wh"]["paired_accuracy"] == 50.0


def copy_run(tmp_path, results=True):
    folder = tmp_path / "run" / "model"
    shutil.copytree(MODEL_DIR, folder)
    if not results:
        (folder / RESULTS.name).unlink()
    return folder


def test_without_results_json_the_cut_is_unknown_and_missing_answers_are_counted(sample_build, tmp_path, capsys):
    folder = copy_run(tmp_path, results=False)
    out = tmp_path / "r"
    code = main(["score", str(sample_build.out), "--from", "lmms-eval", "--predictions", str(folder), "--parser",
                 "official", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "missing question id(s) (multi_obj 105, multi_attr 203, multi_rel 125, wh 125;" in err
    assert "--allow-missing" in err and not out.exists()
    assert main(["score", str(sample_build.out), "--from", "lmms-eval", "--predictions", str(folder), "--parser",
                 "official", "--out", str(out), "--allow-missing", "--bootstrap", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["coverage"]["by_setting"]["wh"] == {"answered": 5, "total": 130}
    assert report["settings"]["wh"]["missing"] == 125 and report["settings"]["wh"]["n_pairs"] == 65
    assert "| wh | 5 | 130 | 3.8 |" in (out / "report.md").read_text()
    assert "results.json beside the samples" in (out / "report.md").read_text()


def test_bad_lmms_eval_input_is_one_line(sample_build, tmp_path, capsys):
    def score(path):
        code = main(["score", str(sample_build.out), "--from", "lmms-eval", "--predictions", str(path), "--out",
                     str(tmp_path / "r")])
        return code, capsys.readouterr().err.strip()

    two = tmp_path / "two"
    shutil.copytree(MODEL_DIR, two / "a")
    shutil.copytree(MODEL_DIR, two / "b")
    code, err = score(two)
    assert code == 2 and "2 lmms-eval runs in this folder" in err and len(err.splitlines()) == 1
    code, err = score(tmp_path / "empty")
    assert code == 2 and "no such file or folder" in err
    (tmp_path / "nothing").mkdir()
    code, err = score(tmp_path / "nothing")
    assert code == 2 and "run lmms-eval with --log_samples" in err
    plain = tmp_path / "predictions.jsonl"
    plain.write_text("{}\n")
    code, err = score(plain)
    assert code == 2 and "not an lmms-eval samples file" in err
    folder = copy_run(tmp_path)
    samples = folder / "20261206_121922_samples_finer_compre_cap_wh.jsonl"
    lines = samples.read_text().splitlines()
    broken = json.loads(lines[2])
    for key in ("acc_paired", "acc_paired_official", "acc_question"):
        del broken[key]
    samples.write_text("\n".join([*lines[:2], json.dumps(broken), *lines[3:]]) + "\n")
    code, err = score(folder)
    assert code == 2 and f"file {samples}, line 3: no FINER item" in err
    samples.write_text("\n".join([*lines, lines[1]]) + "\n")
    code, err = score(folder)
    assert code == 2 and "1 duplicate question id(s)" in err and "lines 2, 6" in err
    other = folder / "20261206_121922_samples_finer_compre_cap_multi_obj.jsonl"
    samples.write_text("\n".join(lines) + "\n")
    other.write_text(other.read_text() + lines[0] + "\n")
    code, err = score(folder)
    assert code == 2 and "is answered in two samples files" in err
