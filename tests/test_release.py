"""Releases as git history: one commit and one annotated tag per version, versions immutable and
ordered (PEP 440, local labels included), one dataset per repository, and a summary of what changed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from finer_datasets.builders.compre_cap.builder import CompreCap

from finer_datasets import VerificationError, build
from finer_datasets.cli import main
from finer_datasets.errors import RecordValidationError
from finer_datasets.hub.release import ReleaseError, release
from finer_datasets.hub.versions import next_versions, parse_version


class CompreCapNext(CompreCap):
    """The same builder one version later (what bumping VERSION and RELEASE_NOTES.md gives)."""

    @property
    def version(self) -> str:
        return "2.2.0"

    @property
    def release_notes(self) -> str:
        return "## 2.2.0\n\nSecond release: reshuffled options (seed 1).\n\n" + super().release_notes


def compre_cap_at(version: str) -> CompreCap:
    """CompreCap with its VERSION file saying ``version``."""

    class Bumped(CompreCap):
        @property
        def version(self) -> str:
            return version

    return Bumped()


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def finer(*args, env=None):
    """The command line in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def repo_state(repo):
    """Everything a refused release must leave as it was: HEAD, the tags, the working tree."""
    return git(repo, "rev-parse", "HEAD"), git(repo, "tag", "--list"), tree_files(repo)


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, sample_build, sample_dir):
    root = tmp_path_factory.mktemp("release")
    v2 = build(CompreCapNext(), source=sample_dir, out=root / "v2", seed=1, progress=False)
    return sample_build.out, v2.out, root


def tree_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_successive_versions_become_commits_and_tags(two_versions):
    v1, v2, root = two_versions
    repo = root / "repo"
    first = release(v1, to=repo)
    assert (first.tag, git(repo, "branch", "--show-current")) == ("v2.1.0", "main")
    assert tree_files(repo) == tree_files(v1)
    second = release(v2, to=repo)
    assert second.tag == "v2.2.0" and second.commit != first.commit
    assert git(repo, "rev-list", "--count", "main") == "2"
    assert git(repo, "rev-parse", "v2.1.0^{commit}") == first.commit
    assert git(repo, "rev-parse", "v2.2.0^{commit}") == second.commit
    assert tree_files(repo) == tree_files(v2)
    message = git(repo, "tag", "-l", "--format=%(contents)", "v2.2.0")
    assert message.startswith("FINER-CompreCap 2.2.0") and "Second release" in message
    assert git(repo, "cat-file", "-t", "v2.2.0") == "tag"  # annotated


def test_release_notes_accumulate_in_the_card(two_versions):
    _, v2, _ = two_versions
    card = (v2 / "README.md").read_text()
    assert "## 2.2.0" not in card.split("## Release notes", 1)[0]
    notes = card.split("## Release notes", 1)[1]
    assert "Second release" in notes and "First release" in notes
    assert 'revision="v2.2.0"' in card


@pytest.fixture(scope="module")
def reshuffled(tmp_path_factory, builder, sample_dir):
    """Version 2.1.0 again, built with seed 1: the same version number, different content."""
    return build(builder, source=sample_dir, out=tmp_path_factory.mktemp("seed1") / "compre_cap", seed=1,
                 progress=False).out


