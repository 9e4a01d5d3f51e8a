"""The output guard on every command that writes (issue 19): exports, score, merge and the baselines never
write into a dataset, over a file the user wrote or through a link planted at any name, and say so in one line.

Every case: the exit status, exactly one ``error:`` line, no traceback, every file under the test's folder
byte-identical but the intended output, the datasets still verifying, and a planted link's target untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faultkit import finer_process, leftovers, tree

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ds(built):
    return built


@pytest.fixture
def answers(oracle):
    return oracle


@pytest.fixture
def outside(tmp_path):
    """A folder of the user's that planted links point at: it must never change."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("precious\n")
    return folder


@pytest.fixture(scope="module")
def tuning(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuning") / "tuning"
    assert finer_process("build", "tuning", "--sample", "--out", out, "--no-progress").code == 0
    return out


def unchanged_but(root: Path, before: dict[str, str], *outputs: str) -> None:
    """Every file under ``root`` as ``before``, except what lies at or under ``outputs``."""
    def keep(tree_: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in tree_.items() if not any(k == o or k.startswith(o + "/") for o in outputs)}

    assert keep(tree(root)) == keep(before)


def verifies(finer, *datasets: Path) -> None:
    for folder in datasets:
        assert finer("verify", folder).code == 0


# ------------------------------------------------------------------------------------- file exports


@pytest.mark.parametrize("fmt", ["vlmevalkit", "official-csv"])
def test_a_file_export_never_replaces_a_user_file_a_dataset_file_or_a_link(ds, finer, tmp_path, outside, fmt):
    (tmp_path / "user.tsv").write_text("my own table\n")
    other = tmp_path / "other"
    shutil.copytree(ds, other)
    (tmp_path / "link.tsv").symlink_to(outside / "precious.txt")
    before = tree(tmp_path)
    finer("export", ds, "--format", fmt, "--out", tmp_path / "user.tsv").clean_failure(6, "already exists")
    finer("export", ds, "--format", fmt, "--out", tmp_path / "user.tsv", "--overwrite").clean_failure(6, "refused")
    finer("export", ds, "--format", fmt, "--out", ds / "manifest.json", "--overwrite").clean_failure(
        6, "inside the dataset folder")
    finer("export", ds, "--format", fmt, "--out", other / "data" / "x.tsv").clean_failure(6, "inside the dataset")
    finer("export", ds, "--format", fmt, "--out", tmp_path / "link.tsv", "--overwrite").clean_failure(6, "symbolic link")
    unchanged_but(tmp_path, before)
    verifies(finer, ds, other)


def test_a_file_export_leaves_files_and_links_at_old_temp_names_alone(ds, finer, tmp_path, outside):
    (tmp_path / "q.tsv.tmp").write_text("an unrelated file of mine\n")
    for name in (".q.tsv.finer-tmp", f".q.tsv.{os.getpid()}.finer-tmp"):
        (tmp_path / name).symlink_to(outside / "precious.txt")
    before = tree(tmp_path)
    assert finer("export", ds, "--format", "vlmevalkit", "--out", tmp_path / "q.tsv").code == 0
    assert finer("export", ds, "--format", "vlmevalkit", "--out", tmp_path / "q.tsv", "--overwrite").code == 0
    unchanged_but(tmp_path, before, "q.tsv")
    assert (tmp_path / "q.tsv").read_text().startswith("index\timage\t")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".finer-tmp") and not p.is_symlink()]


# ------------------------------------------------------------------------------------- folder exports


