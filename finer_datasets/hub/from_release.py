"""``finer build compre_cap|docci --from-release TABLES``: a benchmark built from the items the
FINER authors released -- the human-corrected questions their paper scores (Table 1), byte for
byte -- through the normal build core (shards, card, manifest; ``finer verify``, ``release`` and
``load_finer`` work on it as on any build).

``TABLES`` is a folder of the authors' tables (:mod:`finer_datasets.mcq.release_tables`) or a Hub
dataset id ``ORG/NAME[@REVISION]`` holding them (fetched with ``huggingface_hub``, ``HF_ENDPOINT``
honoured, into its cache; the snapshot's commit is recorded). Images come from ``--images DIR``
(default ``TABLES/images``), matched by the file name in the ``image`` column, or from the tables
themselves when they embed them (the Hub copy's ``Image`` feature; the bytes are shipped as they
are). Rows, pairing rule, ids and what is read back from the text: :mod:`finer_datasets.mcq.release_import`.

A benchmark builder opts in with three lines (:func:`add_release_arguments` in its
``add_arguments``, :func:`release_options` in its ``options_from``, :func:`release_variant` as its
``variant``); the build is then made by :class:`ReleaseImport`, which shares the builder's name,
version, licence and record schema and runs no model.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm

from finer_datasets.constants import SETTINGS
from finer_datasets.core.builder import BuildContext, DatasetBuilder, Sample
from finer_datasets.core.images import IMAGE_EXTENSIONS
from finer_datasets.core.manifest import sha256_file
from finer_datasets.core.validation import shipped_folder
from finer_datasets.errors import UsageError
from finer_datasets.hub.resolve import hub_snapshot, is_hub_id
from finer_datasets.mcq.records import SCHEMA
from finer_datasets.mcq.release_import import (
    ReleasePair,
    ReleaseRow,
    image_records,
    parse_row,
    release_pairs,
    structure_counts,
)
from finer_datasets.mcq.release_tables import find_tables, image_cell, iter_rows

__all__ = ["ReleaseImport", "add_release_arguments", "release_options", "release_variant", "CARD", "ID_RULE"]

logger = logging.getLogger(__name__)

CARD = "finer_release.md"
ID_RULE = ("pair n of the table of <setting> (rows 2n and 2n+1, counted from 0 after the header) about image file F "
           "is <setting>_<image key of F>_p<n, 5 digits>; its questions are <pair_id>_pos and <pair_id>_neg")
#: options of a build from the source that an import cannot honour (given with --from-release: an error)
_REBUILD_ONLY = ("negatives", "sampling")
_SOURCES = {
    "compre_cap": ("CompreCap (Lu et al., *Benchmarking Large Vision-Language Models via Directed Scene Graph for "
                   "Comprehensive Image Captioning*, CVPR 2025; COCO images)"),
    "docci": ("DOCCI (Onoe et al., *DOCCI: Descriptions of Connected and Contrasting Images*, ECCV 2024, "
              "arXiv [2404.19753](https://arxiv.org/abs/2404.19753))"),
}


def add_release_arguments(group: Any) -> None:
    group.add_argument("--from-release", metavar="TABLES", default=None,
                       help="build from the FINER authors' released items instead of --source: a folder of their "
                            "tables (multi_obj.csv, multi_attr.csv, multi_rel.csv, wh.csv, or Parquet) or a Hub "
                            "dataset id ORG/NAME[@REVISION]; the questions are kept byte for byte (the recommended "
                            "way to publish this benchmark); no model runs")
    group.add_argument("--images", type=Path, metavar="DIR", default=None,
                       help="with --from-release: the folder of the image files the tables name (default "
                            "TABLES/images; not needed when the tables embed the images)")


def release_options(args: Any) -> dict[str, Any]:
    return {name: value for name in ("from_release", "images") if (value := getattr(args, name, None)) is not None}


def release_variant(builder: DatasetBuilder, options: dict[str, Any]) -> DatasetBuilder:
    """``builder`` itself, or the :class:`ReleaseImport` of it when ``options`` say ``--from-release``."""
    if not options.get("from_release"):
        if options.get("images") is not None:
            raise UsageError("--images goes with --from-release (a build from --source finds its images there)")
        return builder
    for name in _REBUILD_ONLY:
        if options.get(name):
            raise UsageError(f"--{name} shapes new questions; --from-release keeps the authors' questions: drop one")
    return ReleaseImport(builder)


def release_folder(spec: str) -> Path:
    """The folder of ``--from-release``: a local folder, or the snapshot of a Hub dataset id."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UsageError(f"--from-release {spec}: a file; give the folder holding the tables, or a Hub dataset id")
    repo, _, revision = spec.partition("@")
    if not is_hub_id(repo):
        raise UsageError(f"--from-release {spec}: no such folder, and not a Hub dataset id ORG/NAME[@REVISION]")
    return hub_snapshot(repo, revision or None)


