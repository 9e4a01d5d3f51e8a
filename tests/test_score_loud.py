"""`finer score` and baselines/score.py as a user runs them: loud results (unparseable answers), the
subset scored (--setting, --allow-missing, a run's --limit), both parsers, the dataset kind, determinism."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from finer_datasets import SETTINGS
from finer_datasets.cli import main
from finer_datasets.core.reader import iter_records
from finer_datasets.eval.scoring import pair_records
from finer_datasets.testing.scripted import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]


def run(*words, cwd=ROOT):
    """A command line in a subprocess: `finer ...` or `python baselines/score.py ...`."""
    if words[0] == "finer":
        exe = Path(sys.executable).parent / "finer"
        head = [str(exe)] if exe.exists() else [sys.executable, "-m", "finer_datasets.cli"]
    else:
        head = [sys.executable]
    return subprocess.run([*head, *map(str, words[1:])], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def pairs(sample_build):
    return pair_records(iter_records(sample_build.out, sample_build.manifest))


def write(path, pairs, answer, keep=lambda pair: True):
    lines = [json.dumps({"question_id": p[pol]["question_id"], "response": answer(p[pol], i)})
             for i, p in enumerate(pairs) if keep(p) for pol in ("positive", "negative")]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def stderr_lines(done):
    return [line for line in done.stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------- loud results


def test_no_readable_answer_is_a_report_and_exit_7(sample_build, pairs, tmp_path):
    predictions = write(tmp_path / "p.jsonl", pairs, lambda q, i: "~ white")
    done = run("finer", "score", sample_build.out, "--predictions", predictions, "--out", tmp_path / "r")
    assert done.returncode == 7
    warning, error = stderr_lines(done)
    assert warning.startswith("WARNING") and "578 of 578 answers (100%) could not be read by the strict parser" in warning
    for cause in ("chat template", "--max-new-tokens", "prompt the model does not follow", "'~ white'"):
        assert cause in warning
    assert error.startswith("error: no usable result") and "Traceback" not in done.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["quality"]["status"] == "unusable" and report["quality"]["unparseable_share"] == 1.0
    md = (tmp_path / "r" / "report.md").read_text().splitlines()
    assert md[2].startswith("> **No usable result:** 578 of 578 answers")
    # no answer read: the false-positive and false-negative rates are n/a, not 0% ("perfect")
    assert all(report["settings"][s]["false_positive_rate"] is None for s in SETTINGS)
    assert "| overall | 0.0 | 0.0 | 0.0 | n/a | n/a | 578 |" in md


def test_many_unparseable_answers_warn_once(sample_build, pairs, tmp_path):
    predictions = write(tmp_path / "p.jsonl", pairs, lambda q, i: q["answer"] if i % 5 else "I am not sure.")
    done = run("finer", "score", sample_build.out, "--predictions", predictions, "--out", tmp_path / "r",
               "--bootstrap", "0")
    assert done.returncode == 0
    (warning,) = stderr_lines(done)
    assert "could not be read by the strict parser (more than --max-unparseable 10%)" in warning
    assert "'I am not sure.'" in warning
    assert (tmp_path / "r" / "report.md").read_text().splitlines()[2].startswith("> **Warning:** 116 of 578 answers")
    quiet = run("finer", "score", sample_build.out, "--predictions", predictions, "--out", tmp_path / "q",
                "--bootstrap", "0", "--max-unparseable", "0.25")
    assert quiet.returncode == 0 and not stderr_lines(quiet)
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert report["quality"]["status"] == "ok" and report["quality"]["max_unparseable"] == 0.25
    assert "**Warning" not in (tmp_path / "q" / "report.md").read_text()
    with pytest.raises(SystemExit) as exit_info:  # argparse: one line, status 2
        main(["score", str(sample_build.out), "--predictions", str(predictions), "--out", str(tmp_path / "x"),
              "--max-unparseable", "1.5"])
    assert exit_info.value.code == 2


def test_baseline_script_exits_7_when_no_answer_is_readable(sample_build, tmp_path):
    def answer(body, n):
        return 200, json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "~"}}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()

    with ScriptedServer(hook=answer) as server:
        done = run("python", "baselines/score.py", sample_build.out, "--engine", "openai", "--base-url", server.url,
                   "--model", "scripted-vl", "--limit", "1", "--no-logprobs", "--bootstrap", "0", "--out", tmp_path)
    assert done.returncode == 7, done.stderr
    assert "error: no usable result: none of the 8 answers" in done.stderr
    assert sum("could not be read by the strict parser" in line for line in stderr_lines(done)) == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["quality"]["status"] == "unusable"
    assert "the first 1 pairs of each setting (--limit 1)" in (tmp_path / "report.md").read_text()


# ---------------------------------------------------------------- the subset scored


def test_setting_filters_the_predictions_too(sample_build, pairs, tmp_path, capsys):
    predictions = write(tmp_path / "p.jsonl", pairs, lambda q, i: q["answer"])
    assert main(["score", str(sample_build.out), "--predictions", str(predictions), "--setting", "wh", "--out",
                 str(tmp_path / "r"), "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    wh = sample_build.manifest["counts"]["pairs"]["wh"]
    assert list(report["settings"]) == ["wh"] and report["n_pairs"] == wh
    assert report["coverage"]["ignored"] == 2 * (len(pairs) - wh) == 448
    assert "448 answers to questions outside the scored pairs were ignored" in (tmp_path / "r" / "report.md").read_text()
    assert "scored: settings wh only (--setting)" in capsys.readouterr().out


def test_missing_answers_are_counted_per_setting_or_scored_wrong(sample_build, pairs, tmp_path, capsys):
    predictions = write(tmp_path / "p.jsonl", pairs, lambda q, i: q["answer"], keep=lambda p: p["setting"] == "wh")
    out = tmp_path / "r"
    assert main(["score", str(sample_build.out), "--predictions", str(predictions), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert "448 missing question id(s) (multi_obj 110, multi_attr 208, multi_rel 130;" in err
    assert main(["score", str(sample_build.out), "--predictions", str(predictions), "--out", str(out),
                 "--allow-missing", "--bootstrap", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["coverage"]["by_setting"]["multi_obj"] == {"answered": 0, "total": 110}
    assert report["settings"]["multi_obj"]["paired_accuracy"] == 0.0 and report["settings"]["wh"]["paired_accuracy"] == 100
    assert report["settings"]["multi_obj"]["missing"] == 110 and report["settings"]["multi_obj"]["unparseable"] == 0
    assert report["quality"]["status"] == "ok"  # missing answers are not unparseable ones
    md = (out / "report.md").read_text()
    assert "| multi_obj | 0 | 110 | 0.0 |" in md and "| wh | 130 | 130 | 100.0 |" in md
    # an id that is no question of the dataset stays an error, --allow-missing or not
    with predictions.open("a") as handle:
        handle.write(json.dumps({"question_id": "nope_pos", "response": "A"}) + "\n")
    assert main(["score", str(sample_build.out), "--predictions", str(predictions), "--out", str(tmp_path / "u"),
                 "--allow-missing"]) == 2
    assert "1 unknown question id(s) (not in this dataset; e.g. 'nope_pos')" in capsys.readouterr().err


def test_a_limited_baseline_run_is_rescored_as_it_was_asked(sample_build, tmp_path):
    with ScriptedServer() as server:
        done = run("python", "baselines/score.py", sample_build.out, "--engine", "openai", "--base-url", server.url,
                   "--model", "scripted-vl", "--limit", "3", "--bootstrap", "0", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    again = run("finer", "score", sample_build.out, "--predictions", tmp_path / "run" / "predictions.jsonl",
                "--parser", "official", "--out", tmp_path / "official")
    assert again.returncode == 0, again.stderr
    assert "scored: the first 3 pairs of each setting: the --limit 3 recorded in the run.json" in again.stdout
    report = json.loads((tmp_path / "official" / "report.json").read_text())
    assert report["n_pairs"] == 12 and report["coverage"]["missing"] == 0
    assert {s: b["n_pairs"] for s, b in report["settings"].items()} == dict.fromkeys(SETTINGS, 3)
    assert "Scored: the first 3 pairs of each setting" in (tmp_path / "official" / "report.md").read_text()
    first = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["by_parser"] == first["by_parser"]  # the same numbers as the run's own report


# ---------------------------------------------------------------- both parsers, one headline


@pytest.mark.parametrize("prompt, comparable", [("official", "official"), ("appendix-d", None), (None, None)])
def test_every_report_shows_both_parsers_and_names_the_comparable_one(sample_build, pairs, tmp_path, prompt,
                                                                      comparable):
    folder = tmp_path / "answers"
    folder.mkdir()
    predictions = write(folder / "predictions.jsonl", pairs, lambda q, i: f"The answer is {q['answer']}.")
    if prompt:
        (folder / "run.json").write_text(json.dumps({"engine": "generate", "model": "org/vlm", "prompt": prompt,
                                                     "max_new_tokens": 2 if prompt == "official" else 3}))
    assert main(["score", str(sample_build.out), "--predictions", str(predictions), "--out", str(tmp_path / "r"),
                 "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    strict, official = (report["by_parser"][m]["overall"]["paired_accuracy"] for m in ("strict", "official"))
    assert strict == 100.0 and official < 100.0  # "The answer is B" is read as "E" by the first-letter parser
    assert report["headline"]["paired_accuracy"] == {"strict": strict, "official": official}
    assert report["headline"]["comparable_with_table1"] == comparable
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"**Paired accuracy: `strict` parser 100.0%, `official` parser {official:.1f}%.**" in md
    if comparable:
        assert "The `official` figure is the one comparable with the paper's Table 1" in md
        assert "| Setting | `strict` | `official` (Table 1) |" in md
    else:
        assert "Neither figure is comparable with the paper's Table 1" in md


def test_score_reports_are_byte_identical(sample_build, pairs, tmp_path):
    predictions = write(tmp_path / "p.jsonl", pairs, lambda q, i: "ABCDE"[i % 5])
    for name in ("a", "b"):
        assert main(["score", str(sample_build.out), "--predictions", str(predictions), "--out", str(tmp_path / name),
                     "--bootstrap", "200"]) == 0
    for name in ("report.json", "report.md", "accuracy_by_k.png", "fp_fn_rates.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# ---------------------------------------------------------------- the dataset kind


@pytest.fixture(scope="module")
def tuning_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuning") / "tuning"
    assert main(["build", "tuning", "--sample", "--out", str(out), "--no-progress"]) == 0
    return out


def test_a_preference_dataset_is_refused_in_one_line(tuning_build, tmp_path):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(json.dumps({"question_id": "x", "response": "A"}) + "\n")
    done = run("finer", "score", tuning_build, "--predictions", predictions, "--out", tmp_path / "r")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = stderr_lines(done)
    assert line.startswith(f"error: {tuning_build} is a FINER-Tuning preference dataset") and "finer score needs" in line
    assert not (tmp_path / "r").exists()
    done = run("python", "baselines/score.py", tuning_build, "--model", "any/model", "--out", tmp_path / "s")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert stderr_lines(done)[-1].startswith(f"error: {tuning_build} is a FINER-Tuning preference dataset")
    assert "baselines/score.py needs a FINER benchmark" in done.stderr and not (tmp_path / "s").exists()
