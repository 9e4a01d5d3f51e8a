"""VLMEvalKit both ways: the exported TSV carries question and pair ids, and `finer score --from
vlmevalkit` turns VLMEvalKit's result files (prediction file, judged *_result file; .tsv or .xlsx)
into paired accuracy by id, whatever the row order."""

import base64
import csv
import json
import random
import sys

import pytest

from finer_datasets.cli import main
from finer_datasets.constants import LETTERS
from finer_datasets.core.reader import iter_records
from finer_datasets.eval.answers import parse_answer
from finer_datasets.eval.vlmevalkit import read_vlmevalkit

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def exported(sample_build, tmp_path_factory):
    path = tmp_path_factory.mktemp("vlmevalkit") / "FINER_CompreCap.tsv"
    assert main(["export", str(sample_build.out), "--format", "vlmevalkit", "--out", str(path)]) == 0
    return path


def model_answers(frame):
    rng = random.Random(5)
    return [answer if rng.random() < 0.6 else rng.choice([*LETTERS, "Yes.", "The answer is B.", "(C) cat"])
            for answer in frame["answer"]]


def vlmevalkit_prediction_file(exported, folder, fmt):
    """What VLMEvalKit's inference writes: the dataset's rows without the image, plus `prediction`."""
    data = pd.read_csv(exported, sep="\t")
    data["prediction"] = model_answers(data)
    data.pop("image")
    data = data.sample(frac=1.0, random_state=0)  # row order must not matter
    path = folder / f"Qwen2.5-VL-7B_FINER_CompreCap.{fmt}"
    if fmt == "xlsx":
        data.to_excel(path, index=False)
    else:
        data.to_csv(path, sep="\t", index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
    return path, data


def vlmevalkit_judged_file(data, folder, fmt):
    """What its MCQ evaluation writes: lower-cased columns (option letters kept), `hit` and `log`."""
    data = data.copy()
    data.columns = [c if c in LETTERS else c.lower() for c in data.columns]
    hits, logs = [], []
    for _, row in data.iterrows():
        letter = parse_answer(str(row["prediction"]), [row[x] for x in LETTERS])
        hits.append(int(letter == row["answer"]))
        logs.append(f"Match Log: {row['prediction']}. " if letter else
                    "Match Log: Failed in Prefetch, no GPT-based answer matching under `exact_matching` policy.. ")
    data["hit"], data["log"] = hits, logs
    path = folder / f"Qwen2.5-VL-7B_FINER_CompreCap_exact_matching_result.{fmt}"
    if fmt == "xlsx":
        data.to_excel(path, index=False)
    else:
        data.to_csv(path, sep="\t", index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
    return path


def vlmevalkit_loader_images(path):
    """Every row's image as VLMEvalKit's dataset loader (ImageBaseDataset) reads its TSV: pandas with
    sep="\\t", index and image cells as text, and an image cell of at most 64 characters taken as
    the index of the row whose image cell holds the base64."""
    data = pd.read_csv(path, sep="\t")
    index = [str(x) for x in data["index"]]
    cells = dict(zip(index, (str(x) for x in data["image"])))
    resolved = {}
    for key, cell in cells.items():
        if len(cell) <= 64:
            assert cell in cells and len(cells[cell]) > 64, (key, cell)  # VLMEvalKit asserts this too
            cell = cells[cell]
        resolved[key] = cell
    return data, [base64.b64decode(resolved[key]) for key in index]


def test_vlmevalkit_reads_every_rows_image_from_an_export_storing_each_once(exported, sample_build, sample_dir):
    data, images = vlmevalkit_loader_images(exported)
    files = {p["pair_id"]: r["image_file"] for r in iter_records(sample_build.out, sample_build.manifest)
             for p in r["pairs"]}
    assert len(images) == len(data) == 2 * len(files)
    for pair_id, got in zip(data["pair_id"], images):
        assert got == (sample_dir / "images" / files[pair_id]).read_bytes()
    inlined = [cell for cell in data["image"].astype(str) if len(cell) > 64]
    assert len(inlined) == len(set(files.values())) == 12  # 12 images, not 578 copies


def test_the_export_carries_ids(exported, sample_build):
    frame = pd.read_csv(exported, sep="\t")
    assert list(frame.columns[-2:]) == ["question_id", "pair_id"]
    assert frame["question_id"].is_unique and frame["pair_id"].value_counts().eq(2).all()
    assert all(q.startswith(p) for q, p in zip(frame["question_id"], frame["pair_id"]))


@pytest.mark.parametrize("fmt", ["tsv", "xlsx"])
def test_round_trip_equals_scoring_the_same_answers(exported, sample_build, tmp_path, fmt):
    if fmt == "xlsx":
        pytest.importorskip("openpyxl")
    path, data = vlmevalkit_prediction_file(exported, tmp_path, fmt)
    jsonl = tmp_path / "same.jsonl"
    jsonl.write_text("".join(json.dumps({"question_id": q, "response": str(r)}) + "\n"
                             for q, r in zip(data["question_id"], data["prediction"])))
    for name, args in (("kit", ["--from", "vlmevalkit", "--predictions", str(path)]),
                       ("ours", ["--predictions", str(jsonl)])):
        assert main(["score", str(sample_build.out), *args, "--out", str(tmp_path / name), "--bootstrap", "0"]) == 0
    kit = json.loads((tmp_path / "kit" / "report.json").read_text())
    ours = json.loads((tmp_path / "ours" / "report.json").read_text())
    for key in ("settings", "overall"):
        assert kit[key] == ours[key]
    assert 0 < kit["overall"]["paired_accuracy"] < 100
    assert kit["engine"] == "vlmevalkit" and kit["prompt"]["name"] == "vlmevalkit"
    run = json.loads((tmp_path / "kit" / "run.json").read_text())
    assert (run["engine"], run["predictions_from"]) == ("vlmevalkit", "vlmevalkit")


@pytest.mark.parametrize("fmt", ["tsv", "xlsx"])
def test_the_judged_result_gives_vlmevalkits_verdict(exported, sample_build, tmp_path, fmt):
    if fmt == "xlsx":
        pytest.importorskip("openpyxl")
    _, data = vlmevalkit_prediction_file(exported, tmp_path, "tsv")
    judged = vlmevalkit_judged_file(data, tmp_path, fmt)
    assert main(["score", str(sample_build.out), "--from", "vlmevalkit", "--vlmevalkit-answer", "judged",
                 "--predictions", str(judged), "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    frame = pd.read_csv(judged, sep="\t") if fmt == "tsv" else pd.read_excel(judged)
    both = frame.groupby("pair_id")["hit"].min()
    assert report["overall"]["paired_accuracy"] == pytest.approx(100 * both.mean())
    assert report["overall"]["question_accuracy"] == pytest.approx(100 * frame["hit"].mean())
    answers = read_vlmevalkit(judged, answer="judged")
    wrong = frame[frame["hit"] == 0].iloc[0]
    assert answers[wrong["question_id"]] != wrong["answer"]


def test_result_files_that_cannot_be_scored(exported, sample_build, tmp_path, capsys, monkeypatch):
    path, data = vlmevalkit_prediction_file(exported, tmp_path, "tsv")
    old = tmp_path / "old.tsv"
    data.drop(columns=["question_id"]).to_csv(old, sep="\t", index=False, quoting=csv.QUOTE_ALL)
    twice = tmp_path / "twice.tsv"
    pd.concat([data, data.iloc[:2]]).to_csv(twice, sep="\t", index=False, quoting=csv.QUOTE_ALL)
    cases = [
        (old, [], "no 'question_id' column: the TSV VLMEvalKit ran on was exported without ids"),
        (twice, [], "2 repeated question id(s)"),
        (path, ["--vlmevalkit-answer", "judged"], "no 'hit' column for --vlmevalkit-answer judged"),
        (tmp_path / "missing.tsv", [], "no such file"),
        (tmp_path / "result.pkl", [], "must be a .xlsx, .tsv or .csv file"),
    ]
    (tmp_path / "result.pkl").write_bytes(b"\x80\x04")
    for bad, extra, message in cases:
        code = main(["score", str(sample_build.out), "--from", "vlmevalkit", "--predictions", str(bad), *extra,
                     "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err and str(bad) in err, (bad, err)
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # openpyxl not installed
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    assert main(["score", str(sample_build.out), "--from", "vlmevalkit", "--predictions", str(tmp_path / "x.xlsx"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "reading .xlsx needs openpyxl (pip install openpyxl)" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.json").exists()