@dataclass(frozen=True)
class _Image:
    key: str
    record: dict[str, Any]
    path: Path
    first: ReleaseRow


class ReleaseImport(DatasetBuilder):
    """The build of a benchmark from the authors' released tables (module docstring)."""

    record_schema: ClassVar[Path] = SCHEMA
    splits: ClassVar[tuple[str, ...]] = ("test",)
    requires_llm: ClassVar[bool] = False
    llm_stages: ClassVar[dict[str, type]] = {}

    def __init__(self, base: DatasetBuilder):
        self.base = base
        self.name, self.pretty_name, self.license = base.name, base.pretty_name, base.license
        self.license_text = (f"{base.license_text} The questions are the items released by the FINER authors, "
                             "imported unchanged.")
        self.task_categories, self.tags = base.task_categories, base.tags
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def folder(self) -> Path:  # type: ignore[override]  # the base builder's VERSION and release notes
        return self.base.folder()

    def card_path(self) -> Path:
        return shipped_folder("hub_cards") / CARD

    # -- options -------------------------------------------------------------------------------

    def add_arguments(self, group: Any) -> None:
        self.base.add_arguments(group)

    def options_from(self, args: Any) -> dict[str, Any]:
        return self.base.options_from(args)

    def recorded_options(self, options: dict[str, Any]) -> dict[str, Any]:
        spec = str(options["from_release"])
        shown = spec if not Path(spec).expanduser().exists() else (Path(spec).resolve().name or "TABLES")
        images = options.get("images")
        return {"from_release": shown, **({"images": Path(images).resolve().name or "IMAGES"} if images else {})}

    def protected_paths(self, options: dict[str, Any]) -> list[Path]:
        return [Path(options["images"])] if options.get("images") else []

    def source_from_options(self, options: dict[str, Any]) -> Path | None:
        return release_folder(str(options["from_release"]))

    # -- hooks ---------------------------------------------------------------------------------

    def source_files(self, source: Path) -> list[tuple[str, list[Path]]]:
        return [("release_tables", [f for table in find_tables(Path(source)) for f in table.files])]

    def read_source(self, source: Path, ctx: BuildContext) -> list[_Image]:
        if ctx.llm is not None:
            raise UsageError("--from-release imports the authors' questions and runs no model: drop --llm-*/--replay")
        source = Path(source)
        images = ctx.options.get("images")
        folder = Path(images) if images else (source / "images" if (source / "images").is_dir() else None)
        if images and not folder.is_dir():
            raise UsageError(f"--images {images}: no such folder")
        self._scratch = None
        embedded: dict[str, tuple[str, Path, ReleaseRow]] = {}
        pairs: list[ReleasePair] = []
        tables: dict[str, dict[str, Any]] = {}
        for table in find_tables(source):
            rows, qtypes = [], Counter()
            bar = tqdm(iter_rows(table), desc=f"read {table.name}", unit="row",
                       disable=None if ctx.progress is None else not ctx.progress)
            for path, line, row, values in bar:
                name, data = image_cell(values)
                rows.append(parse_row(values, file=path, row=row, line=line, image=name))
                qtypes[rows[-1].qtype] += 1
                if data is not None:
                    self._embed(rows[-1], data, embedded)
            pairs += release_pairs(table.setting, rows, file=table.files[-1])
            tables[table.setting] = {"files": [{"name": f.relative_to(source).as_posix(), "sha256": sha256_file(f)[0]}
                                               for f in table.files],
                                     "rows": len(rows), "pairs": len(rows) // 2, "qtypes": dict(sorted(qtypes.items()))}
        units = []
        for key, record, first in image_records(self.name, pairs):
            name = record["image_file"]
            path = embedded[name][1] if name in embedded else self._image_file(folder, first)
            units.append(_Image(key=key, record=record, path=path, first=first))
        ctx.stats.update(tables=tables, embedded=bool(embedded), images_folder=folder if not embedded else None,
                         structure=structure_counts(u.record for u in units))
        return units

    def _embed(self, row: ReleaseRow, data: bytes, embedded: dict[str, tuple[str, Path, ReleaseRow]]) -> None:
        """Write an image the table embeds once into a scratch folder (the core reads images from files)."""
        digest = hashlib.sha256(data).hexdigest()
        if row.image in embedded:
            if embedded[row.image][0] != digest:
                first = embedded[row.image][2]
                raise row.fail(f"image {row.image!r} has other bytes than in {Path(first.file).name} row {first.row}",
                               "image")
            return
        name = _checked_name(row)
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="finer-release-images-")
        path = Path(self._scratch.name) / f"{len(embedded):06d}{name.suffix.lower()}"
        path.write_bytes(data)
        embedded[row.image] = (digest, path, row)

    @staticmethod
    def _image_file(folder: Path | None, row: ReleaseRow) -> Path:
        if folder is None:
            raise row.fail(f"the table names image file {row.image!r} but embeds no image: pass --images DIR (the "
                           "folder holding the images), or put them in an images/ folder beside the tables", "image")
        name = _checked_name(row)
        if not (folder / name).is_file():
            raise row.fail(f"image file not found: {folder / name}", "image")
        return folder / name

    def make_sample(self, unit: _Image, ctx: BuildContext) -> Sample:
        ctx.report.consider(len(unit.record["pairs"]))
        return Sample(key=unit.key, split=self.splits[0],
                      record=unit.record, image=unit.path, origin=(Path(unit.first.file), f"row {unit.first.row}"))

    # -- manifest and card ---------------------------------------------------------------------

    def counts(self, ctx: BuildContext) -> dict[str, Any]:
        structure = ctx.stats.get("structure") or {"pairs": {s: 0 for s in SETTINGS}, "pairs_by_k": {}, "recovered": {}}
        total = sum(structure["pairs"].values())
        return {"records": total, "questions": 2 * total, **structure}

    def provenance(self, ctx: BuildContext) -> dict[str, Any]:
        spec = str(ctx.options.get("from_release"))
        hub = not Path(spec).expanduser().exists()
        folder = ctx.stats.get("images_folder")
        return {"release": {
            "from": self.recorded_options(ctx.options)["from_release"],
            "hub_revision": ctx.source.name if hub else None,
            "tables": ctx.stats.get("tables", {}),
            "images": "embedded in the tables" if ctx.stats.get("embedded") else f"files in {Path(folder).name}/",
            "ids": ID_RULE,
            "scene_graph": "none: the release has no scene graph (records hold an empty one)",
        }}

    def card_values(self, ctx: BuildContext, manifest: dict[str, Any]) -> dict[str, Any]:
        return release_card_values(manifest, source=_SOURCES.get(self.name, self.pretty_name))


