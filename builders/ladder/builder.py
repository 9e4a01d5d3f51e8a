"""FINER-Ladder: the granularity ladder of the paper (section 1, Fig. 1; appendix E.7, Fig. 12), built
from FINER benchmark builds.

Its source is not an annotation folder but one or more *built* FINER benchmarks: ``--source DIR``
is a folder made by ``finer build compre_cap|docci`` (it holds ``manifest.json``), or a folder
holding such folders (``DIR/compre_cap``, ``DIR/docci``). Every source is verified against its
manifest first and read straight from its shards (:func:`finer_datasets.core.reader.iter_image_refs`):
the scene graph of each image, with the 4 negatives of every element, gives the image's chain
(:mod:`finer_datasets.mcq.ladder`), and the image bytes are copied from the source shard as they
are. Images without a chain are ``no_full_ladder`` skips by design. ``--draw`` caps the images per
source, drawn with the seed (the paper: 320 from FINER-CompreCap, 1,687 from FINER-DOCCI; all of
them when a source has fewer). Each image gives 14 pairs: 7 levels x 2 forms (``mcq``, ``yesno``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from finer_datasets.core.builder import BuildContext, DatasetBuilder, Sample, image_key
from finer_datasets.core.manifest import MANIFEST_NAME, verify
from finer_datasets.core.reader import ShardMember, iter_image_refs
from finer_datasets.core.validation import schema_path
from finer_datasets.errors import SourceError, UsageError, VerificationError
from finer_datasets.mcq.ladder import FORMS, LEVELS, NO_CHAIN, Chain, find_chain, ladder_pairs, ladder_setting
from finer_datasets.mcq.records import SCHEMA as BENCHMARK_SCHEMA

__all__ = ["Ladder", "DEFAULT_DRAW", "parse_draw"]

#: images drawn per source benchmark by default (paper, section 1: 320 and 1,687)
DEFAULT_DRAW = {"compre_cap": 320, "docci": 1687}
#: a source whose images could not give distinct options at some level (a skip by design)
NOT_DISTINCT = "ladder_options_not_distinct"


def parse_draw(spec: str | None) -> dict[str, int | None]:
    """``compre_cap=320,docci=all`` -> ``{"compre_cap": 320, "docci": None}`` over the defaults
    (``None``: every image with a ladder)."""
    draw: dict[str, int | None] = dict(DEFAULT_DRAW)
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        name, sep, value = item.partition("=")
        value = value.strip()
        if not sep or not name.strip() or not (value == "all" or (value.isdigit() and int(value) > 0)):
            raise UsageError(f"--draw {spec!r}: give NAME=N or NAME=all per source, comma-separated "
                             "(e.g. compre_cap=320,docci=1687)")
        draw[name.strip()] = None if value == "all" else int(value)
    return draw


def draw_spec(draw: dict[str, int | None]) -> str:
    return ",".join(f"{name}={'all' if n is None else n}" for name, n in sorted(draw.items()))


@dataclass(frozen=True)
class LadderSource:
    """One verified FINER benchmark build the ladder reads."""

    name: str
    folder: Path
    label: str  # the folder as the manifest records it: relative to --source ("." for --source itself)
    manifest: dict[str, Any]


@dataclass(frozen=True)
class LadderImage:
    source: LadderSource
    key: str
    source_key: str
    image_id: str
    image_file: str
    image: ShardMember
    chain: Chain
    pairs: list[dict[str, Any]]


def find_sources(source: Path) -> list[LadderSource]:
    """The built benchmarks of ``--source``: the folder itself, or its sub-folders holding a manifest."""
    if (source / MANIFEST_NAME).is_file():
        folders = [(source, ".")]
    else:
        folders = [(p, p.name) for p in sorted(source.iterdir()) if p.is_dir() and (p / MANIFEST_NAME).is_file()]
    if not folders:
        raise SourceError(f"no built FINER benchmark: give a folder made by `finer build compre_cap|docci` (it holds "
                          f"{MANIFEST_NAME}) or a folder holding such folders", path=source)
    found: dict[str, LadderSource] = {}
    for folder, label in folders:
        try:
            manifest = verify(folder)
        except VerificationError as exc:
            raise VerificationError(exc.problems, subject=f"source {folder}") from None
        if manifest.get("layout") != "per-image/1" or manifest.get("record_schema") != BENCHMARK_SCHEMA.name:
            raise SourceError(f"{manifest.get('pretty_name')} {manifest.get('version')} is not a FINER benchmark build "
                              f"with scene graphs (its records are {manifest.get('record_schema')}, layout "
                              f"{manifest.get('layout', '1.x')}; the ladder needs {BENCHMARK_SCHEMA.name} per image)",
                              path=folder / MANIFEST_NAME)
        name = manifest["dataset"]
        if name in found:
            raise SourceError(f"two builds of {name}: {found[name].folder} and {folder}; give one per benchmark",
                              path=folder / MANIFEST_NAME)
        found[name] = LadderSource(name, folder, label, manifest)
    return list(found.values())


class Ladder(DatasetBuilder):
    name = "ladder"
    pretty_name = "FINER-Ladder"
    license = "cc-by-4.0"
    license_text = ("The queries are derived from the FINER benchmark builds named under \"Sources\" and carry their "
                    "licences: FINER-CompreCap (CompreCap annotations, CC BY 4.0; COCO images under their own terms) "
                    "and FINER-DOCCI (DOCCI images and descriptions, CC BY 4.0).")
    record_schema: ClassVar[Path] = schema_path("ladder_image")
    task_categories: ClassVar[tuple[str, ...]] = ("visual-question-answering", "multiple-choice")
    tags: ClassVar[tuple[str, ...]] = ("hallucination", "multimodal", "benchmark", "negative-queries", "granularity",
                                       "webdataset")
    policy_skips: ClassVar[frozenset[str]] = frozenset({NO_CHAIN, NOT_DISTINCT})

    def add_arguments(self, group: Any) -> None:
        group.add_argument("--draw", metavar="SPEC", default=None,
                           help="images drawn per source benchmark, e.g. compre_cap=320,docci=all (default: "
                                f"{draw_spec(DEFAULT_DRAW)}, as in the paper; all of them when a source has fewer)")

    def options_from(self, args: Any) -> dict[str, Any]:
        return {"draw": getattr(args, "draw", None)}

    def recorded_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"draw": draw_spec(parse_draw(options.get("draw")))}

    def source_files(self, source: Path) -> list[tuple[str, list[Path]]]:
        return [(f"{s.name} manifest", [s.folder / MANIFEST_NAME]) for s in find_sources(source)]

    def read_source(self, source: Path, ctx: BuildContext) -> list[LadderImage]:
        draw = parse_draw(ctx.options.get("draw"))
        sources = find_sources(source)
        unknown = sorted(set(draw) - set(DEFAULT_DRAW) - {s.name for s in sources})
        if unknown:
            raise UsageError(f"--draw names {', '.join(unknown)}, not a source here ({', '.join(s.name for s in sources)})")
        units: list[LadderImage] = []
        ctx.stats["sources"] = {}
        for src in sources:
            eligible, seen = self._eligible(src, ctx)
            n = draw.get(src.name)
            chosen = eligible if n is None or n >= len(eligible) else \
                random.Random(f"{ctx.seed}:ladder:draw:{src.name}").sample(eligible, n)
            ctx.stats["sources"][src.name] = {"label": src.label, "version": src.manifest["version"],
                                              "pretty_name": src.manifest.get("pretty_name", src.name),
                                              "manifest_digest": src.manifest.get("digest", ""),
                                              "data_digest": src.manifest.get("data_digest", ""),
                                              "images": seen, "with_ladder": len(eligible),
                                              "drawn": len(chosen), "draw": "all" if n is None else n}
            units += chosen
        return sorted(units, key=lambda u: u.key)

    def _eligible(self, src: LadderSource, ctx: BuildContext) -> tuple[list[LadderImage], int]:
        """The images of ``src`` that have a ladder, and how many images it holds."""
        eligible, seen, graphs = [], 0, 0
        for key, record, image in iter_image_refs(src.folder, src.manifest):
            where = image.shard if image is not None else src.folder / MANIFEST_NAME
            if record is None or image is None or "scene_graph" not in record:
                raise SourceError("a sample without its image or its json record with a scene graph", path=where,
                                  record=key)
            seen += 1
            ctx.report.consider()
            graph = record["scene_graph"]
            graphs += bool(graph["objects"])
            chain = find_chain(graph, random.Random(f"{ctx.seed}:ladder:{src.name}:{record['image_id']}"))
            if chain is None:
                ctx.report.skip(NO_CHAIN, path=where, record=record["image_id"], field="scene_graph",
                                detail="no object with 2 attributes, a relation to an object with an attribute and "
                                       "a second one onward (every element with 4 negatives)")
                continue
            ladder_key = image_key(f"{src.name}-{key}")
            try:
                pairs = ladder_pairs(chain, key=ladder_key, source=src.name, seed=ctx.seed)
            except ValueError as exc:
                ctx.report.skip(NOT_DISTINCT, path=where, record=record["image_id"], field="scene_graph",
                                detail=str(exc))
                continue
            eligible.append(LadderImage(src, ladder_key, key, record["image_id"], record["image_file"], image, chain, pairs))
        if seen and not graphs:
            raise SourceError(f"{src.manifest.get('pretty_name')} {src.manifest.get('version')} has no scene graphs (a "
                              "build imported from the authors' release?): build the benchmark from its source",
                              path=src.folder / MANIFEST_NAME)
        return eligible, seen

    def make_sample(self, unit: LadderImage, ctx: BuildContext) -> Sample | None:
        src = unit.source
        record = {
            "dataset": self.name,
            "image_id": unit.image_id,
            "image_file": unit.image_file,
            "source": {"dataset": src.name, "version": src.manifest["version"], "key": unit.source_key,
                       "manifest_digest": src.manifest.get("digest", "")},
            "ladder": unit.chain.to_list(),
            "second_relation_from": "related_object" if unit.chain.nested else "subject",
            "pairs": unit.pairs,
        }
        by_level = ctx.stats.setdefault("pairs_by_level", {})
        for pair in unit.pairs:
            by_level.setdefault(pair["setting"], Counter())[pair["level"]] += 1
        ctx.stats.setdefault("example", record)
        return Sample(key=unit.key, split=self.splits[0], record=record, image=unit.image,
                      origin=(unit.image.shard, unit.source_key))

    def counts(self, ctx: BuildContext) -> dict[str, Any]:
        by_level = ctx.stats.get("pairs_by_level", {})
        settings = sorted(by_level)
        return {
            "records": sum(sum(c.values()) for c in by_level.values()),
            "pairs": {s: sum(by_level[s].values()) for s in settings},
            "pairs_by_level": {s: {str(level): n for level, n in sorted(by_level[s].items())} for s in settings},
            "sources": {name: {k: v for k, v in info.items() if k in ("images", "with_ladder", "drawn")}
                        for name, info in ctx.stats.get("sources", {}).items()},
        }

    def provenance(self, ctx: BuildContext) -> dict[str, Any]:
        return {"sources": [{"dataset": name, "folder": info["label"], "version": info["version"],
                             "manifest_digest": info["manifest_digest"], "data_digest": info["data_digest"]}
                            for name, info in ctx.stats.get("sources", {}).items()]}

    def card_values(self, ctx: BuildContext, manifest: dict[str, Any]) -> dict[str, Any]:
        from .card import card_values

        return card_values(ctx.stats, manifest, FORMS, LEVELS, ladder_setting)
