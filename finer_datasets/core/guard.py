"""The one output guard of every command that writes (build, merge, export, score, release, baselines).

Rules, checked before anything is written (:func:`check_target`, then each command's own
recognition of what it wrote):

* **Never at or inside a dataset.** A folder holding a FINER ``manifest.json`` is a dataset; an
  output may not be one (except a build's own previous build, or a release repository) nor sit
  inside one, and may never be, contain or sit inside an input of the command (a source, the
  dataset read, part builds, transcripts): symlinks in the parents are resolved first.
* **Never through a symbolic link.** An output path that is itself a link is refused; temp and
  staging names are never links (below) and leftovers are recognised with ``lstat``.
* **Never over what the tool did not write.** An existing output is replaced only when a marker
  the tool wrote says it is the tool's (a build's ``manifest.json`` and nothing it does not list;
  a file export's header; ``.finer-output.json`` for other folders, :func:`write_marker`; a score
  report folder's ``run.json``), and only with ``--overwrite`` where the command has it.
* **Unique, exclusive temp names.** A file is written to a temp file created with ``O_EXCL``
  beside it (``tempfile.mkstemp``: ``.<name>.<random>.finer-tmp``) and renamed over the target
  (:func:`replacing`, :func:`write_file`); a folder is written into a staging folder created
  with ``mkdtemp`` (``.<name>.finer-build-<random>/new``) and swapped in
  (:func:`finer_datasets.core.staging.staged_folder`).
  A file or link a user (or an attacker) put at any fixed name beside the output is never
  followed, written, removed or "restored".
* **Atomic replace.** Only a complete output replaces the previous one: files by ``os.replace``,
  folders by Linux ``renameat2(RENAME_EXCHANGE)`` or, elsewhere, two renames inside the run's
  own staging folder, undone by the next run into that output if a kill falls between them.
  Runs into one folder output are serialised by the lock file ``.<name>.finer-lock``, opened
  without following links.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from finer_datasets.core.manifest import MANIFEST_NAME as MANIFEST
from finer_datasets.errors import OutputError

__all__ = ["MARKER", "check_target", "check_replace", "is_dataset", "enclosing_dataset", "refuse_link", "replacing",
           "write_file", "open_append", "write_marker", "owned_folder", "claim_folder", "export_marker", "EXPORT_TOOL",
           "crash_point", "as_output_error", "WRITE_ERRNOS", "default_mode", "give_default_mode"]

#: the marker of a folder an export (or a training run) wrote: {"format", "command", "files"}
MARKER = ".finer-output.json"
MARKER_FORMAT = "finer-output/1"
WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def crash_point(name: str) -> None:
    """Fault injection for the kill tests: ``FINER_CRASH_AT=<name>`` kills the process here."""
    if os.environ.get("FINER_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def is_dataset(folder: Path) -> bool:
    """Whether ``folder`` holds a FINER ``manifest.json`` (format ``finer-manifest/N``)."""
    path = Path(folder) / MANIFEST
    try:
        if not path.is_file() or path.stat().st_size > 256 << 20:
            return False
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith("finer-manifest/")


def enclosing_dataset(path: Path) -> Path | None:
    """The nearest dataset folder strictly above ``path`` (resolved), or ``None``."""
    for parent in Path(path).resolve().parents:
        if is_dataset(parent):
            return parent
    return None


def refuse_link(path: Path, option: str = "--out") -> None:
    """An :class:`OutputError` when ``path`` itself is a symbolic link."""
    if Path(path).is_symlink():
        raise OutputError(f"{option} {path} is a symbolic link; an output is never written through a link: give the "
                          "real path")


def check_target(out: Path, *, option: str = "--out", protected: Sequence[Path] = (), folder: bool = True,
                 own_dataset: bool = False, what: str = "this command") -> Path:
    """Refuse an output location that could destroy data (module docstring); return it resolved.

    ``protected`` are the command's inputs (never at, inside or around the output); ``folder``:
    the output is a folder (a filesystem root or the home folder is refused); ``own_dataset``:
    the output may itself be a dataset folder (a build's previous build, a release repository),
    which the command then checks further."""
    out = Path(out)
    resolved = out.resolve()
    if folder and (resolved == Path(resolved.anchor) or resolved == Path.home().resolve()):
        raise OutputError(f"{option} {out}: refusing to write into {resolved} (a filesystem root or your home folder)")
    for path in protected:
        source = Path(path).resolve()
        if resolved == source or source.is_relative_to(resolved):
            raise OutputError(f"{option} {out} is or contains the input {path}; choose a folder outside it")
        if source.is_dir() and resolved.is_relative_to(source):
            raise OutputError(f"{option} {out} is inside the source folder {path}; {what} never writes into its "
                              "inputs")
    refuse_link(out, option)
    dataset = enclosing_dataset(resolved)
    if dataset is not None:
        raise OutputError(f"{option} {out} is inside the dataset folder {dataset}; {what} never writes into a "
                          "dataset: choose a path outside it")
    if not own_dataset and resolved.is_dir() and is_dataset(resolved):
        raise OutputError(f"{option} {out} is a dataset folder; {what} never writes into a dataset: choose a path "
                          "outside it")
    return resolved


def check_replace(out: Path, *, owned: Callable[[Path], tuple[bool, str]], folder: bool, overwrite: bool = False,
                  dataset: Path | None = None, noun: str = "export", writer: str = "this export",
                  option: str = "--out") -> Path:
    """Where a command that replaces its whole output (an export) may write; returns it resolved.

    Never at, inside or around ``dataset`` (the dataset it reads), and :func:`check_target`'s
    rules; an existing output must be of the right kind (``folder`` or file) and is replaced only
    with ``overwrite`` and only when ``owned(path)`` (``(ours, why not)``) says the command wrote
    it; an empty folder is free."""
    out = Path(out)
    if dataset is not None:
        resolved, data = out.resolve(), Path(dataset).resolve()
        if resolved == data or resolved.is_relative_to(data) or data.is_relative_to(resolved):
            raise OutputError(f"{option} {out} is inside the dataset folder {dataset} (or contains it); an {noun} "
                              "never writes there: choose a path outside it")
    resolved = check_target(out, option=option, folder=folder, what=f"an {noun}")
    if not resolved.exists():
        return resolved
    if folder and not resolved.is_dir():
        raise OutputError(f"{option} {out} is an existing file; {writer} writes a folder: choose a new folder")
    if not folder and resolved.is_dir():
        raise OutputError(f"{option} {out} is a folder; {writer} writes a file: give a file name")
    if folder and not any(resolved.iterdir()):
        return resolved
    ours, why = owned(resolved)
    if not overwrite:
        hint = f"pass --overwrite to replace that previous {noun}" if ours else f"it was not written by an {noun}"
        raise OutputError(f"{option} {out} already exists ({hint}); choose another {option} or move it away")
    if not ours:
        raise OutputError(f"--overwrite refused for {out}: {why}; choose another {option} or move it away yourself")
    return resolved


# ---------------------------------------------------------------------------------------------- files


@functools.cache
def _umask() -> int:
    """The process's umask: from ``/proc/self/status`` on Linux (no change of state), else by the
    set-and-restore dance (done once, cached)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (0666) or folder (0777) under the umask:
    ``mkstemp``/``mkdtemp`` create theirs 0600/0700, which an output must not keep."""
    return (0o777 if folder else 0o666) & ~_umask()


def give_default_mode(path: Path) -> None:
    """Give a temp file or folder made by ``mkstemp``/``mkdtemp`` the mode a plain one would have."""
    os.chmod(path, default_mode(Path(path).is_dir()))


@contextmanager
def replacing(path: Path, *, suffix: str = ".finer-tmp") -> Iterator[Path]:
    """Yield a new, empty temp file beside ``path`` (created exclusively, a name no other run
    uses); when the block ends normally it replaces ``path`` atomically, otherwise it is removed.
    ``path`` itself may not be a link or a folder."""
    path = Path(path)
    refuse_link(path, "output")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; expected a file there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise as_output_error(exc, path) from exc
    try:
        os.fchmod(fd, default_mode())
    finally:
        os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        if exc.errno in WRITE_ERRNOS:
            raise as_output_error(exc, path) from exc
        raise
    except BaseException:
        _unlink(tmp)
        raise


def write_file(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically through :func:`replacing`."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def open_append(path: Path) -> Any:
    """``path`` opened for appending text, never through a link (``O_NOFOLLOW``)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"{path} is a symbolic link; an output is never written through a link") from exc
        raise as_output_error(exc, Path(path)) from exc
    return os.fdopen(fd, "a", encoding="utf-8")


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def as_output_error(exc: OSError, out: Path) -> OutputError:
    return OutputError(f"cannot write {out}: {exc.strerror or exc}")


