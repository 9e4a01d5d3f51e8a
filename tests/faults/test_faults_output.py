"""Where a build writes, and what a kill, Ctrl-C, a full or read-only disk or a second build leave."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from faultkit import finer_process, leftovers, tree
from finer_datasets.testing.builder_tests import folder_files

SAMPLE = ["build", "compre_cap", "--sample", "--no-progress"]


@pytest.fixture
def built(tmp_path, make_source, finer):
    """A source and a good previous build of it."""
    src = make_source()
    out = tmp_path / "out"
    assert finer("build", "compre_cap", "--source", src, "--out", out, "--no-progress").code == 0
    return src, out


def test_out_equal_to_the_source_is_refused(built, finer):
    src, _ = built
    before = tree(src)
    finer("build", "compre_cap", "--source", src, "--out", src, "--overwrite").clean_failure(6, "--out", "input")
    assert tree(src) == before


def test_out_inside_the_source_is_refused(built, finer):
    src, _ = built
    before = tree(src)
    finer("build", "compre_cap", "--source", src, "--out", src / "images" / "out").clean_failure(6, "inside the source")
    assert tree(src) == before


def test_out_containing_the_source_is_refused_even_with_overwrite(built, finer):
    src, _ = built
    before = tree(src.parent)
    finer("build", "compre_cap", "--source", src, "--out", src.parent, "--overwrite").clean_failure(6, "contains the input")
    assert tree(src.parent) == before


def test_out_through_a_symlink_to_the_source_is_refused(built, finer, tmp_path):
    src, _ = built
    link = tmp_path / "link"
    link.symlink_to(src)
    finer("build", "compre_cap", "--source", src, "--out", link, "--overwrite").clean_failure(6, "input")


def test_out_home_is_refused(built, finer, tmp_path, monkeypatch):
    src, _ = built
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / "notes" / "thesis.tex").write_text("precious")
    monkeypatch.setenv("HOME", str(home))
    before = tree(home)
    finer("build", "compre_cap", "--source", src, "--out", home, "--overwrite").clean_failure(6, "home folder")
    assert tree(home) == before


def test_out_dot_that_is_not_a_build_is_never_replaced(built, finer, tmp_path, monkeypatch):
    src, _ = built
    work = tmp_path / "work"
    work.mkdir()
    (work / "results.csv").write_text("1,2,3")
    monkeypatch.chdir(work)
    finer("build", "compre_cap", "--source", src, "--out", ".").clean_failure(6, "already exists")
    finer("build", "compre_cap", "--source", src, "--out", ".", "--overwrite").clean_failure(6, "no FINER manifest.json")
    assert (work / "results.csv").read_text() == "1,2,3"


def test_a_previous_build_holding_a_foreign_file_is_not_replaced(built, finer):
    src, out = built
    (out / "my_notes.txt").write_text("mine")
    before = tree(out)
    finer("build", "compre_cap", "--source", src, "--out", out, "--overwrite").clean_failure(6, "my_notes.txt")
    assert tree(out) == before


def test_out_that_is_a_file_and_a_transcript_inside_out_are_refused(built, finer, tmp_path):
    src, out = built
    (tmp_path / "file").write_text("x")
    finer("build", "compre_cap", "--source", src, "--out", tmp_path / "file").clean_failure(6, "not a folder")
    finer("build", "compre_cap", "--source", src, "--out", out, "--overwrite", "--transcript", out / "t.sqlite",
          "--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "m").clean_failure(6, "contains the input")


def test_an_empty_existing_folder_may_be_built_into(built, finer, tmp_path):
    src, _ = built
    (tmp_path / "empty").mkdir()
    assert finer("build", "compre_cap", "--source", src, "--out", tmp_path / "empty", "--no-progress").code == 0


# --- kills, interrupts, concurrency -------------------------------------------------------------------------

def test_twenty_sigkills_at_random_points_then_reruns_give_the_uninterrupted_build(tmp_path):
    reference = tmp_path / "reference"
    started = time.monotonic()
    assert finer_process(*SAMPLE, "--out", reference, "--shard-samples", "2").code == 0
    duration = time.monotonic() - started
    out = tmp_path / "out"
    rng = random.Random(20)
    killed_while_building = 0
    for _ in range(20):
        cmd = [sys.executable, "-m", "finer_datasets.cli", *SAMPLE, "--out", str(out), "--shard-samples", "2", "--overwrite"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.1) * duration)
        killed_while_building += proc.poll() is None and any(".finer-build-" in p.name for p in tmp_path.iterdir())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert finer_process(*SAMPLE, "--out", out, "--shard-samples", "2", "--overwrite").code == 0
        assert folder_files(out) == folder_files(reference)
        assert leftovers(tmp_path) == []
    assert killed_while_building >= 3, "too few kills landed while a build was writing"


def test_a_kill_between_the_two_renames_of_the_fallback_swap_is_recovered(tmp_path):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "manifest.json").write_text('{"format": "finer-manifest/2", "files": [{"path": "data/a"}]}')
    (out / "data" / "a").write_text("previous")
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from finer_datasets.core.output import staged_output
        with staged_output(Path({str(out)!r}), overwrite=True, exchange=False) as staging:
            (staging / "manifest.json").write_text('{{"format": "finer-manifest/2", "files": []}}')
            if sys.argv[1] == "fail":
                raise SystemExit(3)
    """)
    crashed = subprocess.run([sys.executable, "-c", script, "ok"], env={**os.environ, "FINER_CRASH_AT": "between-renames"})
    assert crashed.returncode == -signal.SIGKILL
    [work] = leftovers(tmp_path)  # the window the recovery covers: the previous output inside the run's staging folder
    assert not out.exists() and work.startswith(".out.finer-build-") and (tmp_path / work / "old" / "data" / "a").exists()
    # the next run into that output restores the previous one first (here it then fails: nothing else changes)
    assert subprocess.run([sys.executable, "-c", script, "fail"]).returncode == 3
    assert (out / "data" / "a").read_text() == "previous" and leftovers(tmp_path) == []