def test_a_released_version_is_immutable(two_versions, reshuffled, capsys):
    v1, _, root = two_versions
    repo = root / "immutable"
    release(v1, to=repo)
    before = repo_state(repo)
    again = release(v1, to=repo)  # the same content again: nothing to do
    assert (again.created, again.tag, again.commit) == (False, "v2.1.0", before[0])
    assert main(["release", str(v1), "--to", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "v2.1.0 is already released" in out and "identical content" in out and "nothing to do" in out
    with pytest.raises(ReleaseError, match="v2.1.0 is already released .* with different content"):
        release(reshuffled, to=repo)
    assert main(["release", str(reshuffled), "--to", str(repo)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "immutable: bump VERSION to 2.1.1, 2.2.0 or 3.0.0" in err
    assert "data/test-00000.tar" in err  # names what differs
    assert repo_state(repo) == before


def test_release_prints_what_changed_since_the_previous_tag(two_versions, tmp_path):
    v1, v2, _ = two_versions
    repo = tmp_path / "repo"
    first = finer("release", v1, "--to", repo)
    assert first.returncode == 0, first.stderr
    assert "its first release" in first.stdout and "289 added" in first.stdout
    second = finer("release", v2, "--to", repo)
    assert second.returncode == 0, second.stderr
    out = second.stdout
    assert f"old: {repo}@v2.1.0  FINER-CompreCap (compre_cap) 2.1.0" in out
    assert f"new: {v2}  FINER-CompreCap (compre_cap) 2.2.0" in out
    manifests = [json.loads((f / "manifest.json").read_text()) for f in (v1, v2)]
    assert all(m["digest"] in out for m in manifests)
    assert "pairs per setting:" in out and "multi_attr" in out
    assert "289 changed" in out and "changed fields: " in out and "positive.options" in out
    assert "question ids: NOT stable" in out  # seed 1 reshuffles the options: answers by id do not carry over
    assert "bytes per file group:" in out and "shards" in out and "card" in out
    assert out.strip().splitlines()[-1].endswith(f"in {repo}, after v2.1.0")
    assert git(repo, "tag", "--list") == "v2.1.0\nv2.2.0"


def test_a_version_not_above_the_last_release_is_refused(two_versions, tmp_path):
    v1, v2, _ = two_versions
    repo = tmp_path / "repo"
    release(v2, to=repo)
    before = repo_state(repo)
    run = finer("release", v1, "--to", repo)
    assert run.returncode == 4 and run.stderr.count("\n") == 1, run.stderr
    assert "2.1.0 is not above v2.2.0" in run.stderr and "bump VERSION to 2.2.1, 2.3.0 or 3.0.0" in run.stderr
    assert "Traceback" not in run.stderr and repo_state(repo) == before


def test_versions_are_ordered_as_numbers_not_text(tmp_path, sample_dir):
    repo = tmp_path / "repo"
    builds = {v: build(compre_cap_at(v), source=sample_dir, out=tmp_path / v, progress=False).out
              for v in ("2.9.0", "2.10.0", "2.9.1")}
    assert release(builds["2.9.0"], to=repo).tag == "v2.9.0"
    assert release(builds["2.10.0"], to=repo).previous == "v2.9.0"  # as text, 2.10.0 < 2.9.0
    with pytest.raises(ReleaseError, match=r"2\.9\.1 is not above v2\.10\.0.*bump VERSION to 2\.10\.1, 2\.11\.0 or 3\.0\.0"):
        release(builds["2.9.1"], to=repo)


def test_another_dataset_is_refused(two_versions, tmp_path):
    from test_tuning_build import build_tuning

    v1, _, _ = two_versions
    tuning = build_tuning(tmp_path / "tuning").out  # version 1.0.0, below v2.1.0 too: the dataset is said first
    repo = tmp_path / "repo"
    release(v1, to=repo)
    before = repo_state(repo)
    run = finer("release", tuning, "--to", repo)
    assert run.returncode == 4 and run.stderr.count("\n") == 1, run.stderr
    assert "holds releases of FINER-CompreCap (compre_cap, last v2.1.0)" in run.stderr
    assert "is FINER-Tuning (tuning)" in run.stderr and "its own repository" in run.stderr
    assert repo_state(repo) == before


def test_a_repository_whose_tags_hold_no_release_is_refused(two_versions, tmp_path):
    v1, _, _ = two_versions
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "notes.txt").write_text("not a dataset")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "-m", "notes")
    git(repo, "tag", "v1.0.0")
    before = repo_state(repo)
    run = finer("release", v1, "--to", repo)
    assert run.returncode == 4 and run.stderr.count("\n") == 1, run.stderr
    assert "tag v1.0.0 holds no readable manifest.json, so it is no finer release" in run.stderr
    assert repo_state(repo) == before


def test_local_labels_order_as_pep_440():
    packaging = pytest.importorskip("packaging.version")
    texts = ["1.0.0", "2.1.0", "2.1.0+lab", "2.1.0+lab.1", "2.1.0+lab.2", "2.1.0+lab.10", "2.1.0+lab.a",
             "2.1.0+LAB-3", "2.1.0+1", "2.1.0+abc", "2.1.1", "2.10.0", "2.9.0", "10.0.0+x_1"]
    ours = sorted(texts, key=parse_version)
    assert ours == sorted(texts, key=packaging.Version)
    assert ours.index("2.1.0+lab.2") < ours.index("2.1.0+lab.10") and ours.index("2.1.0+lab.a") < ours.index("2.1.0+lab.1")
    assert parse_version("2.1.0+lab.1") == parse_version("2.1.0+LAB_1") and str(parse_version("2.1.0+LAB_1")) == "2.1.0+lab.1"
    for bad in ("2.0", "v2.1.0", "2.1.0rc1", "2.1.0.post1", "2.1.0+", "2.1.0+a..b", "1!2.1.0"):
        assert parse_version(bad) is None, bad
    assert next_versions(parse_version("2.2.0+lab.1")) == ("2.2.1", "2.3.0", "3.0.0")


def test_a_local_release_orders_after_its_public_version(two_versions, reshuffled, tmp_path):
    v1, v2, _ = two_versions
    repo = tmp_path / "repo"
    release(v1, to=repo)
    git(repo, "tag", "-a", "v2.1.0+lab.1", "-m", "a lab's build of 2.1.0", "v2.1.0")
    assert not release(v1, to=repo).created  # 2.1.0 itself is there, as it is
    with pytest.raises(ReleaseError, match="bump VERSION to 2.1.1, 2.2.0 or 3.0.0"):
        release(reshuffled, to=repo)
    assert release(v2, to=repo).previous == "v2.1.0+lab.1"  # 2.1.0 < 2.1.0+lab.1 < 2.2.0


def test_a_labelled_version_is_tagged_with_its_label(tmp_path, sample_dir):
    try:
        labelled = build(compre_cap_at("2.3.0+lab.1"), source=sample_dir, out=tmp_path / "lab", progress=False).out
    except (RecordValidationError, ValueError) as exc:
        pytest.skip(f"builds do not take local version labels yet ({exc})")
    repo = tmp_path / "repo"
    assert release(labelled, to=repo).tag == "v2.3.0+lab.1"
    assert git(repo, "tag", "--list") == "v2.3.0+lab.1"


def test_a_changed_folder_is_not_released(tmp_path, builder, sample_dir):
    out = build(builder, source=sample_dir, out=tmp_path / "b", progress=False).out
    (out / "README.md").write_text("edited")
    with pytest.raises(VerificationError):
        release(out, to=tmp_path / "repo")
    assert not (tmp_path / "repo" / ".git").exists() or git(tmp_path / "repo", "tag") == ""
