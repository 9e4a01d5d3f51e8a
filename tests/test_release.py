"""Releases as git history: one commit and one annotated tag per version, versions immutable."""

import subprocess
from pathlib import Path

import pytest
from finer_datasets.builders.compre_cap.builder import CompreCap

from finer_datasets import VerificationError, build
from finer_datasets.cli import main
from finer_datasets.hub.release import ReleaseError, release


class CompreCapNext(CompreCap):
    """The same builder one version later (what bumping VERSION and RELEASE_NOTES.md gives)."""

    @property
    def version(self) -> str:
        return "2.1.0"

    @property
    def release_notes(self) -> str:
        return "## 2.1.0\n\nSecond release: reshuffled options (seed 1).\n\n" + super().release_notes


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


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
    assert (first.tag, git(repo, "branch", "--show-current")) == ("v2.0.0", "main")
    assert tree_files(repo) == tree_files(v1)
    second = release(v2, to=repo)
    assert second.tag == "v2.1.0" and second.commit != first.commit
    assert git(repo, "rev-list", "--count", "main") == "2"
    assert git(repo, "rev-parse", "v2.0.0^{commit}") == first.commit
    assert git(repo, "rev-parse", "v2.1.0^{commit}") == second.commit
    assert tree_files(repo) == tree_files(v2)
    message = git(repo, "tag", "-l", "--format=%(contents)", "v2.1.0")
    assert message.startswith("FINER-CompreCap 2.1.0") and "Second release" in message
    assert git(repo, "cat-file", "-t", "v2.1.0") == "tag"  # annotated


def test_release_notes_accumulate_in_the_card(two_versions):
    _, v2, _ = two_versions
    card = (v2 / "README.md").read_text()
    assert "## 2.1.0" not in card.split("## Release notes", 1)[0]
    notes = card.split("## Release notes", 1)[1]
    assert "Second release" in notes and "First release" in notes
    assert 'revision="v2.1.0"' in card


def test_a_released_version_is_immutable(two_versions, capsys):
    v1, _, root = two_versions
    repo = root / "immutable"
    release(v1, to=repo)
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(ReleaseError, match="already has tag v2.0.0"):
        release(v1, to=repo)
    assert main(["release", str(v1), "--to", str(repo)]) == 4
    assert "immutable" in capsys.readouterr().err
    assert git(repo, "rev-parse", "HEAD") == head


def test_a_changed_folder_is_not_released(tmp_path, builder, sample_dir):
    out = build(builder, source=sample_dir, out=tmp_path / "b", progress=False).out
    (out / "README.md").write_text("edited")
    with pytest.raises(VerificationError):
        release(out, to=tmp_path / "repo")
    assert not (tmp_path / "repo" / ".git").exists() or git(tmp_path / "repo", "tag") == ""
