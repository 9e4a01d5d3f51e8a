"""Where a build may write, and how it replaces its output without ever losing data.

Rules (checked before anything is written, and again once the lock is held):

* ``out`` may never be, contain, or sit inside a protected path (the source folder, the
  negatives or transcript files a build reads): symlinks are resolved first.
* An existing ``out`` is replaced only with ``overwrite`` and only when a previous build wrote
  it: it holds a FINER ``manifest.json`` and nothing the manifest does not list (so a folder of
  the user's, a home directory or a git clone is never deleted). An empty folder may be replaced.
* Builds into one ``out`` are serialised by a lock file ``.<name>.finer-lock`` beside it.
* A build writes into the staging folder ``.<name>.finer-build`` beside ``out``; only a build
  that succeeded replaces ``out``. Files are fsynced, then the staging folder and ``out`` are
  exchanged atomically (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames through
  ``.<name>.finer-old``, recovered by the next run if a kill falls between them).
* A staging or retired folder left by a killed run is removed by the next build into that
  ``out`` before it starts.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from finer_datasets.errors import OutputError

__all__ = ["check_output", "staged_output", "is_previous_build", "staging_paths", "fsync_tree", "crash_point"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# files a Hub clone of a release may hold besides the build itself
_HUB_EXTRAS = {".gitattributes"}
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def crash_point(name: str) -> None:
    """Fault injection for the kill tests: ``FINER_CRASH_AT=<name>`` kills the process here."""
    if os.environ.get("FINER_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def staging_paths(out: Path) -> dict[str, Path]:
    """The sibling paths a build into ``out`` uses: ``staging``, ``retired`` and ``lock``."""
    parent, name = out.parent, out.name
    return {"staging": parent / f".{name}.finer-build", "retired": parent / f".{name}.finer-old",
            "lock": parent / f".{name}.finer-lock"}


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
    resolved = out.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise OutputError(f"--out {out}: refusing to build into {resolved} (a filesystem root or your home folder)")
    for path in protected:
        source = Path(path).resolve()
        if resolved == source or source.is_relative_to(resolved):
            raise OutputError(f"--out {out} is or contains the input {path}; choose a folder outside it")
        if source.is_dir() and resolved.is_relative_to(source):
            raise OutputError(f"--out {out} is inside the source folder {path}; a build never writes into its source")
    if resolved.exists() or resolved.is_symlink():
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


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (so a rename publishes durable data)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); ``False`` where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _recover(out: Path) -> None:
    """Undo what a killed build left beside ``out`` (before anything else touches it)."""
    paths = staging_paths(out)
    retired, staging = paths["retired"], paths["staging"]
    if retired.exists():
        if not out.exists():  # killed between the two renames of the fallback swap
            logger.warning("restoring %s from %s (a previous build was killed while replacing it)", out, retired)
            os.replace(retired, out)
        else:
            shutil.rmtree(retired)
    if staging.exists():
        logger.info("removing %s left by a killed build", staging)
        shutil.rmtree(staging)


def _commit(staging: Path, out: Path, *, exchange: bool = True) -> None:
    fsync_tree(staging)
    if not out.exists():
        os.rename(staging, out)
    elif exchange and _exchange(staging, out):
        crash_point("after-exchange")
        shutil.rmtree(staging)  # it now holds the previous output
    else:
        retired = staging_paths(out)["retired"]
        os.rename(out, retired)
        crash_point("between-renames")
        os.rename(staging, out)
        shutil.rmtree(retired)
    _fsync_dir(out.parent)


def _lock(path: Path):  # noqa: ANN202 - a filelock.FileLock
    from filelock import FileLock, Timeout

    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.warning("another build is writing beside %s; waiting for its lock %s", path.parent, path)
        lock.acquire()
    return lock


def _as_output_error(exc: OSError, out: Path) -> OutputError:
    return OutputError(f"cannot write {out}: {exc.strerror or exc}")


@contextmanager
def staged_output(out: Path, *, protected: Sequence[Path] = (), overwrite: bool = False,
                  exchange: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder for a build of ``out``; on normal exit it replaces ``out``.

    On any exception (including ``KeyboardInterrupt``) the staging folder is removed and ``out``
    is left exactly as it was. ``exchange=False`` forces the two-rename fallback (tests).
    """
    out = check_output(out, protected=protected, overwrite=overwrite)
    paths = staging_paths(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(paths["lock"])
    except OSError as exc:
        raise _as_output_error(exc, out) from exc
    try:
        _recover(out)
        check_output(out, protected=protected, overwrite=overwrite)  # the world may have changed while we waited
        staging = paths["staging"]
        try:
            staging.mkdir()
        except OSError as exc:
            raise _as_output_error(exc, out) from exc
        try:
            yield staging
            _commit(staging, out, exchange=exchange)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in _WRITE_ERRNOS:
                raise _as_output_error(exc, out) from exc
            raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        lock.release()
