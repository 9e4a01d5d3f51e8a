"""Releases as git history: each version of a built folder is a commit on ``main`` tagged ``v<VERSION>``.

``finer release DIR --to REPO_DIR`` lays the built folder into a local git repository exactly as
the Hub repository will hold it; successive versions become successive commits and annotated
tags whose message is that version's release notes. A version is immutable: releasing a version
whose tag already exists is refused.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from finer_datasets.core.manifest import MANIFEST_NAME, verify
from finer_datasets.errors import ReleaseError, UsageError

__all__ = ["ReleaseError", "Release", "release", "version_tag"]

logger = logging.getLogger(__name__)

_IDENTITY = {
    "GIT_AUTHOR_NAME": "finer-datasets",
    "GIT_AUTHOR_EMAIL": "finer-datasets@users.noreply.huggingface.co",
    "GIT_COMMITTER_NAME": "finer-datasets",
    "GIT_COMMITTER_EMAIL": "finer-datasets@users.noreply.huggingface.co",
}


@dataclass(frozen=True)
class Release:
    """What :func:`release` made."""

    repo: Path
    tag: str
    commit: str


def version_tag(version: str) -> str:
    """``1.0.0`` -> ``v1.0.0``."""
    return f"v{version}"


def _git(repo: Path, *args: str, input: str | None = None) -> str:
    env = {**os.environ, **_IDENTITY, "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], input=input, capture_output=True, text=True, env=env, check=True
        )
    except FileNotFoundError as exc:
        raise ReleaseError("git is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise ReleaseError(f"git {' '.join(args)} failed: {exc.stderr.strip()}") from exc
    return done.stdout.strip()


def release(folder: str | Path, *, to: str | Path, message: str | None = None) -> Release:
    """Commit the built ``folder`` into the git repository ``to`` (branch ``main``) and tag it.

    The folder is verified against its manifest first; the repository is created if needed.
    Files of the previous version that the new one no longer has are removed.
    """
    folder, repo = Path(folder), Path(to)
    manifest = verify(folder)
    tag = version_tag(manifest["version"])
    if repo.exists() and not repo.is_dir():
        raise UsageError(f"--to {repo} is a file; give a git repository folder (created when missing)")
    if repo.resolve() == folder.resolve() or repo.resolve().is_relative_to(folder.resolve()) \
            or folder.resolve().is_relative_to(repo.resolve()):
        raise UsageError(f"--to {repo} must be outside the dataset folder {folder} and not contain it")
    if not (repo / ".git").is_dir():
        if repo.exists() and any(repo.iterdir()):
            raise ReleaseError(f"--to {repo} is a non-empty folder that is not a git repository; "
                               "give an existing release repository or a new/empty folder")
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q", "-b", "main")
    elif _git(repo, "tag", "--list", tag):
        raise ReleaseError(f"{repo} already has tag {tag}: version {manifest['version']} is released and immutable")
    if _git(repo, "status", "--porcelain"):
        raise ReleaseError(f"{repo} has uncommitted changes; refusing to release into it")
    if _has_commits(repo):
        _git(repo, "checkout", "-q", "main")

    for entry in repo.iterdir():  # the new version replaces the whole tree
        if entry.name not in (".git", ".gitattributes"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for relative in [f["path"] for f in manifest["files"]] + [MANIFEST_NAME]:  # paths confined by verify()
        target = repo / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / relative, target)

    _git(repo, "add", "-A")
    title = message or f"Release {manifest['pretty_name']} {manifest['version']}"
    _git(repo, "commit", "-q", "--allow-empty", "-m", title)
    notes = manifest.get("release_notes") or title
    _git(repo, "tag", "-a", tag, "-F", "-", input=notes)
    commit = _git(repo, "rev-parse", "HEAD")
    logger.info("released %s as %s (%s) in %s", folder, tag, commit[:12], repo)
    return Release(repo=repo, tag=tag, commit=commit)


def _has_commits(repo: Path) -> bool:
    try:
        _git(repo, "rev-parse", "--verify", "-q", "HEAD")
    except ReleaseError:
        return False
    return True
