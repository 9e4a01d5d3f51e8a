"""Publishing a built folder to the Hugging Face Hub as a tagged, immutable version.

``finer publish DIR --repo ORG/NAME [--private] [--dry-run]``:

1. verifies the folder against its manifest;
2. creates the dataset repo if needed and refuses when tag ``v<VERSION>`` already exists;
3. uploads the folder with ``HfApi.upload_folder`` (files already on the Hub with the same
   content are not sent again, so an interrupted upload is resumed by running it again);
4. checks that the files and sizes at the new commit match the manifest;
5. tags that commit ``v<VERSION>`` with the version's release notes as the tag message.

The token is read the ``huggingface_hub`` way (``HF_TOKEN``, then the saved login) by ``HfApi``
itself and never printed. ``--dry-run`` prints the plan and touches nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finer_datasets.core.manifest import MANIFEST_NAME, verify
from finer_datasets.errors import UsageError
from finer_datasets.hub.release import ReleaseError, version_tag
from finer_datasets.hub.resolve import HUB_ID

__all__ = ["PublishPlan", "plan_publish", "publish"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishPlan:
    """What :func:`publish` will upload."""

    folder: Path
    repo_id: str
    tag: str
    private: bool
    files: list[tuple[str, int]] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)
    commit_message: str = ""
    tag_message: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def describe(self) -> str:
        lines = [
            f"repo:    datasets/{self.repo_id} ({'private' if self.private else 'public'})",
            f"tag:     {self.tag}",
            f"commit:  {self.commit_message}",
            f"files:   {len(self.files)} ({self.total_bytes:,} bytes)",
        ]
        lines += [f"  {size:>14,}  {path}" for path, size in self.files]
        return "\n".join(lines)


def plan_publish(folder: str | Path, repo_id: str, *, private: bool = False) -> PublishPlan:
    """Verify ``folder`` and describe its publication (no network)."""
    if not HUB_ID.match(repo_id):
        raise UsageError(f"--repo {repo_id!r} is not a Hub repo id ORG/NAME (e.g. finer/compre_cap)")
    folder = Path(folder)
    manifest = verify(folder)
    files = [(f["path"], f["size"]) for f in manifest["files"]]
    files.append((MANIFEST_NAME, (folder / MANIFEST_NAME).stat().st_size))
    return PublishPlan(
        folder=folder,
        repo_id=repo_id,
        tag=version_tag(manifest["version"]),
        private=private,
        files=sorted(files),
        sha256={f["path"]: f["sha256"] for f in manifest["files"]},
        commit_message=f"Release {manifest['pretty_name']} {manifest['version']}",
        tag_message=manifest.get("release_notes") or manifest["version"],
    )


def _remote_files(api: Any, repo_id: str, revision: str) -> dict[str, Any]:
    from huggingface_hub.hf_api import RepoFile

    entries = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
    return {e.path: e for e in entries if isinstance(e, RepoFile)}


def publish(plan: PublishPlan, *, api: Any = None) -> str:
    """Carry out ``plan``; return the commit id that was tagged.

    ``api`` is an ``huggingface_hub.HfApi`` (injectable for tests and other endpoints).
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    repo_id = plan.repo_id
    api.create_repo(repo_id, repo_type="dataset", private=plan.private or None, exist_ok=True)
    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    if any(t.name == plan.tag for t in refs.tags):
        raise ReleaseError(f"datasets/{repo_id} already has tag {plan.tag}: that version is published and immutable")

    logger.info("uploading %d files (%d bytes) to datasets/%s", len(plan.files), plan.total_bytes, repo_id)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(plan.folder),
        allow_patterns=[path for path, _ in plan.files],
        commit_message=plan.commit_message,
    )
    commit = info.oid

    remote = _remote_files(api, repo_id, commit)
    problems = []
    for path, size in plan.files:
        if path not in remote:
            problems.append(f"{path}: missing on the Hub")
        elif remote[path].size != size:
            problems.append(f"{path}: {remote[path].size} bytes on the Hub, {size} in the manifest")
        elif remote[path].lfs is not None and path in plan.sha256 and remote[path].lfs.sha256 != plan.sha256[path]:
            problems.append(f"{path}: sha256 on the Hub differs from the manifest")
    if problems:
        raise ReleaseError(f"upload of {plan.tag} does not match the manifest (not tagged): " + "; ".join(problems))

    api.create_tag(repo_id, repo_type="dataset", tag=plan.tag, tag_message=plan.tag_message, revision=commit)
    logger.info("tagged %s at %s", plan.tag, commit)
    return commit
