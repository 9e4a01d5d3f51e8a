"""Releases as git history: each version of a built folder is a commit on ``main`` tagged ``v<VERSION>``.

``finer release DIR --to REPO_DIR`` lays the built folder into a local git repository exactly as
the Hub repository will hold it; successive versions become successive commits and annotated
tags whose message is that version's release notes. Before anything is written it checks the
build against the repository's releases (tags ``v<VERSION>``, ordered as PEP 440 orders versions,
local labels such as ``2.0.0+lab.1`` included; :mod:`finer_datasets.hub.versions`):

* a build of another dataset than the last release (manifest ``dataset``) is refused;
* a version whose tag exists is immutable: the same content again is a no-op
  (:attr:`Release.created` is false), different content is refused, naming the bumps to use;
* a version that is not above the last release is refused, naming the bumps to use.

Every refusal is a :class:`ReleaseError` (exit status 4) and leaves the repository untouched.
:func:`export_revision` lays a revision of a repository into a folder (``git archive``) without
touching its working tree; ``finer diff REPO@v2.0.0 ...`` and the summary of ``finer release``
read earlier releases with it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finer_datasets.core.guard import check_target
from finer_datasets.core.manifest import MANIFEST_NAME, verify
from finer_datasets.errors import ReleaseError, UsageError
from finer_datasets.hub.versions import Version, next_versions, parse_version

__all__ = ["ReleaseError", "Release", "release", "version_tag", "released_versions", "export_revision",
           "is_git_repo"]

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
    #: the tag of the release this one follows (the highest earlier version); None for the first
    previous: str | None = None
    #: False when the tag already held exactly this content (nothing was written)
    created: bool = True


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


def is_git_repo(path: Path) -> bool:
    """Whether ``path`` is the top of a git work tree (or a bare repository)."""
    try:
        if _git(path, "rev-parse", "--is-bare-repository") == "true":
            return True
        return Path(_git(path, "rev-parse", "--show-toplevel")).resolve() == path.resolve()
    except ReleaseError:
        return False


def released_versions(repo: Path) -> dict[Version, str]:
    """The version tags of ``repo`` (``v2.0.0``, ``v2.0.0+lab.1``): Version -> tag; other tags are ignored."""
    out = {}
    for tag in _git(repo, "tag", "--list", "v*").splitlines():
        version = parse_version(tag[1:])
        if version is not None:
            out[version] = tag
    return out


def require_commit(repo: Path, revision: str) -> str:
    """The commit ``revision`` names in ``repo``; a :class:`UsageError` listing the version tags when none."""
    commit = commit_of(repo, revision)
    if commit is None:
        tags = ", ".join(tag for _, tag in sorted(released_versions(repo).items())) or "none"
        raise UsageError(f"{repo} has no revision {revision!r} (its version tags: {tags})")
    return commit


def commit_of(repo: Path, revision: str) -> str | None:
    """The commit ``revision`` names in ``repo`` (``None`` when it names none)."""
    try:
        return _git(repo, "rev-parse", "--verify", "-q", f"{revision}^{{commit}}")
    except ReleaseError:
        return None


def export_revision(repo: str | Path, revision: str, dest: str | Path) -> Path:
    """Lay the tree of ``repo`` at ``revision`` into the new folder ``dest`` (``git archive``; the
    repository's working tree, index and refs are not touched); returns ``dest``."""
    repo, dest = Path(repo), Path(dest)
    require_commit(repo, revision)
    dest.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="finer-archive-") as tmp:
        archive = Path(tmp) / "tree.tar"
        _git(repo, "archive", "--format=tar", "-o", str(archive), revision)
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # Python < 3.10.12: git archive holds only the repository's own paths
                tar.extractall(dest)
    return dest


def _manifest_at(repo: Path, tag: str) -> dict[str, Any]:
    try:
        return json.loads(_git(repo, "show", f"{tag}:{MANIFEST_NAME}"))
    except (ReleaseError, ValueError) as exc:
        raise ReleaseError(f"{repo}: tag {tag} holds no readable {MANIFEST_NAME}, so it is no finer release; "
                           "give a release repository of this dataset or a new folder") from exc


