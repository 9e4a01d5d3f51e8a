"""Where a build may write, and how it replaces its output without ever losing data.

The rules are the output guard's (:mod:`finer_datasets.core.guard`), with a build's own marker:

* ``out`` may never be, contain, or sit inside a protected path (the source folder, the
  negatives or transcript files a build reads), nor sit inside another dataset, nor be a
  symbolic link: symlinks in its parents are resolved first.
* An existing ``out`` is replaced only with ``overwrite`` and only when a previous build wrote
  it: it holds a FINER ``manifest.json`` and nothing the manifest does not list (so a folder of
  the user's, a home directory or a git clone is never deleted). An empty folder may be replaced.
* Builds into one ``out`` are serialised by a lock file ``.<name>.finer-lock`` beside it.
* A build writes into a staging folder ``.<name>.finer-build-<random>/new`` beside ``out``
  (created with ``mkdtemp``); only a build that succeeded replaces ``out``. Files are fsynced,
  then the staging folder and ``out`` are exchanged atomically (Linux
  ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames through that run's own staging folder,
  recovered by the next run if a kill falls between them).
* A staging folder left by a killed run is removed by the next build into that ``out`` before it
  starts; a link or file planted at any of these names is never followed, written or restored.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from finer_datasets.core.guard import check_target, crash_point
from finer_datasets.core.manifest import MANIFEST_NAME as MANIFEST
from finer_datasets.core.staging import fsync_tree, staged_folder
from finer_datasets.errors import OutputError

__all__ = ["check_output", "staged_output", "is_previous_build", "fsync_tree", "crash_point"]

# files a Hub clone of a release may hold besides the build itself
_HUB_EXTRAS = {".gitattributes"}


def _manifest_paths(folder: Path) -> set[str] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("finer-manifest/"):
        return None
    files = manifest.get("files")
    if not isinstance(files, list):
        return None
    return {f["path"] for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)}


def is_previous_build(folder: Path) -> tuple[bool, str]:
    """Whether ``folder`` may be replaced: ``(True, "")`` for an empty folder or one that holds
    exactly a FINER build (its manifest and the files it lists); else ``(False, why)``."""
    entries = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())
    if not entries and not any(folder.iterdir()):
        return True, ""
    listed = _manifest_paths(folder)
    if listed is None:
        return False, "it holds no FINER manifest.json, so no previous build wrote it"
    foreign = [e for e in entries if e not in listed and e != MANIFEST and e not in _HUB_EXTRAS]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return False, f"it holds {len(foreign)} file(s) no build wrote ({shown})"
    return True, ""


def check_output(out: Path, *, protected: Sequence[Path] = (), overwrite: bool = False) -> Path:
    """Refuse (:class:`OutputError`) an output location that could destroy data; return it resolved."""
    out = Path(out)
    resolved = check_target(out, protected=protected, own_dataset=True, what="a build")
    if resolved.exists():
        if not resolved.is_dir():
            raise OutputError(f"--out {out} exists and is not a folder")
        if not overwrite:
            if any(resolved.iterdir()):
                raise OutputError(f"output folder {out} already exists (pass --overwrite to replace a previous build)")
            return resolved
        ok, why = is_previous_build(resolved)
        if not ok:
            raise OutputError(f"--overwrite refused for {out}: {why}; only a folder written by `finer build` is replaced")
    return resolved


@contextmanager
def staged_output(out: Path, *, protected: Sequence[Path] = (), overwrite: bool = False,
                  exchange: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder for a build of ``out``; on normal exit it replaces ``out``.

    On any exception (including ``KeyboardInterrupt``) the staging folder is removed and ``out``
    is left exactly as it was. ``exchange=False`` forces the two-rename fallback (tests).
    """
    out = check_output(out, protected=protected, overwrite=overwrite)
    with staged_folder(out, lambda: check_output(out, protected=protected, overwrite=overwrite),
                       exchange=exchange) as staging:
        yield staging
