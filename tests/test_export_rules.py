"""`finer export` from the command line: the wrong kind of dataset is one line (exit 2) before anything
is written; --out is never inside the dataset, never a file or folder an export did not write, and an
earlier export is replaced only with --overwrite (an option the command has)."""

import pytest

from finer_datasets.core.manifest import verify
from test_release import finer
from test_tuning_build import build_tuning

BENCHMARK_FORMATS = ("vlmevalkit", "official-csv", "lmms-eval")


@pytest.fixture(scope="module")
def tuning(tmp_path_factory):
    return build_tuning(tmp_path_factory.mktemp("tuning") / "tuning").out


def one_line_error(run, code, *needles):
    assert run.returncode == code, (run.returncode, run.stderr)
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    for needle in needles:
        assert needle in run.stderr, (needle, run.stderr)


@pytest.mark.parametrize("fmt", BENCHMARK_FORMATS)
def test_a_preference_dataset_is_refused_by_the_benchmark_exports(tuning, tmp_path, fmt):
    out = tmp_path / ("tasks" if fmt == "lmms-eval" else "x.tsv")
    one_line_error(finer("export", tuning, "--format", fmt, "--out", out), 2,
                   f"{tuning} is a FINER-Tuning preference dataset (DPO tuples) (views: images, trl, sft)",
                   f"--format {fmt} needs a FINER benchmark of MCQ pairs")
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["llamafactory", "llamafactory-sft"])
def test_a_benchmark_is_refused_by_the_llamafactory_exports(sample_build, tmp_path, fmt):
    one_line_error(finer("export", sample_build.out, "--format", fmt, "--out", tmp_path / "lf"), 2,
                   f"{sample_build.out} is a FINER benchmark of MCQ pairs (views: images, pairs, questions, positions)",
                   f"--format {fmt} needs a FINER-Tuning preference dataset")
    assert list(tmp_path.iterdir()) == []


def test_every_option_an_export_message_names_exists(sample_build, tuning, tmp_path):
    help_text = finer("export", "--help").stdout
    runs = []
    for dataset, fmt, out in ((sample_build.out, "vlmevalkit", tmp_path / "a.tsv"),
                              (sample_build.out, "lmms-eval", tmp_path / "tasks"),
                              (tuning, "llamafactory", tmp_path / "lf")):
        assert finer("export", dataset, "--format", fmt, "--out", out).returncode == 0
        runs.append(finer("export", dataset, "--format", fmt, "--out", out))
    for run in runs:
        one_line_error(run, 6, "already exists (pass --overwrite to replace that previous export)")
        options = {word.strip("(),;") for word in run.stderr.split() if word.startswith(("--", "(--"))}
        assert options and all(option in help_text for option in options), (options, run.stderr)