def _differences(repo: Path, tag: str, folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The paths whose content differs between the release ``tag`` and the verified ``folder``: a
    manifest lists every file's sha256, so the two manifests say it (and the manifests themselves)."""
    released = _manifest_at(repo, tag)
    before = {f.get("path"): (f.get("sha256"), f.get("size")) for f in released.get("files", [])}
    after = {f["path"]: (f["sha256"], f["size"]) for f in manifest["files"]}
    differ = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if _git(repo, "show", f"{tag}:{MANIFEST_NAME}") != (folder / MANIFEST_NAME).read_text("utf-8").strip():
        differ.append(MANIFEST_NAME)
    return differ


def _bumps(last: Version) -> str:
    patch, minor, major = next_versions(last)
    return f"bump VERSION to {patch}, {minor} or {major}"


def _check_history(repo: Path, folder: Path, manifest: dict[str, Any], version: Version) -> tuple[str | None, Release | None]:
    """The tag this release follows, or a :class:`Release` when the version is already there as it is."""
    released = released_versions(repo)
    if not released:
        return None, None
    last = max(released)
    previous = _manifest_at(repo, released[last])
    if previous.get("dataset") != manifest["dataset"]:
        raise ReleaseError(f"{repo} holds releases of {previous.get('pretty_name')} ({previous.get('dataset')}, "
                           f"last {released[last]}); {folder} is {manifest['pretty_name']} ({manifest['dataset']}): "
                           "release it into its own repository")
    if version in released:
        tag = released[version]
        differ = _differences(repo, tag, folder, manifest)
        if not differ:
            return None, Release(repo=repo, tag=tag, commit=commit_of(repo, tag) or "", created=False)
        shown = ", ".join(differ[:3]) + (", ..." if len(differ) > 3 else "")
        raise ReleaseError(f"{tag} is already released in {repo} with different content ({len(differ)} file(s) "
                           f"differ: {shown}); a released version is immutable: {_bumps(last)}")
    if version < last:
        raise ReleaseError(f"{version} is not above {released[last]}, the last release in {repo}; {_bumps(last)}")
    return released[last], None


def release(folder: str | Path, *, to: str | Path, message: str | None = None) -> Release:
    """Commit the built ``folder`` into the git repository ``to`` (branch ``main``) and tag it.

    The folder is verified against its manifest and checked against the repository's releases
    first (module docstring); the repository is created if needed. Files of the previous version
    that the new one no longer has are removed.
    """
    folder, repo = Path(folder), Path(to)
    manifest = verify(folder)
    version = parse_version(manifest["version"])
    if version is None:
        raise ReleaseError(f"{folder}: version {manifest['version']!r} is not a release version "
                           "(MAJOR.MINOR.PATCH with an optional local label, e.g. 2.0.0 or 2.0.0+lab.1)")
    tag = version_tag(manifest["version"])
    if repo.exists() and not repo.is_dir():
        raise UsageError(f"--to {repo} is a file; give a git repository folder (created when missing)")
    if repo.resolve() == folder.resolve() or repo.resolve().is_relative_to(folder.resolve()) \
            or folder.resolve().is_relative_to(repo.resolve()):
        raise UsageError(f"--to {repo} must be outside the dataset folder {folder} and not contain it")
    # the output guard: never a link, never inside another dataset (the repository itself holds the release)
    check_target(repo, option="--to", own_dataset=True, what="finer release")
    previous = None
    if not (repo / ".git").is_dir():
        if repo.exists() and any(repo.iterdir()):
            raise ReleaseError(f"--to {repo} is a non-empty folder that is not a git repository; "
                               "give an existing release repository or a new/empty folder")
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q", "-b", "main")
    else:
        if _has_commits(repo) and not released_versions(repo):
            raise ReleaseError(f"--to {repo} is a git repository with commits but no release tag (v<VERSION>): not a "
                               "release repository, so its files are not replaced; give a release repository or a "
                               "new/empty folder")
        previous, done = _check_history(repo, folder, manifest, version)
        if done is not None:
            return done
        if _git(repo, "tag", "--list", tag):
            raise ReleaseError(f"{repo} already has tag {tag}: version {manifest['version']} is released and immutable")
    if _git(repo, "status", "--porcelain"):
        raise ReleaseError(f"{repo} has uncommitted changes; refusing to release into it")
    if _has_commits(repo):
        _git(repo, "checkout", "-q", "main")

    for entry in repo.iterdir():  # the new version replaces the whole (committed, clean) tree
        if entry.name not in (".git", ".gitattributes"):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for relative in [f["path"] for f in manifest["files"]] + [MANIFEST_NAME]:  # paths confined by verify()
        target = repo / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():  # a committed link (.gitattributes): replaced, never written through
            target.unlink()
        shutil.copy2(folder / relative, target)

    _git(repo, "add", "-A")
    title = message or f"Release {manifest['pretty_name']} {manifest['version']}"
    _git(repo, "commit", "-q", "--allow-empty", "-m", title)
    notes = manifest.get("release_notes") or title
    _git(repo, "tag", "-a", tag, "-F", "-", input=notes)
    commit = _git(repo, "rev-parse", "HEAD")
    logger.info("released %s as %s (%s) in %s", folder, tag, commit[:12], repo)
    return Release(repo=repo, tag=tag, commit=commit, previous=previous)


def _has_commits(repo: Path) -> bool:
    try:
        _git(repo, "rev-parse", "--verify", "-q", "HEAD")
    except ReleaseError:
        return False
    return True
