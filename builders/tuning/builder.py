"""FINER-Tuning: Pixmo-cap captions -> DPO preference tuples (paper, section 3, appendices C and G).

Pipeline of one build (``finer build tuning --source PIXMO_DIR --out OUT --llm-base-url ... --llm-model ...``):

1. read the Parquet shards (:mod:`.source`): one row per image URL, with skips for bad rows,
   duplicate URLs and COCO/DOCCI URLs (leakage guard); with ``--image-category`` (off by
   default), the LLM sorts the captions into appendix E.2's classes (:mod:`.category`) and only
   the rows of the kept classes go on, before any image is fetched;
2. fetch every image (:mod:`.images`, :mod:`finer_datasets.fetch`): resumable cache, dead URLs
   counted and skipped; images whose sha256 is on ``--exclude-sha256`` are skipped too;
3. the LLM stage (:mod:`.stage`): phrases Ψ+, negatives Ψ− and Wh pairs from each caption;
4. tuples (appendix G's templates by default), selection and splits
   (:mod:`finer_datasets.preference.construct`), pure and seeded; a selection smaller than its
   target (160K for every preset) is one warning line and is recorded in the manifest and card;
5. one sample per image: the image and a record with its provenance, phrases and tuples.

``--part I/N`` builds the images whose caption (as the prompts see it) hashes to part I: every
prompt depends on the caption, so one prompt is never asked in two parts; ``finer merge`` rebuilds
the whole release from the parts' transcripts, shards and reports, byte for byte what one machine
builds (``finer build ... --executor`` runs the parts and the merge as datatrove tasks).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from finer_datasets.core.builder import BuildContext, DatasetBuilder, Sample
from finer_datasets.core.validation import schema_path
from finer_datasets.errors import UsageError
from finer_datasets.preference.configs import shards_for, short_text, target_size
from finer_datasets.preference.construct import (
    QUERIES,
    TYPES,
    assign_splits,
    candidate_tuples,
    part_index,
    preselect,
    subsample,
)

from . import options as opts
from .category import CATEGORIES, ImageCategories
from .images import DEAD, EXCLUDED, check_image_cache, fetch_outcomes, import_outcomes
from .source import (
    CAPTION_WORDS,
    LEAKAGE_PATTERNS,
    Row,
    file_rows,
    parquet_files,
    prompt_caption,
    read_rows,
)
from .stage import TuningPhrases, prompt_identity

__all__ = ["Tuning", "SAMPLE_URL_PREFIX"]

logger = logging.getLogger(__name__)

#: URL prefix of the bundled sample and dummy data (served by a local image server in test builds)
SAMPLE_URL_PREFIX = "https://pixmo-sample.test/"


class Tuning(DatasetBuilder):
    """Builder of FINER-Tuning."""

    name = "tuning"
    pretty_name = "FINER-Tuning"
    license = "odc-by"
    license_text = ("The captions come from Pixmo-cap (Allen Institute for AI, ODC-BY 1.0); the questions and answers "
                    "are derived from them and released under the same terms. The images are third-party web images "
                    "listed by Pixmo-cap; they remain under the terms of their owners and are included for research use.")
    record_schema = schema_path("tuning_image")
    splits = ("train", "validation")
    task_categories = ("visual-question-answering",)
    tags = ("hallucination", "multimodal", "dpo", "preference", "negative-queries", "webdataset")
    policy_skips = frozenset({DEAD, EXCLUDED, "duplicate_url", "no_tuples", "not_selected", "image_category"})
    llm_stages = {"phrases": TuningPhrases, "category": ImageCategories}
    requires_llm = True

    # -- options -------------------------------------------------------------------------------

    def add_arguments(self, group: Any) -> None:
        opts.add_arguments(group)

    def options_from(self, args: Any) -> dict[str, Any]:
        return opts.options_from_args(args)

    def recorded_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return opts.parse_options(options).recorded()

    def protected_paths(self, options: dict[str, Any]) -> list[Path]:
        o = opts.parse_options(options)
        return [p for p in (o.image_cache, o.exclude_sha256, *o.from_parts) if p is not None]

    def scripted_handlers(self) -> list[Any]:
        from . import scripted

        return [scripted.answer]

    @contextmanager
    def test_context(self, source: Path) -> Iterator[dict[str, Any]]:
        """A local image server over ``source/images`` and a temporary image cache."""
        from finer_datasets.testing.image_server import ImageServer

        with ImageServer(Path(source) / "images") as server, tempfile.TemporaryDirectory(prefix="finer-tuning-") as tmp:
            yield {"url_rewrite": ("^" + re.escape(SAMPLE_URL_PREFIX), server.url("/")),
                   "image_cache": Path(tmp) / "images",
                   "allow_servers": (f"127.0.0.1:{server.port}",)}  # that server only, not every private address

    # -- building in parts ---------------------------------------------------------------------

    def part_of(self, manifest: dict[str, Any]) -> tuple[int, int] | None:
        part = (manifest.get("provenance") or {}).get("part")
        return opts.parse_part(part) if part else None

    def merge_options(self, parts: list[Path], options: dict[str, Any], scratch: Path) -> dict[str, Any]:
        return {**options, "part": None, "from_parts": [Path(p) for p in parts],
                "image_cache": options.get("image_cache") or scratch / "images"}

    # -- hooks ---------------------------------------------------------------------------------

    def source_files(self, source: Path) -> list[tuple[str, list[Path]]]:
        return [("parquet", parquet_files(source))]

    def read_source(self, source: Path, ctx: BuildContext) -> list[Row]:
        o = opts.parse_options(ctx.options)
        if o.image_cache is not None:
            check_image_cache(o.image_cache, source)  # before anything is fetched or written
        totals: dict[str, int] = {}
        rows = read_rows(source, ctx.report, max_images=o.max_images, totals=totals)
        if o.part is not None:
            rows = [r for r in rows if part_index(prompt_identity(r), o.part[1]) == o.part[0] - 1]
        shards = sum(n / file_rows(source / rel) for rel, n in totals.items())
        ctx.stats.update(options=o, rows_read=totals, rows=len(rows), shards_read=shards)
        ctx.report.consider(len(rows))
        return sorted(rows, key=lambda r: r.key)

    def prepare(self, units: list[Row], ctx: BuildContext) -> None:
        o: opts.TuningOptions = ctx.stats["options"]
        if o.image_cache is None:
            raise UsageError("FINER-Tuning needs an image cache folder: pass --image-cache (default OUT.images)")
        excluded, list_sha = opts.read_exclusions(o.exclude_sha256)  # before any download: fail fast
        if o.image_category is not None:
            units = self._categories(units, o, ctx)
        if o.from_parts:
            outcomes = import_outcomes(units, o.image_cache, o.from_parts)
        else:
            outcomes, fetched = fetch_outcomes(units, o.image_cache, url_rewrite=o.url_rewrite, progress=ctx.progress,
                                               **dict(o.fetch))
            logger.info("images: %s", fetched.summary())
        ctx.stats.update(outcomes=outcomes, exclusion_list=(len(excluded), list_sha))
        usable = []
        for row in units:
            out = outcomes[row.key]
            if out.reason == DEAD:
                ctx.report.skip(DEAD, path=row.file, record=row.row, field="image_url", detail=out.detail)
            elif out.reason == EXCLUDED or (out.sha256 is not None and out.sha256 in excluded):
                ctx.report.skip(EXCLUDED, path=row.file, record=row.row, field="image_url",
                                detail=out.detail or f"sha256 {out.sha256} is on the exclusion list")
            else:
                usable.append(row)
        answers = ctx.llm.stage("phrases").run(usable, ctx.seed)
        self._tuples(usable, answers, o, ctx)

    def _categories(self, units: list[Row], o: opts.TuningOptions, ctx: BuildContext) -> list[Row]:
        """Appendix E.2: the LLM's class of every caption; the rows of the kept classes (the others
        skipped by policy, unclassifiable ones as unusable answers), counts per class in the stats."""
        stage = ctx.llm.stage("category") if ctx.llm is not None else None
        if stage is None:
            raise UsageError("--image-category needs the LLM stage 'category', which this run lacks (its transcript "
                             "was recorded without it, or --llm-stages leaves it out): build with --llm-base-url and "
                             "--llm-model")
        answers = stage.run(units)
        found: Counter[str] = Counter()
        kept = []
        for row in units:
            category, problem = answers[row.key]
            ctx.report.consider(1)
            if problem is not None:
                found["unusable"] += 1
                ctx.report.skip("llm_unusable_answer", path=row.file, record=row.row, field="tuning_category",
                                detail=problem)
                continue
            found[category] += 1
            if category in o.image_category:
                kept.append(row)
            else:
                ctx.report.skip("image_category", path=row.file, record=row.row, field="caption",
                                detail=f"{category} (kept: {', '.join(o.image_category)})")
        ctx.stats["categories"] = {"classes": {c: found[c] for c in CATEGORIES}, "unusable": found["unusable"],
                                   "kept": list(o.image_category), "rows_kept": len(kept)}
        return kept

    def _tuples(self, usable: list[Row], answers: dict[str, Any], o: opts.TuningOptions, ctx: BuildContext) -> None:
        report, seed = ctx.report, ctx.seed
        pools: dict[str, tuple[Row, Any, list[dict[str, Any]], list[str]]] = {}
        for row in usable:
            answer = answers[row.key]
            report.consider(6)  # the prompts of one image
            for task, problem in answer.problems:
                report.skip("llm_unusable_answer", path=row.file, record=row.row, field=task, detail=problem)
            tuples = candidate_tuples(answer.phrases, answer.wh, row.key, seed, o.templates)
            if not tuples:
                report.skip("no_tuples", path=row.file, record=row.row, field="caption",
                            detail="no usable phrase or Wh question in the caption")
                continue
            pools[row.key] = (row, answer, tuples, preselect(tuples, row.key, o.selection, seed))
        cap = None if o.part is not None else o.selection.max_tuples  # parts defer the global cap to the merge
        selectable = [i for *_, ids in pools.values() for i in ids]
        chosen = subsample(selectable, cap, seed)
        ctx.stats["target"] = size = target_size(cap, len(selectable), ctx.stats.get("shards_read", 0.0))
        if size is not None and not size["reached"]:
            logger.warning("preset %s is short of its target: %s", o.preset, short_text(size))
        records: dict[str, dict[str, Any]] = {}
        ctx.stats["candidates"] = sum(len(tuples) for _, _, tuples, _ in pools.values())
        for key, (row, answer, tuples, _) in pools.items():
            # the shards hold exactly the release: the selected tuples (the others are only counted;
            # another preset rebuilds from the transcript without a model call)
            kept = [{k: v for k, v in t.items() if k != "selected"} for t in tuples if t["id"] in chosen]
            if not kept:
                report.skip("not_selected", path=row.file, record=row.row, field="tuples",
                            detail=f"no tuple of this image is in the selection ({o.preset})")
                continue
            records[key] = self._record(row, answer, kept, ctx)
        splits = assign_splits(records, seed, o.validation_ratio)
        ctx.stats["prepared"] = {key: (splits[key], record) for key, record in records.items()}

    def _record(self, row: Row, answer: Any, tuples: list[dict[str, Any]], ctx: BuildContext) -> dict[str, Any]:
        out = ctx.stats["outcomes"][row.key]
        if out.path is None:
            raise UsageError(f"{row.rel} row {row.row}: the part builds skipped this image, but the merge keeps it; "
                             "the parts were built with other options or another version")
        return {"dataset": self.name, "image_id": row.key,
                "source": {"file": row.rel, "row": row.row, "url": row.url, **out.source_fields()},
                "caption": row.caption, "caption_words": prompt_caption(row.caption)[1],
                "phrases": [answer.phrases[k].to_record() for k in ("obj", "attr", "rel") if k in answer.phrases],
                "wh": [answer.wh.to_record()] if answer.wh is not None else [], "tuples": tuples}

    def make_sample(self, unit: Row, ctx: BuildContext) -> Sample | None:
        prepared = ctx.stats["prepared"].get(unit.key)
        if prepared is None:
            return None
        split, record = prepared
        return Sample(key=unit.key, split=split, record=record, image=ctx.stats["outcomes"][unit.key].path,
                      origin=(unit.file, unit.row))

    # -- statistics ----------------------------------------------------------------------------

    def counts(self, ctx: BuildContext) -> dict[str, Any]:
        prepared = ctx.stats.get("prepared", {})
        selected = [(split, t) for split, r in prepared.values() for t in r["tuples"]]
        outcomes = ctx.stats.get("outcomes", {})
        dead = Counter(o.detail.split(":", 1)[0] for o in outcomes.values() if o.reason == DEAD)
        urls = len(outcomes)
        leaks = [s for s in ctx.report.skips if s["reason"] == EXCLUDED]
        by_url = sum(1 for s in leaks if " image URL: " in s["detail"])  # read_rows' detail; the rest: by sha256
        out = {
            "records": len(selected),
            "tuples": {
                "candidates": ctx.stats.get("candidates", 0),
                "selected": len(selected),
                "target": ctx.stats.get("target"),
                "by_type": {k: {q: sum(1 for _, t in selected if t["type"] == k and t["query"] == q) for q in QUERIES}
                            for k in TYPES},
                "by_query": {q: sum(1 for _, t in selected if t["query"] == q) for q in QUERIES},
                "by_split": {s: sum(1 for sp, _ in selected if sp == s) for s in self.splits},
            },
            "rows": {"read": sum(ctx.stats.get("rows_read", {}).values()), "usable": ctx.stats.get("rows", 0)},
            "fetch": {"urls": urls, "usable": urls - sum(dead.values()), "dead": sum(dead.values()),
                      "dead_rate": round(sum(dead.values()) / urls, 6) if urls else 0.0,
                      "dead_reasons": dict(sorted(dead.items()))},
            "leakage": {"url_pattern": by_url, "sha256": len(leaks) - by_url},
        }
        if "categories" in ctx.stats:
            out["image_category"] = ctx.stats["categories"]
        return out

    def provenance(self, ctx: BuildContext) -> dict[str, Any]:
        o: opts.TuningOptions = ctx.stats["options"]
        used = Counter(r["source"]["file"] for _, r in ctx.stats.get("prepared", {}).values())
        size, list_sha = ctx.stats.get("exclusion_list", (0, None))
        out = {
            "source_files": [{"file": f, "rows_read": n, "images_used": used.get(f, 0)}
                             for f, n in sorted(ctx.stats.get("rows_read", {}).items())],
            "caption_words": CAPTION_WORDS,
            "selection": {"preset": o.preset, **o.selection.to_dict(), "templates": o.templates,
                          "shards_at_paper_yield": shards_for(o.selection), "validation_ratio": o.validation_ratio},
            "image_category": {"keep": list(o.image_category)} if o.image_category is not None else None,
            "leakage_guard": {"url_patterns": {k: p.pattern for k, p in LEAKAGE_PATTERNS.items()},
                              "exclusion_list": {"hashes": size, "sha256": list_sha}},
        }
        if o.part is not None:
            out["part"] = f"{o.part[0]}/{o.part[1]}"
        return out

    def card_values(self, ctx: BuildContext, manifest: dict[str, Any]) -> dict[str, Any]:
        from .card import card_values

        return card_values(manifest)