# ---------------------------------------------------------------------------------------------- markers


EXPORT_TOOL = "finer export"


def export_marker(fmt: str) -> str:
    """The ``command`` the marker of a folder export of ``fmt`` names (``finer export --format FMT``)."""
    return f"{EXPORT_TOOL} --format {fmt}"


def write_marker(folder: Path, command: str, *, files: bool = True) -> None:
    """Mark ``folder`` as written by ``command``: :data:`MARKER` lists every file in it (or,
    ``files=False``, claims the whole folder, for a training run that keeps adding files)."""
    folder = Path(folder)
    listed = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()) if files else None
    record = {"format": MARKER_FORMAT, "command": command, "files": listed}
    write_file(folder / MARKER, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _marker(folder: Path) -> dict[str, Any] | None:
    path = folder / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MARKER_FORMAT else None


def owned_folder(folder: Path, tool: str, noun: str = "export") -> tuple[bool, str]:
    """``(True, "")`` when ``folder`` is empty or holds the marker of a command of ``tool`` (e.g.
    ``finer export``: any folder export replaces another) and nothing it does not list; else
    ``(False, why)``."""
    folder = Path(folder)
    if not any(folder.iterdir()):
        return True, ""
    marker = _marker(folder)
    if marker is None or not str(marker.get("command", "")).startswith(tool):
        return False, f"it holds no previous {noun} (no {MARKER} of {tool}), so no {noun} wrote it"
    if marker.get("files") is None:
        return True, ""
    listed = set(marker["files"]) | {MARKER}
    foreign = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                     if not p.is_dir() and p.relative_to(folder).as_posix() not in listed)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return False, f"it holds {len(foreign)} file(s) no {noun} wrote ({shown})"
    return True, ""


def claim_folder(folder: Path, command: str, *, option: str = "--out", protected: Sequence[Path] = (),
                 create: bool = True) -> Path:
    """Check ``folder`` for a command that keeps writing into it (a training run): it must be new,
    empty or claimed by ``command`` before; then (``create``) claim it: make it and write
    :data:`MARKER`. Returns it resolved."""
    resolved = check_target(folder, option=option, protected=protected, what=command)
    if resolved.exists() and not resolved.is_dir():
        raise OutputError(f"{option} {folder} is an existing file; give a folder")
    if resolved.is_dir() and any(resolved.iterdir()):
        marker = _marker(resolved)
        if marker is None or marker.get("command") != command:
            raise OutputError(f"{option} {folder} already exists and was not written by {command}; choose a new "
                              "folder or move it away")
        return resolved
    if not create:
        return resolved
    try:
        resolved.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise as_output_error(exc, resolved) from exc
    write_marker(resolved, command, files=False)
    return resolved