def test_overwrite_replaces_a_previous_export_and_nothing_else(sample_build, tuning, tmp_path):
    previous = tmp_path / "FINER.tsv"
    assert finer("export", sample_build.out, "--format", "vlmevalkit", "--out", previous).returncode == 0
    first = previous.read_bytes()
    again = finer("export", sample_build.out, "--format", "vlmevalkit", "--out", previous, "--overwrite",
                  "--setting", "wh")
    assert again.returncode == 0, again.stderr
    assert previous.read_bytes() != first and "wrote 130 questions" in again.stdout
    mine = tmp_path / "mine.tsv"
    mine.write_text("my notes\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "utils.py").write_text("# mine\n")
    lf = tmp_path / "lf-mine"
    lf.mkdir()
    (lf / "keep.txt").write_text("keep")
    cases = [(sample_build.out, "vlmevalkit", mine, "it does not start with the vlmevalkit export's header"),
             (sample_build.out, "official-csv", previous, "it does not start with the official-csv export's header"),
             (sample_build.out, "lmms-eval", notes, "it holds no previous export"),
             (tuning, "llamafactory", lf, "it holds no previous export")]
    for dataset, fmt, out, message in cases:
        one_line_error(finer("export", dataset, "--format", fmt, "--out", out, "--overwrite"), 6,
                       f"--overwrite refused for {out}: {message}", "choose another --out or move it away")
    assert mine.read_text() == "my notes\n" and (notes / "utils.py").read_text() == "# mine\n"
    assert [p.name for p in notes.iterdir()] == ["utils.py"] and [p.name for p in lf.iterdir()] == ["keep.txt"]
    assert previous.read_text().startswith("index\timage")
    tasks = tmp_path / "tasks"
    assert finer("export", sample_build.out, "--format", "lmms-eval", "--out", tasks).returncode == 0
    assert finer("export", sample_build.out, "--format", "lmms-eval", "--out", tasks, "--overwrite").returncode == 0


def test_an_export_never_writes_inside_the_dataset(sample_build, tuning):
    for dataset, fmt, out in ((sample_build.out, "vlmevalkit", sample_build.out / "FINER.tsv"),
                              (sample_build.out, "official-csv", sample_build.out / "data" / "x.csv"),
                              (sample_build.out, "lmms-eval", sample_build.out / "tasks"),
                              (sample_build.out, "lmms-eval", sample_build.out.parent),
                              (tuning, "llamafactory", tuning / "lf")):
        one_line_error(finer("export", dataset, "--format", fmt, "--out", out), 6,
                       "is inside the dataset folder", "choose a path outside it")
    verify(sample_build.out)
    verify(tuning)


def test_a_file_where_a_folder_goes_and_a_folder_where_a_file_goes(sample_build, tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(finer("export", sample_build.out, "--format", "lmms-eval", "--out", tmp_path / "file"), 6,
                   "is an existing file; --format lmms-eval writes a folder")
    one_line_error(finer("export", sample_build.out, "--format", "vlmevalkit", "--out", tmp_path), 6,
                   "is a folder; --format vlmevalkit writes a file")


def test_setting_is_refused_where_it_does_not_apply(sample_build, tuning, tmp_path):
    one_line_error(finer("export", tuning, "--format", "llamafactory", "--out", tmp_path / "lf", "--setting", "wh"), 2,
                   "--setting does not apply to --format llamafactory")
    one_line_error(finer("export", sample_build.out, "--format", "lmms-eval", "--out", tmp_path / "t", "--setting",
                         "wh"), 2, "--setting does not apply to --format lmms-eval")
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_mode_the_umask_gives_not_a_temp_files(sample_build, tuning, tmp_path):
    """Temp files and folders (mkstemp / mkdtemp) are private (0600 / 0700); what a command leaves as
    its output must have the mode a plain write gives under the user's umask (here 022)."""
    import os
    import stat
    import subprocess
    import sys

    from test_cli_score import write_predictions

    def run(*args):
        done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600,
                              preexec_fn=lambda: os.umask(0o022))
        assert done.returncode == 0, done.stderr

    cli = ("-m", "finer_datasets.cli")
    run(*cli, "export", sample_build.out, "--format", "vlmevalkit", "--out", tmp_path / "q.tsv")
    run(*cli, "export", sample_build.out, "--format", "official-csv", "--out", tmp_path / "official")
    run(*cli, "export", sample_build.out, "--format", "lmms-eval", "--out", tmp_path / "tasks")
    run(*cli, "export", tuning, "--format", "llamafactory", "--out", tmp_path / "lf")
    answers = tmp_path / "answers.jsonl"
    write_predictions(answers, sample_build, lambda q: q["answer"])
    run(*cli, "score", sample_build.out, "--predictions", answers, "--out", tmp_path / "report", "--bootstrap", "0")
    run("-m", "finer_datasets.testing.tiny_vlm", "--out", tmp_path / "tiny")
    outputs = [tmp_path / name for name in ("q.tsv", "official", "tasks", "lf", "report", "tiny")]
    checked = [p for out in outputs for p in (out, *out.rglob("*"))]
    wrong = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in checked
             if stat.S_IMODE(p.stat().st_mode) != (0o755 if p.is_dir() else 0o644)}
    assert len(checked) > 20 and wrong == {}
