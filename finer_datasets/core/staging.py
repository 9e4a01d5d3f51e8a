"""Folder outputs of the output guard (:mod:`finer_datasets.core.guard`): staged, locked, swapped atomically.

A folder output is written into a staging folder of the run's own, ``.<name>.finer-build-<random>/new``
beside it (``mkdtemp``), and swapped in only when complete: Linux ``renameat2(RENAME_EXCHANGE)``,
elsewhere two renames (the old output goes to ``.../old`` inside the run's staging folder, which
the next run into that output restores if a kill falls between them). Runs into one output are
serialised by the lock file ``.<name>.finer-lock`` (opened with ``O_NOFOLLOW``, never truncated).
Leftovers are recognised with ``lstat``: only real folders of the current user with that prefix;
a link planted at any of these names is never followed, written, removed or restored.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from finer_datasets.core.guard import WRITE_ERRNOS, as_output_error, crash_point, refuse_link
from finer_datasets.errors import OutputError

__all__ = ["staged_folder", "work_folders", "fsync_tree"]

logger = logging.getLogger(__name__)

_WORK = ".finer-build-"  # staging folders: .<name>.finer-build-<random>


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (so a rename publishes durable data)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
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


def _real_dir(path: Path) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and (not hasattr(os, "getuid") or info.st_uid == os.getuid())


def work_folders(out: Path) -> list[Path]:
    """The staging folders runs into ``out`` left beside it (real folders only, never links)."""
    prefix = f".{out.name}{_WORK}"
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if p.name.startswith(prefix) and _real_dir(p))


def _recover(out: Path) -> None:
    """Undo what a killed run left beside ``out`` (under its lock, before anything else)."""
    for work in work_folders(out):
        old = work / "old"
        if _real_dir(old) and not os.path.lexists(out):  # killed between the two renames of the fallback swap
            logger.warning("restoring %s from %s (a previous run was killed while replacing it)", out, old)
            os.rename(old, out)
        logger.info("removing %s left by a killed run", work)
        shutil.rmtree(work, ignore_errors=True)


def _commit(staging: Path, out: Path, *, exchange: bool = True) -> None:
    fsync_tree(staging)
    if not os.path.lexists(out):
        os.rename(staging, out)
    elif exchange and _exchange(staging, out):
        crash_point("after-exchange")
    else:
        os.rename(out, staging.parent / "old")
        crash_point("between-renames")
        os.rename(staging, out)
    _fsync_dir(out.parent)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (created if needed, never through a link)."""
    try:
        import fcntl
    except ImportError:  # Windows: filelock's own locking
        from filelock import FileLock

        refuse_link(path, "lock file")
        with FileLock(path):
            yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"the lock file {path} is a symbolic link; remove it (a run never writes through a "
                              "link)") from exc
        raise as_output_error(exc, path) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another run is writing beside %s; waiting for its lock %s", path.parent, path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def staged_folder(out: Path, check: Callable[[], Any], *, exchange: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder for the folder output ``out``; on normal exit it replaces
    ``out`` atomically. ``check()`` (which raises to refuse) runs again once the lock is held.

    On any exception (``KeyboardInterrupt`` included) the staging folder is removed and ``out``
    is left exactly as it was. ``exchange=False`` forces the two-rename fallback (tests)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise as_output_error(exc, out) from exc
    with _locked(out.parent / f".{out.name}.finer-lock"):
        try:
            _recover(out)
        except OSError as exc:
            raise as_output_error(exc, out) from exc
        check()  # the world may have changed while we waited
        try:
            work = Path(tempfile.mkdtemp(prefix=f".{out.name}{_WORK}", dir=out.parent))
            staging = work / "new"
            staging.mkdir()
        except OSError as exc:
            raise as_output_error(exc, out) from exc
        try:
            yield staging
            _commit(staging, out, exchange=exchange)
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            if exc.errno in WRITE_ERRNOS:
                raise as_output_error(exc, out) from exc
            raise
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        shutil.rmtree(work, ignore_errors=True)  # it holds the previous output, if any