def _checked_name(row: ReleaseRow) -> Path:
    """The row's image file name: relative, inside its folder, of a supported type."""
    name = Path(row.image)
    if name.is_absolute() or ".." in name.parts:
        raise row.fail(f"must be a file name inside the images folder, got {row.image!r}", "image")
    if name.suffix.lower() not in IMAGE_EXTENSIONS:
        raise row.fail(f"unsupported image type {name.suffix!r} (expected .jpg, .jpeg or .png)", "image")
    return name


def release_card_values(manifest: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The ``$placeholders`` of ``hub_cards/finer_release.md`` beyond the core's, from the manifest."""
    counts, release = manifest["counts"], manifest["provenance"]["release"]
    tables = release["tables"]
    digest = next((s for s in manifest["sources"] if s["name"] == "release_tables"), {"sha256": "?", "files": 0})
    table_rows, recovered_rows = [], []
    for setting in SETTINGS:
        table = tables.get(setting)
        if table is None:
            table_rows.append(f"| `{setting}` | not in the release | 0 | 0 | - |")
        else:
            files = ", ".join(f"`{f['name']}`" for f in table["files"])
            qtypes = ", ".join(f"`{q}` {n}" for q, n in table["qtypes"].items())
            table_rows.append(f"| `{setting}` | {files} | {table['rows']} | {table['pairs']} | {qtypes} |")
        found = counts["recovered"].get(setting, {})
        by_k = ", ".join(f"{k}: {n}" for k, n in counts["pairs_by_k"].get(setting, {}).items()) or "-"
        recovered_rows.append(f"| `{setting}` | {counts['pairs'][setting]} | {found.get('k', 0)} | "
                              f"{found.get('negated_index', 0)} | {found.get('elements', 0)} | {by_k} |")
    revision = release.get("hub_revision")
    return {
        "source_dataset": source,
        "release_from": release["from"],
        "release_revision": f" at commit `{revision}`" if revision else "",
        "release_digest": digest["sha256"],
        "release_files": digest["files"],
        "images_origin": release["images"],
        "table_rows": "\n".join(table_rows),
        "recovered_rows": "\n".join(recovered_rows),
        "total_pairs": counts["records"],
        "total_questions": counts["questions"],
    }