def test_a_kill_right_after_the_exchange_leaves_the_new_build_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "out"
    assert finer_process(*SAMPLE, "--out", out, "--seed", "1").code == 0
    crashed = finer_process(*SAMPLE, "--out", out, "--overwrite", env={"FINER_CRASH_AT": "after-exchange"})
    assert crashed.code == -signal.SIGKILL
    assert finer_process("verify", out).code == 0 and '"seed": 0' in (out / "manifest.json").read_text()
    [work] = leftovers(tmp_path)  # the previous output, not yet removed
    assert work.startswith(".out.finer-build-")
    assert finer_process(*SAMPLE, "--out", out, "--overwrite").code == 0
    assert leftovers(tmp_path) == []


def test_two_builds_into_one_out_at_once_are_serialised(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "finer_datasets.cli", *SAMPLE, "--out", str(out), "--overwrite", "--shard-samples", "1"]
    procs = [subprocess.Popen([*cmd, "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert any("waiting for its lock" in err for _, err in results)  # the second one waited
    assert finer_process("verify", out).code == 0 and leftovers(tmp_path) == []


def test_ctrl_c_exits_130_removes_the_staging_folder_and_keeps_the_previous_output(tmp_path):
    from finer_datasets.testing.scripted import ScriptedServer

    out = tmp_path / "out"
    assert finer_process(*SAMPLE, "--out", out).code == 0
    before = tree(out)
    with ScriptedServer(delay=0.2) as server:
        cmd = [sys.executable, "-m", "finer_datasets.cli", *SAMPLE, "--out", str(out), "--overwrite",
               "--llm-base-url", server.url, "--llm-model", "scripted", "--llm-concurrency", "2"]
        # a shell's background job starts with Ctrl-C ignored and a child inherits that (CI run with &
        # did): give the build the terminal's default, as a user at the keyboard has it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while server.requests < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: interrupted")
    assert tree(out) == before and leftovers(tmp_path) == []


# --- full and read-only disks (a tmpfs in a user namespace) -----------------------------------------------

def _unshare_ok() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True).returncode == 0


needs_tmpfs = pytest.mark.skipif(not _unshare_ok(), reason="needs `unshare -rm` to mount a small tmpfs (util-linux)")


def _in_tmpfs(tmp_path: Path, size: str, script: str) -> subprocess.CompletedProcess:
    mount = tmp_path / "mnt"
    mount.mkdir(exist_ok=True)
    finer = f"{sys.executable} -m finer_datasets.cli"
    body = f"mount -t tmpfs -o size={size} tmpfs {mount} && " + script.format(finer=finer, mnt=mount)
    return subprocess.run(["unshare", "-rm", "sh", "-c", body], capture_output=True, text=True, timeout=300)


@needs_tmpfs
def test_a_full_disk_is_a_clean_error_and_the_previous_output_survives(tmp_path, dummy_dir):
    script = ("{finer} build compre_cap --source " + str(dummy_dir) + " --out {mnt}/out --no-progress >/dev/null && "
              "sha256sum {mnt}/out/data/* > {mnt}/before && "
              "{finer} build compre_cap --sample --out {mnt}/out --overwrite --no-progress; echo EXIT=$?; "
              "sha256sum -c {mnt}/before >/dev/null && echo UNCHANGED; ls -a {mnt}")
    run = _in_tmpfs(tmp_path, "300k", script)
    assert "EXIT=6" in run.stdout, run.stdout + run.stderr
    assert "No space left on device" in run.stderr and "Traceback" not in run.stderr
    assert "UNCHANGED" in run.stdout and ".finer-build" not in run.stdout


@needs_tmpfs
def test_a_read_only_output_location_is_a_clean_error(tmp_path):
    script = ("mount -o remount,ro {mnt} && {finer} build compre_cap --sample --out {mnt}/out --no-progress; "
              "echo EXIT=$?")
    run = _in_tmpfs(tmp_path, "1m", script)
    assert "EXIT=6" in run.stdout, run.stdout + run.stderr
    assert "Read-only file system" in run.stderr and "Traceback" not in run.stderr


def test_a_reader_that_closes_stdout_early_gets_no_traceback():
    code = ("import sys; from finer_datasets.cli import guarded\n"
            "def work():\n    raise BrokenPipeError(32, 'Broken pipe')  # what print() raises after `| head -1` closed\n"
            "sys.exit(guarded(work))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 141 and done.stderr == ""
