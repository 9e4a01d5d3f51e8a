"""A dataset argument -> a verified local folder: a built folder as it is, a Hub id downloaded.

Every command that reads a dataset (``score``, ``export``, ``verify``, ``release``, ``publish``)
takes the same positional argument. A path that exists must be a dataset folder (it holds
``manifest.json``); something that looks like a path but does not exist is an error at once (it
never falls through to the Hub); ``ORG/NAME`` that is not a local path is fetched from the Hub
(``HF_ENDPOINT`` honoured) with ``snapshot_download`` and then checked like a local folder, so a
report can always name the exact version and manifest digest it scored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finer_datasets.core.manifest import MANIFEST_NAME, read_manifest, verify
from finer_datasets.errors import UsageError, VerificationError

__all__ = ["ResolvedDataset", "resolve_dataset", "hub_snapshot", "repo_revision", "local_folder", "is_hub_id",
           "HUB_ID"]

logger = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ResolvedDataset:
    """A dataset folder and what its manifest says about it."""

    name: str  # as given (folder or Hub id)
    folder: Path
    manifest: dict[str, Any]
    verified: bool
    revision: str | None = None

    def provenance(self) -> dict[str, Any]:
        """Dataset name, version, manifest digest: what every report records."""
        return {"source": self.name, "revision": self.revision, "dataset": self.manifest.get("dataset"),
                "version": self.manifest.get("version"), "manifest_digest": self.manifest.get("digest"),
                "layout": self.manifest.get("layout", "per-pair/1"), "verified": self.verified}


def _looks_local(name: str) -> bool:
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") != 1 or not HUB_ID.match(name)
            or Path(name.split("/")[0]).is_dir())


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is read from the Hub: ``ORG/NAME`` that is not an existing or path-like local name."""
    return not Path(name).expanduser().exists() and not _looks_local(name)


def hub_snapshot(repo_id: str, revision: str | None, *, token: Any = None) -> Path:
    """The local snapshot of ``repo_id`` at ``revision`` (downloaded if needed; offline, the Hub cache
    resolves the revision by its ref, so each revision is its own folder)."""
    return _download(repo_id, revision, token=token)


def repo_revision(repo: Path, revision: str) -> Path:
    """A release repository (``finer release --to``) at ``revision``: its tree laid out once with
    ``git archive`` into ``<datasets cache>/finer_revisions/<repo>-<commit>/`` (atomically; the
    repository itself is only read), so each revision is its own folder and its own cache key."""
    import os
    import shutil
    import tempfile

    import datasets

    from finer_datasets.hub.release import export_revision, require_commit

    commit = require_commit(repo, revision)
    root = Path(datasets.config.HF_DATASETS_CACHE) / "finer_revisions"
    folder = root / f"{repo.resolve().name}-{commit}"
    if not folder.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}."))
        try:
            export_revision(repo, commit, staging / "tree")
            os.replace(staging / "tree", folder)
        except OSError:
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def local_folder(path: Path, revision: str | None, *, option: str = "--revision") -> Path:
    """A local dataset argument: the folder itself, or with ``revision`` that revision of a release
    repository; a plain folder with a revision is a :class:`UsageError`."""
    if revision is None:
        return path
    from finer_datasets.hub.release import is_git_repo

    if not is_git_repo(path):
        raise UsageError(f"{option} {revision} applies to Hub ids and release repositories (finer release --to); "
                         f"{path} is a plain folder")
    return repo_revision(path, revision)


def _download(repo_id: str, revision: str | None, *, token: Any = None) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                      **({"token": token} if token is not None else {})))
    except Exception as exc:  # huggingface_hub raises many kinds; all mean "could not get it"
        import os

        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        raise UsageError(f"{repo_id}: no such local folder, and datasets/{repo_id}"
                         f"{'@' + revision if revision else ''} could not be fetched from {endpoint}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def resolve_dataset(name: str, *, revision: str | None = None, allow_unverified: bool = False) -> ResolvedDataset:
    """Find and verify the dataset ``name`` (a built folder or a Hub id).

    A folder that fails :func:`~finer_datasets.core.manifest.verify` raises
    :class:`VerificationError`, unless ``allow_unverified`` (then a loud warning is logged and
    ``verified`` is ``False``).
    """
    path = Path(name).expanduser()
    if path.exists():
        folder = local_folder(path, revision) if path.is_dir() else path
    elif _looks_local(name):
        raise UsageError(f"{name}: no such dataset folder (build one with `finer build`, or give a Hub id ORG/NAME)")
    else:
        folder = _download(name, revision)
    if folder.is_file():
        raise UsageError(f"{name} is a file; give the dataset folder (the one holding {MANIFEST_NAME})")
    try:
        manifest, verified = verify(folder), True
    except VerificationError as exc:
        if not allow_unverified:
            raise VerificationError(exc.problems, subject=name) from exc
        logger.warning("%s DOES NOT VERIFY against its manifest (%s); scoring it anyway because of "
                       "--allow-unverified: the numbers are not comparable", name, exc)
        try:
            manifest = read_manifest(folder)
        except VerificationError:
            manifest = {}
        verified = False
    return ResolvedDataset(name=name, folder=folder, manifest=manifest, verified=verified, revision=revision)
