"""Hostile inputs to the readers of answers and to the spreadsheet export (issue 19): bounded reads of
VLMEvalKit tables and predictions (cell size, columns, rows, bytes, zip bombs), error lines of bounded length,
and cells a spreadsheet would evaluate written as text."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from faultkit import tree
from finer_datasets import load_finer

IDS_OK = "question_id\tprediction\n"


@pytest.fixture(scope="module")
def qids(sample_build):
    return [r["question_id"] for r in load_finer(str(sample_build.out), "questions", split="test")]


def score(finer, sample_build, predictions: Path, *extra: object):
    return finer("score", sample_build.out, "--predictions", predictions, "--out", predictions.parent / "r",
                 "--bootstrap", "0", *extra)


def workbook(path: Path, rows) -> Path:
    """A VLMEvalKit-like .xlsx result: a ``question_id, prediction`` header, then ``rows``."""
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["question_id", "prediction"])
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_a_huge_prediction_cell_is_refused_in_one_line(finer, sample_build, tmp_path, qids):
    for suffix, sep in ((".tsv", "\t"), (".csv", ",")):
        path = tmp_path / f"result{suffix}"
        rows = [f"{qid}{sep}A" for qid in qids]
        rows[3] = f"{qids[3]}{sep}" + "B" * (2 << 20)  # 2 MiB: over the 1 MiB a JSONL line may have
        path.write_text(f"question_id{sep}prediction\n" + "\n".join(rows) + "\n")
        score(finer, sample_build, path, "--from", "vlmevalkit").clean_failure(2, str(path), "row 5",
                                                                              "longer than the limit of 1,048,576")
    assert not (tmp_path / "r").exists()


def test_a_table_with_a_million_columns_is_refused_in_one_line(finer, sample_build, tmp_path, qids):
    wide = tmp_path / "wide.tsv"
    wide.write_text("question_id\tprediction\t" + "\t".join(f"c{i}" for i in range(10 ** 6)) + "\n")
    score(finer, sample_build, wide, "--from", "vlmevalkit").clean_failure(2, str(wide), "more than 1,024 columns")
    row = tmp_path / "row.tsv"
    row.write_text(IDS_OK + f"{qids[0]}\tA\t" + "x\t" * 10 ** 6 + "x\n")
    score(finer, sample_build, row, "--from", "vlmevalkit").clean_failure(2, "row 2", "more than 1,024 columns")


def test_tables_and_predictions_over_the_size_limits_are_refused(finer, sample_build, tmp_path, qids, monkeypatch):
    from finer_datasets.eval import predictions, vlmevalkit

    table = tmp_path / "result.tsv"
    table.write_text(IDS_OK + "".join(f"{qid}\tA\n" for qid in qids))
    lines = tmp_path / "answers.jsonl"
    lines.write_text("".join(json.dumps({"question_id": q, "response": "A"}) + "\n" for q in qids))
    monkeypatch.setitem(vlmevalkit.LIMITS, "bytes", 1000)
    monkeypatch.setattr(predictions, "MAX_FILE_BYTES", 1000)
    score(finer, sample_build, table, "--from", "vlmevalkit").clean_failure(2, "over the limit of 1,000")
    score(finer, sample_build, lines).clean_failure(2, "over the limit of 1,000")
    monkeypatch.setitem(vlmevalkit.LIMITS, "bytes", 1 << 30)
    monkeypatch.setitem(vlmevalkit.LIMITS, "rows", 10)
    score(finer, sample_build, table, "--from", "vlmevalkit").clean_failure(2, "more than 10 rows")


def test_an_xlsx_zip_bomb_is_refused_before_it_is_opened(finer, sample_build, tmp_path, qids, monkeypatch):
    from finer_datasets.eval import vlmevalkit

    path = workbook(tmp_path / "bomb.xlsx", ([qids[0], "A" * 200] for _ in range(2000)))  # compresses to almost nothing
    monkeypatch.setitem(vlmevalkit.LIMITS, "bytes", 100_000)
    score(finer, sample_build, path, "--from", "vlmevalkit").clean_failure(2, str(path), "a zip bomb?")


def test_repeated_ids_give_a_short_error_line(finer, sample_build, tmp_path, qids):
    path = workbook(tmp_path / "repeated.xlsx", ([qids[i % 7], "A"] for i in range(20_000)))
    run = score(finer, sample_build, path, "--from", "vlmevalkit").clean_failure(2, "7 repeated question id(s)",
                                                                                 "(2,857 in all)")
    assert len(run.err) < 2000, len(run.err)
    lines = tmp_path / "repeated.jsonl"
    lines.write_text("".join(json.dumps({"question_id": qids[i % 9], "response": "A"}) + "\n" for i in range(50_000)))
    run = score(finer, sample_build, lines).clean_failure(2, "9 duplicate question id(s)", "in all)", "; ...")
    assert len(run.err) < 2000, len(run.err)


def test_an_error_line_is_cut_whatever_the_message(capsys):
    from finer_datasets.cli import MAX_ERROR_CHARS, guarded
    from finer_datasets.errors import PredictionsError

    def fail() -> int:
        raise PredictionsError("x" * 5_000_000)

    assert guarded(fail) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < MAX_ERROR_CHARS + 100 and "5,000,000 characters in all" in err


def test_bad_numbers_are_refused_at_parse_time(finer, sample_build, tmp_path):
    (tmp_path / "p.jsonl").write_text("")
    finer("score", sample_build.out, "--predictions", tmp_path / "p.jsonl", "--out", tmp_path / "r",
          "--bootstrap", "-1").clean_failure(2, "--bootstrap")
    finer("score", sample_build.out, "--predictions", tmp_path / "p.jsonl", "--out", tmp_path / "r",
          "--max-unparseable", "2").clean_failure(2, "--max-unparseable")
    finer("merge", "tuning", "--source", tmp_path, "--parts", tmp_path, "--out", tmp_path / "m",
          "--shard-samples", "0").clean_failure(2, "--shard-samples")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


# ------------------------------------------------------------------------------------- formula injection

HOSTILE = {"000000000101.jpg": "=1+2.jpg", "000000000102.jpg": "@SUM(4).jpg", "000000000103.jpg": "+SUM(7;7).jpg"}


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory, dummy_dir):
    """A CompreCap build whose source images are named like spreadsheet formulas."""
    from faultkit import finer_process

    root = tmp_path_factory.mktemp("hostile")
    source = root / "src"
    shutil.copytree(dummy_dir, source)
    anno = (source / "anno.json").read_text()
    for old, new in HOSTILE.items():
        (source / "images" / old).rename(source / "images" / new)
        anno = anno.replace(f'"{old}"', f'"{new}"')
    (source / "anno.json").write_text(anno)
    assert finer_process("build", "compre_cap", "--source", source, "--out", root / "ds", "--no-progress").code == 0
    return root / "ds"


def test_the_official_csv_writes_formula_like_cells_as_text(hostile_build, finer, tmp_path):
    out = tmp_path / "finer.csv"
    assert finer("export", hostile_build, "--format", "official-csv", "--out", out).code == 0
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    images = {row["image"] for row in rows}
    assert images and images <= {"'" + name for name in HOSTILE.values()}
    for row in rows:  # no cell a spreadsheet would evaluate
        assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values()), row


def test_the_vlmevalkit_tsv_keeps_the_prompt_text_and_refuses_formula_like_ids(hostile_build, sample_build, tmp_path):
    from finer_datasets.core.manifest import read_manifest
    from finer_datasets.core.reader import iter_samples
    from finer_datasets.errors import SourceError
    from finer_datasets.eval.export import export_vlmevalkit, spreadsheet_safe

    assert spreadsheet_safe("=1+2") == "'=1+2" and spreadsheet_safe("-x") == "'-x" and spreadsheet_safe("A") == "A"
    assert spreadsheet_safe(3) == 3
    out = tmp_path / "x.tsv"
    assert export_vlmevalkit(iter_samples(hostile_build, read_manifest(hostile_build)), out) > 0
    with out.open(newline="", encoding="utf-8") as handle:
        assert all(not row["image"].startswith(("=", "+", "-", "@")) for row in csv.DictReader(handle, delimiter="\t"))

    def renamed(rows):
        for row in rows:
            record = json.loads(row["json"]) if isinstance(row["json"], (str, bytes)) else dict(row["json"])
            record["pairs"][0]["pair_id"] = "-1+2"
            yield {**row, "json": record}

    before = tree(tmp_path)
    with pytest.raises(SourceError, match="begins with '-', which a spreadsheet reads as a formula"):
        export_vlmevalkit(renamed(iter_samples(sample_build.out, sample_build.manifest)), tmp_path / "y.tsv")
    assert tree(tmp_path) == before  # nothing written, no temp file left


