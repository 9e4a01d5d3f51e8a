"""Reading DOCCI's release: ``docci_descriptions.jsonlines`` (+ ``images/``) -> captions of one split.

Source layout (``--source DIR``)::

    DIR/docci_descriptions.jsonlines   one JSON object per line: example_id, split, image_file, description
    DIR/images/<image_file>            the images (or directly in DIR/ when there is no images/ folder)

Policy (printed in the build summary, recorded in the manifest):

* **errors** (exit 2, one line naming file, line, record and field; nothing is built): a line that
  is not UTF-8 JSON or longer than 16 MiB, a line that does not match
  ``schemas/docci_line.schema.json`` (not an object; a missing, extra or mistyped field; an
  unknown ``split``; an image name that is not .jpg/.jpeg/.png), an image path that leaves the
  images folder, an image (or the ``images/`` folder, or the descriptions file) that is a link
  leading outside the source folder, or a FIFO, device or socket (refused before it is opened),
  a repeated ``example_id``, two ids giving one WebDataset key, a file without a line of the
  chosen split;
* **counted skips** of the chosen split (reported in ``build_report.json``; ``--strict`` fails on
  the first; they count towards ``--max-skip-rate``): ``empty_description``,
  ``description_too_long`` (over :data:`MAX_DESCRIPTION_CHARS`), ``image_missing``,
  ``image_unreadable`` (not an image, truncated, wrong format; fully decoded here so that no
  model call is paid for an image that cannot ship);
* lines of the other splits are checked against the schema, counted per split and otherwise
  never read: the descriptions and images of ``train`` never reach the benchmark or a prompt.
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from finer_datasets.core.builder import BuildReport, image_key
from finer_datasets.core.images import IMAGE_EXTENSIONS, read_image
from finer_datasets.core.source import iter_jsonl, refused
from finer_datasets.core.text import clean_text
from finer_datasets.core.validation import schema_path, validator
from finer_datasets.errors import SourceError

__all__ = [
    "BENCHMARK_SPLITS",
    "DESCRIPTIONS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_LINE_BYTES",
    "SCHEMA",
    "SPLITS",
    "Caption",
    "SourceStats",
    "images_dir",
    "read_captions",
]

DESCRIPTIONS = "docci_descriptions.jsonlines"
SCHEMA = schema_path("docci_line")
#: DOCCI's splits and their sizes in the release
SPLITS = {"train": 9_647, "test": 5_000, "qual_dev": 100, "qual_test": 100}
#: splits a benchmark may be built from (never train: FINER-Tuning must stay free of DOCCI train leakage)
BENCHMARK_SPLITS = ("test", "qual_dev", "qual_test")
#: longest description used (DOCCI's longest are a few thousand characters); longer ones are skipped
MAX_DESCRIPTION_CHARS = 20_000
#: longest line read at all (a larger line is an error naming it, so memory stays bounded)
MAX_LINE_BYTES = 16 << 20
_IMAGE_THREADS = 4
_PROPERTY = re.compile(r'"([^"]+)" is a required property|\(\'([^\']+)\' was unexpected')


@dataclass(frozen=True)
class Caption:
    """One usable line of the chosen split."""

    example_id: str
    key: str
    image_file: str
    image: Path
    description: str
    line: int

    @property
    def record(self) -> str:
        """How skips and errors name this line."""
        return f"{self.example_id} (line {self.line})"


@dataclass
class SourceStats:
    """What the reader saw: lines per split, and per split the lines not in the benchmark."""

    split: str
    lines: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "lines_by_split": dict(sorted(self.lines.items())),
                "skipped_lines_by_split": dict(sorted(self.skipped.items()))}


def images_dir(source: Path) -> Path:
    return source / "images" if (source / "images").is_dir() else source


def _schema_error(path: Path, line: int, value: Any) -> SourceError | None:
    compiled = validator(SCHEMA)
    if compiled.is_valid(value):
        return None
    error = next(iter(compiled.iter_errors(value)))
    where = list(error.instance_path)
    named = _PROPERTY.search(error.message)
    field_name = ".".join(map(str, where)) or (next(g for g in named.groups() if g) if named else None)
    record = value.get("example_id") if isinstance(value, dict) and isinstance(value.get("example_id"), str) else None
    message = error.message
    if where == ["split"]:
        message = f"unknown split {value['split']!r} (expected one of {', '.join(SPLITS)})"
    elif "is a required property" in message:
        message = "missing"
    elif "was unexpected" in message:
        message = "unexpected field (a DOCCI line has example_id, split, image_file and description)"
    return SourceError(message, path=path, line=line, record=record, field=field_name)


def _check_image_name(path: Path, line: int, example_id: str, image_file: str) -> None:
    name = Path(image_file)
    if name.is_absolute() or ".." in name.parts or "\\" in image_file:
        raise SourceError(f"must be a file name inside the images folder, got {image_file!r}", path=path, line=line,
                          record=example_id, field="image_file")
    if name.suffix.lower() not in IMAGE_EXTENSIONS:  # (the schema checks this too)
        raise SourceError(f"unsupported image type {name.suffix!r}", path=path, line=line, record=example_id,
                          field="image_file")


def read_captions(source: Path, *, split: str, report: BuildReport, max_chars: int = MAX_DESCRIPTION_CHARS,
                  progress: bool | None = None) -> tuple[list[Caption], SourceStats]:
    """Every usable caption of ``split`` (in file order) and the per-split line counts.

    Raises :class:`SourceError` for the errors of the module's policy; reports the counted skips
    on ``report`` in line order (which raises under ``--strict``). Images are decoded on a few
    threads (Pillow decodes without the GIL).
    """
    if split not in BENCHMARK_SPLITS:
        raise SourceError(f"split {split!r} cannot be built into a benchmark "
                          f"(choose one of {', '.join(BENCHMARK_SPLITS)})", path=source / DESCRIPTIONS)
    path, images = source / DESCRIPTIONS, images_dir(source)
    stats = SourceStats(split=split)
    seen: dict[str, int] = {}
    keys: dict[str, str] = {}
    pending: list[tuple[Caption, tuple[str, str, str] | None]] = []  # (caption, text problem)
    for line, value in iter_jsonl(path, max_line_bytes=MAX_LINE_BYTES, root=source):
        problem = _schema_error(path, line, value)
        if problem is not None:
            raise problem
        example_id, line_split = value["example_id"], value["split"]
        if example_id in seen:
            raise SourceError(f"duplicate example_id (first on line {seen[example_id]})", path=path, line=line,
                              record=example_id, field="example_id")
        seen[example_id] = line
        _check_image_name(path, line, example_id, value["image_file"])
        stats.lines[line_split] += 1
        if line_split != split:
            stats.skipped[line_split] += 1  # another split: never read further
            continue
        key = image_key(example_id)
        if key in keys:
            raise SourceError(f"example ids {keys[key]!r} and {example_id!r} both become key {key!r}", path=path,
                              line=line, record=example_id, field="example_id")
        keys[key] = example_id
        description = clean_text(value["description"])
        if description != value["description"].strip():
            report.fix("text_normalized")
        caption = Caption(example_id=example_id, key=key, image_file=value["image_file"],
                          image=images / value["image_file"], description=description, line=line)
        pending.append((caption, _text_problem(description, max_chars)))
    if not stats.lines:
        raise SourceError("the file holds no line", path=path)
    if not stats.lines[split]:
        found = ", ".join(f"{s} {n}" for s, n in sorted(stats.lines.items()))
        raise SourceError(f"no line of split {split!r} (found: {found})", path=path)
    to_check = [c for c, problem in pending if problem is None]
    for caption in to_check:  # before anything is opened: no link out of the source, no FIFO or device
        reason = refused(caption.image, source)
        if reason is not None:
            raise SourceError(f"image {caption.image_file}: {reason}", path=path, line=caption.line,
                              record=caption.example_id, field="image_file")
    with ThreadPoolExecutor(max_workers=_IMAGE_THREADS, thread_name_prefix="docci-image") as pool:
        check = partial(_image_problem, root=source)
        checked = dict(zip((c.line for c in to_check),
                           tqdm(pool.map(check, to_check), total=len(to_check), desc="DOCCI images",
                                unit="img", disable=None if progress is None else not progress)))
    captions: list[Caption] = []
    for caption, problem in pending:
        problem = problem or checked[caption.line]
        if problem is None:
            captions.append(caption)
            continue
        stats.skipped[split] += 1
        reason, field_name, detail = problem
        report.skip(reason, path=path, record=caption.record, field=field_name, detail=detail)
    return captions, stats


def _text_problem(description: str, max_chars: int) -> tuple[str, str, str] | None:
    if not description:
        return "empty_description", "description", "no text"
    if len(description) > max_chars:
        return "description_too_long", "description", f"{len(description):,} characters (at most {max_chars:,})"
    return None


def _image_problem(caption: Caption, root: Path) -> tuple[str, str, str] | None:
    """``(reason, field, detail)`` when the caption's image cannot ship, after a full decode
    (a file refused by :func:`~finer_datasets.core.source.refused` is an error, not a skip)."""
    try:
        read_image(caption.image, root)
    except FileNotFoundError:
        return "image_missing", "image_file", f"{caption.image_file} not in {caption.image.parent.name}/"
    except (OSError, ValueError) as exc:
        return "image_unreadable", "image_file", f"{caption.image_file}: {getattr(exc, 'strerror', None) or exc}"
    return None