def test_the_lmms_eval_export_is_guarded(ds, finer, tmp_path, outside, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "utils.py").write_text("# my own lmms-eval utils\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    before = tree(tmp_path)
    for out, extra, culprit in ((ds / "tasks", (), "inside the dataset folder"),
                                (ds.parent, (), "inside the dataset folder"),
                                (mine, (), "already exists"),
                                (mine, ("--overwrite",), "no previous export"),
                                (home, ("--overwrite",), "home folder"),
                                (tmp_path / "linked", ("--overwrite",), "symbolic link")):
        finer("export", ds, "--format", "lmms-eval", "--out", out, *extra).clean_failure(6, culprit)
    unchanged_but(tmp_path, before)
    verifies(finer, ds)


def test_lmms_eval_staging_names_are_never_followed(ds, finer, tmp_path, outside):
    tasks = tmp_path / "tasks"
    for name in (".tasks.finer-build", ".tasks.finer-old", ".tasks.finer-build-planted"):
        (tmp_path / name).symlink_to(outside, target_is_directory=True)
    (outside / "old").mkdir()  # what a "restore" of a planted staging folder would take
    (outside / "old" / "utils.py").write_text("# not ours\n")
    before = tree(tmp_path)
    assert finer("export", ds, "--format", "lmms-eval", "--out", tasks).code == 0
    assert finer("export", ds, "--format", "lmms-eval", "--out", tasks, "--overwrite").code == 0
    unchanged_but(tmp_path, before, "tasks", ".tasks.finer-lock")
    assert "finer_datasets.eval.lmms" in (tasks / "utils.py").read_text()
    (tasks / "utils.py.tmp").symlink_to(outside / "precious.txt")  # a link planted inside a previous export
    before = tree(tmp_path)
    finer("export", ds, "--format", "lmms-eval", "--out", tasks, "--overwrite").clean_failure(6, "utils.py.tmp")
    unchanged_but(tmp_path, before)


def test_the_llamafactory_export_is_guarded(tuning, finer, tmp_path, outside):
    (tmp_path / "a-file").write_text("mine\n")
    theirs = tmp_path / "my-lf-data"  # a LLaMA-Factory data folder of the user's
    theirs.mkdir()
    (theirs / "dataset_info.json").write_text("{}\n")
    (theirs / "mine.jsonl").write_text("{}\n")
    for name in (".lf.finer-export", ".lf.finer-old", ".lf.finer-build-planted"):
        (tmp_path / name).symlink_to(outside, target_is_directory=True)
    before = tree(tmp_path)
    for fmt in ("llamafactory", "llamafactory-sft"):
        finer("export", tuning, "--format", fmt, "--out", tmp_path / "a-file").clean_failure(6, "is an existing file")
        finer("export", tuning, "--format", fmt, "--out", theirs, "--overwrite").clean_failure(6, "no previous export")
    unchanged_but(tmp_path, before)
    assert finer("export", tuning, "--format", "llamafactory", "--out", tmp_path / "lf").code == 0
    assert finer("export", tuning, "--format", "llamafactory-sft", "--out", tmp_path / "lf", "--overwrite").code == 0
    unchanged_but(tmp_path, before, "lf", ".lf.finer-lock")
    verifies(finer, tuning)


# ------------------------------------------------------------------------------------- score


def test_score_never_writes_into_a_dataset_or_over_a_users_report(ds, finer, tmp_path, answers, outside):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my own report\n")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "report.md").symlink_to(outside / "precious.txt")
    before = tree(tmp_path)
    for out, culprit in ((ds, "is a dataset folder"), (ds / "reports", "inside the dataset folder"),
                         (mine, "report.md, not written by a FINER scoring run"), (tmp_path / "linked", "symbolic link")):
        finer("score", ds, "--predictions", answers, "--out", out, "--bootstrap", "0").clean_failure(6, culprit)
    unchanged_but(tmp_path, before)
    verifies(finer, ds)


def test_score_replaces_its_own_report_and_never_follows_old_temp_names(ds, finer, tmp_path, answers, outside):
    report = tmp_path / "report"
    assert finer("score", ds, "--predictions", answers, "--out", report, "--bootstrap", "0").code == 0
    for name in ("report.md.tmp", "report.json.tmp", "run.json.tmp", "accuracy_by_k.png.tmp"):
        (report / name).symlink_to(outside / "precious.txt")
    before = tree(tmp_path)
    assert finer("score", ds, "--predictions", answers, "--out", report, "--bootstrap", "0").code == 0
    unchanged_but(tmp_path, before, *(f"report/{name}" for name in ("report.md", "report.json", "run.json",
                                                                      "pairs.jsonl", "accuracy_by_k.png",
                                                                      "fp_fn_rates.png")))
    assert not leftovers(report)


def test_baselines_score_never_writes_into_a_dataset_or_through_a_link(ds, tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").symlink_to(outside / "precious.txt")
    before = tree(tmp_path)
    for out, culprit in ((ds, "is a dataset folder"), (ds / "run", "inside the dataset folder"), (run, "symbolic link")):
        done = subprocess.run([sys.executable, str(ROOT / "baselines" / "score.py"), str(ds), "--engine", "openai",
                               "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert done.returncode == 6 and len(errors) == 1 and culprit in errors[0], done.stderr
        assert "Traceback" not in done.stderr
    unchanged_but(tmp_path, before)


def test_train_dpo_output_dir_is_guarded(ds, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "baselines"))
    import train_dpo

    tuples = ROOT / "tests" / "fixtures" / "tuning_trl" / "tuples.jsonl"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    before = tree(tmp_path)
    for out, culprit in ((ds, "is a dataset folder"), (ds / "adapter", "inside the dataset folder"),
                         (mine, "was not written by baselines/train_dpo.py")):
        capsys.readouterr()
        assert train_dpo.cli(["--dataset", str(tuples), "--output_dir", str(out)]) == 6
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and culprit in errors[0], errors
    unchanged_but(tmp_path, before)


# ------------------------------------------------------------------------------------- builds and merges


def test_links_planted_at_a_builds_staging_names_are_never_followed_or_restored(finer, tmp_path, outside):
    (outside / "old").mkdir()
    (outside / "old" / "manifest.json").write_text('{"format": "finer-manifest/2", "files": []}\n')
    for name in (".out.finer-build", ".out.finer-old", ".out.finer-build-planted1"):
        (tmp_path / name).symlink_to(outside, target_is_directory=True)
    before = tree(tmp_path)
    assert finer("build", "compre_cap", "--sample", "--out", tmp_path / "out", "--no-progress").code == 0
    unchanged_but(tmp_path, before, "out", ".out.finer-lock")
    assert finer("verify", tmp_path / "out").code == 0
    (tmp_path / ".o2.finer-lock").symlink_to(outside / "precious.txt")
    before = tree(tmp_path)
    finer("build", "compre_cap", "--sample", "--out", tmp_path / "o2", "--no-progress").clean_failure(6, "lock file")
    unchanged_but(tmp_path, before)


def test_a_link_planted_at_the_default_transcript_name_is_never_written_through(finer, tmp_path, outside):
    """SQLite would write through a link at OUT.transcript.sqlite: refused before any model is contacted."""
    (tmp_path / "out.transcript.sqlite").symlink_to(outside / "precious.txt")
    before = tree(tmp_path)
    finer("build", "compre_cap", "--sample", "--out", tmp_path / "out", "--llm-base-url", "http://127.0.0.1:9/v1",
          "--llm-model", "m", "--no-progress").clean_failure(6, "is a symbolic link")
    unchanged_but(tmp_path, before)


def test_merge_refuses_a_bad_out_in_one_line(tuning, finer, tmp_path, monkeypatch):
    from finer_datasets import get_builder

    source = get_builder("tuning").sample_dir()
    parts = []
    for i in (1, 2):
        parts.append(tmp_path / f"p{i}")
        assert finer("build", "tuning", "--sample", "--part", f"{i}/2", "--out", parts[-1], "--no-progress").code == 0
    (tmp_path / "a-file").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    for out, culprit in ((".", "contains the input"), (tmp_path, "contains the input"),
                         (parts[0] / "merged", "inside the source folder"), (tmp_path / "a-file", "not a folder"),
                         (tuning / "merged", "inside the dataset folder")):
        finer("merge", "tuning", "--source", source, "--parts", *parts, "--out", out).clean_failure(6, culprit)
    unchanged_but(tmp_path, before)
    verifies(finer, *parts, tuning)


# ------------------------------------------------------------------------------------- release


def test_release_refuses_a_link_and_a_repository_that_is_no_release(ds, finer, tmp_path, outside):
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text("print('mine')\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x", "GIT_COMMITTER_NAME": "u",
           "GIT_COMMITTER_EMAIL": "u@x"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "mine"]):
        subprocess.run(["git", "-C", str(code), *args], check=True, env=env)
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    other = tmp_path / "other"
    shutil.copytree(ds, other)
    before = tree(tmp_path)
    finer("release", ds, "--to", code).clean_failure(4, "not a release repository")
    finer("release", ds, "--to", tmp_path / "linked").clean_failure(6, "symbolic link")
    finer("release", ds, "--to", other / "repo").clean_failure(6, "inside the dataset folder")
    unchanged_but(tmp_path, before)
    verifies(finer, ds, other)
