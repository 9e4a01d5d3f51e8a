"""A user versions their own rebuild: `finer build --version-label lab.1` gives version 2.1.0+lab.1 (a
PEP 440 local version) in the manifest, the card and the release tag; bad labels are one line."""

import json
import subprocess
import sys

import pytest

from finer_datasets.core.manifest import verify


def finer(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_a_labelled_rebuild_is_versioned_released_and_tagged_as_such(tmp_path):
    out = tmp_path / "mine"
    run = finer("build", "compre_cap", "--sample", "--out", str(out), "--version-label", "lab.1", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "FINER-CompreCap 2.1.0+lab.1" in run.stdout
    manifest = verify(out)
    assert manifest["version"] == "2.1.0+lab.1"
    assert manifest["release_notes"].startswith("FINER-CompreCap 2.1.0+lab.1\n\nA local rebuild of 2.1.0 labelled 'lab.1'")
    card = (out / "README.md").read_text("utf-8")
    assert "--version-label lab.1" in card and "v2.1.0+lab.1" in card
    assert "FINER-CompreCap 2.1.0+lab.1; data sha256:" in card
    repo = tmp_path / "releases"
    done = finer("release", str(out), "--to", str(repo))
    assert done.returncode == 0, done.stderr
    tags = subprocess.run(["git", "-C", str(repo), "tag", "--list"], capture_output=True, text=True).stdout.split()
    assert tags == ["v2.1.0+lab.1"]


@pytest.mark.parametrize("label", ["Lab", "lab-1", "a..b", ".x", "x" * 65, "lab 1"])
def test_a_bad_label_is_one_line_and_writes_nothing(tmp_path, label):
    out = tmp_path / "mine"
    run = finer("build", "compre_cap", "--sample", "--out", str(out), "--version-label", label, "--no-progress")
    assert run.returncode == 2
    assert run.stderr.startswith("error: --version-label") and run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr and not out.exists()


def test_the_recorded_command_keeps_the_label_so_a_replay_gives_the_same_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert finer("build", "compre_cap", "--sample", "--out", str(out), "--version-label", "lab.1",
                     "--no-progress").returncode == 0
    assert json.loads((a / "manifest.json").read_text()) == json.loads((b / "manifest.json").read_text())
    assert (a / "README.md").read_bytes() == (b / "README.md").read_bytes()
