"""Broken release tables and bad --from-release usage: one `error:` line naming file, row and field,
exit status 2, no traceback, nothing written -- from the command line, as a user runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent / "fixtures" / "finer_release"
BROKEN = ROOT / "broken"
IMAGES = ROOT / "tables" / "images"

CASES = [
    # case, where (file / row / field as printed), message
    ("odd_rows", "multi_obj.csv, line 6, record row 4, field 'qtype'", "odd number of rows (5)"),
    ("two_pos", "multi_obj.csv, line 3, record row 1, field 'qtype'", "rows 0 and 1 are both _pos"),
    ("other_image", "multi_obj.csv, line 3, record row 1, field 'image'",
     "image '000000000285.jpg' differs from '000000000139.jpg' in row 0"),
    ("other_qtype", "multi_obj.csv, line 3, record row 1, field 'qtype'",
     "qtype 'multi_attr_neg' is not of the type of 'multi_obj_pos' in row 0"),
    ("gt_out_of_range", "multi_obj.csv, line 4, record row 2, field 'gt_index'", "gt_index 5 is out of range"),
    ("gt_not_integer", "multi_obj.csv, line 5, record row 3, field 'gt_index'", "gt_index 'B' is not an integer"),
    ("missing_column", "multi_obj.csv, field 'choice5'", "missing column 'choice5'"),
    ("empty_option", "multi_obj.csv, line 3, record row 1, field 'choice3'", "empty text"),
    ("empty_question", "multi_obj.csv, line 2, record row 0, field 'question'", "empty text"),
    ("no_suffix", "multi_obj.csv, line 2, record row 0, field 'qtype'", "does not end in _pos or _neg"),
    ("missing_image", "multi_obj.csv, line 6, record row 4, field 'image'", "image file not found"),
    ("same_key", "multi_obj.csv, line 6, record row 4, field 'image'", "both become key '000000000139'"),
    ("ragged_row", "multi_obj.csv, line 4, record row 2", "10 fields where the header has 9"),
    ("two_tables", "two_tables", "two tables for setting multi_obj: multi_obj.csv and multi_object.csv"),
    ("no_tables", "no_tables", "no released FINER tables here"),
]


def finer(*args):
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def one_error_line(run, *parts):
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def nothing_written(parent):
    """No output and no staging left (the output lock file of the core may stay)."""
    return [p.name for p in parent.iterdir() if not p.name.endswith(".finer-lock")] == []


# both benchmarks read tables with the same code: every case for one, three for the other
BUILDS = [("compre_cap", *case) for case in CASES] + [("docci", *case) for case in CASES
                                                      if case[0] in ("odd_rows", "two_pos", "gt_out_of_range")]


@pytest.mark.parametrize("dataset,case,where,message", BUILDS, ids=[f"{b[0]}-{b[1]}" for b in BUILDS])
def test_broken_table_is_one_line_and_writes_nothing(tmp_path, dataset, case, where, message):
    run = finer("build", dataset, "--from-release", BROKEN / case, "--images", IMAGES, "--out", tmp_path / "out",
                "--no-progress")
    one_error_line(run, where, message)
    assert nothing_written(tmp_path)


USAGE = [
    (["--images", IMAGES, "--sample"], "--images goes with --from-release"),
    (["--from-release", ROOT / "tables", "--source", ROOT / "tables"], "drop --source / --sample"),
    (["--from-release", ROOT / "tables", "--sample"], "drop --source / --sample"),
    (["--from-release", ROOT / "nowhere"], "no such folder, and not a Hub dataset id"),
    (["--from-release", ROOT / "tables" / "wh.csv"], "a file; give the folder holding the tables"),
    (["--from-release", ROOT / "tables", "--negatives", ROOT / "tables" / "wh.csv"], "--negatives shapes new"),
    (["--from-release", ROOT / "tables", "--sampling", "table9"], "--sampling shapes new questions"),
    (["--from-release", ROOT / "tables", "--images", ROOT / "nowhere"], "--images"),
    (["--from-release", ROOT / "tables", "--llm-base-url", "http://127.0.0.1:9", "--llm-model", "m"],
     "has no model stages"),
    ([], "one of --source DIR and --sample is required"),
]


@pytest.mark.parametrize("args,message", USAGE, ids=range(len(USAGE)))
def test_bad_usage_is_one_line_and_writes_nothing(tmp_path, args, message):
    run = finer("build", "compre_cap", *args, "--out", tmp_path / "out", "--no-progress")
    one_error_line(run, message)
    assert nothing_written(tmp_path)


def test_tables_without_images_say_how_to_give_them(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "wh.csv").write_bytes((ROOT / "tables" / "wh.csv").read_bytes())
    run = finer("build", "compre_cap", "--from-release", tables, "--out", tmp_path / "out", "--no-progress")
    one_error_line(run, "wh.csv", "field 'image'", "embeds no image: pass --images DIR")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".finer-lock")) == ["tables"]
