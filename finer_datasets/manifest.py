"""The build manifest: file hashes, source fingerprints, counts; and ``finer verify``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from ._errors import RecordValidationError, VerificationError
from ._schemas import validate

__all__ = ["MANIFEST_NAME", "sha256_file", "fingerprint_files", "file_entry", "write_manifest", "read_manifest", "verify"]

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20
# Files a Hub clone may hold besides the build (never listed in the manifest).
_IGNORED = {".gitattributes", MANIFEST_NAME}


def sha256_file(path: Path) -> tuple[str, int]:
    """sha256 (hex) and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def fingerprint_files(name: str, root: Path, files: Iterable[Path]) -> dict[str, Any]:
    """One fingerprint for a group of source files: sha256 over sorted ``relative-path sha256`` lines."""
    lines, total, count = [], 0, 0
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        sha, size = sha256_file(path)
        lines.append(f"{path.relative_to(root).as_posix()} {sha}\n")
        total += size
        count += 1
    digest = hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
    return {"name": name, "sha256": digest, "size": total, "files": count}


def file_entry(root: Path, relative: str, **extra: Any) -> dict[str, Any]:
    sha, size = sha256_file(root / relative)
    return {"path": relative, "sha256": sha, "size": size, **extra}


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Validate and write ``manifest.json`` (sorted keys, 2-space indent, trailing newline)."""
    validate("manifest", manifest)
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (root / MANIFEST_NAME).write_text(text, encoding="utf-8")


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise VerificationError([f"{path}: no manifest"]) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerificationError([f"{path}: not valid JSON: {exc}"]) from exc
    try:
        validate("manifest", manifest)
    except RecordValidationError as exc:
        raise VerificationError([f"{path}: {exc}"]) from exc
    return manifest


def verify(root: str | Path) -> dict[str, Any]:
    """Re-hash every file of a built folder against its manifest.

    Fails (:class:`VerificationError`, listing every problem) on a missing, changed or resized
    file, and on any file present but not listed. Returns the manifest when all is well.
    """
    root = Path(root)
    manifest = read_manifest(root)
    problems: list[str] = []
    listed = set()
    for entry in manifest["files"]:
        listed.add(entry["path"])
        path = root / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing")
            continue
        sha, size = sha256_file(path)
        if size != entry["size"]:
            problems.append(f"{entry['path']}: size {size} != manifest {entry['size']}")
        if sha != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 {sha} != manifest {entry['sha256']}")
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in listed and relative not in _IGNORED and not relative.startswith(".git/"):
            problems.append(f"{relative}: not in the manifest")
    if problems:
        raise VerificationError(problems)
    return manifest
