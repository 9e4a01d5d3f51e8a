"""The build manifest (``manifest.json``) and ``finer verify``.

The manifest lists every file of a built folder with its sha256 and size, the source
fingerprints, counts and provenance, and (format 2) a ``digest``: the sha256 of its own
canonical JSON without that field, so an edited count or version is caught by :func:`verify`.
Every listed path must be relative and normalised (no ``..``, ``.``, empty or absolute parts), so
a manifest can never make a tool write outside the dataset. (Files may be symlinks, as in a Hub
cache snapshot; their content is what is hashed.)

Format 1 manifests (builder 1.x, one sample per pair) carry no digest; they still verify
(file hashes are checked) and :func:`verify` reports ``self_protected=False`` for them.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path
from typing import Any, Iterable

from finer_datasets.core.validation import schema_path, validate
from finer_datasets.errors import RecordValidationError, VerificationError

__all__ = ["MANIFEST_NAME", "FORMAT", "sha256_file", "fingerprint_files", "file_entry", "write_manifest",
           "read_manifest", "manifest_digest", "data_digest", "verify", "is_confined", "SCHEMA"]

MANIFEST_NAME = "manifest.json"
FORMAT = "finer-manifest/2"
SCHEMA = schema_path("manifest")
_SCHEMAS = {"finer-manifest/1": schema_path("manifest-v1"), FORMAT: SCHEMA}
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
    """One fingerprint for a group of source files: sha256 over sorted ``relative-path sha256`` lines.

    Paths are taken relative to ``root``, so files in sub-folders are fingerprinted under their
    sub-folder path.
    """
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


def data_digest(files: Iterable[dict[str, Any]]) -> str:
    """sha256 over the sorted ``path sha256`` lines of the shards (``data/``) among manifest file
    entries: the content ``load_dataset`` reads. The card's config carries it, so a folder whose
    shards changed never loads a stale ``datasets`` cache; the manifest records it too."""
    lines = sorted(f"{f['path']} {f['sha256']}\n" for f in files if f["path"].startswith("data/"))
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _canonical(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``manifest`` without its ``digest`` field."""
    return hashlib.sha256(_canonical({k: v for k, v in manifest.items() if k != "digest"})).hexdigest()


def is_confined(path: str) -> bool:
    """Whether a manifest path is relative, normalised POSIX and free of ``..``/``.`` parts."""
    return (bool(path) and "\\" not in path and "\0" not in path and not path.startswith("/")
            and posixpath.normpath(path) == path and not any(part in ("", ".", "..") for part in path.split("/")))


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add the self-digest, validate, and write ``manifest.json`` (sorted keys, 2-space indent)."""
    manifest = {**manifest, "format": FORMAT}
    manifest["digest"] = manifest_digest(manifest)
    validate(SCHEMA, manifest)
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (root / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read and schema-check ``root/manifest.json``; :class:`VerificationError` names what is wrong."""
    root = Path(root)
    if root.is_file():
        raise VerificationError([f"{root} is a file; give the dataset folder (the one holding {MANIFEST_NAME})"])
    if not root.is_dir():
        raise VerificationError([f"{root}: no such dataset folder"])
    path = root / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise VerificationError([f"{path}: no manifest (is {root} a folder made by `finer build`?)"]) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerificationError([f"{path}: not readable JSON: {exc}"]) from exc
    schema = _SCHEMAS.get(manifest.get("format")) if isinstance(manifest, dict) else None
    if schema is None:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise VerificationError([f"{path}: unknown manifest format {found!r}"])
    try:
        validate(schema, manifest)
    except RecordValidationError as exc:
        raise VerificationError([f"{path}: {exc}"]) from exc
    return manifest


def verify(root: str | Path) -> dict[str, Any]:
    """Check a built folder against its manifest; return the manifest when all is well.

    Fails (:class:`VerificationError`, listing every problem) on a manifest whose digest does not
    match its content, a path that is not confined to the folder, a missing, changed or resized
    file, and any file present but not listed.
    """
    root = Path(root)
    manifest = read_manifest(root)
    problems: list[str] = []
    if "digest" in manifest and manifest["digest"] != manifest_digest(manifest):
        problems.append(f"{MANIFEST_NAME}: edited after the build (its digest does not match its content)")
    listed = set()
    for entry in manifest["files"]:
        relative = entry["path"]
        listed.add(relative)
        path = root / relative
        if not is_confined(relative):
            problems.append(f"{relative}: path escapes the dataset folder")
            continue
        if not path.is_file():
            problems.append(f"{relative}: missing")
            continue
        sha, size = sha256_file(path)
        if size != entry["size"]:
            problems.append(f"{relative}: size {size} != manifest {entry['size']}")
        if sha != entry["sha256"]:
            problems.append(f"{relative}: sha256 {sha} != manifest {entry['sha256']}")
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(".git/") or relative == ".git":
            continue
        if (path.is_file() or path.is_symlink()) and relative not in listed and relative not in _IGNORED:
            problems.append(f"{relative}: not in the manifest")
    if problems:
        raise VerificationError(problems)
    return manifest
