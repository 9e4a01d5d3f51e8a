"""The build core: source -> units -> (model stages) -> one sample per image -> validated shards,
card and manifest, written into a staging folder that replaces the output only on success.

It knows no dataset: everything specific comes from the builder's hooks
(:class:`~finer_datasets.core.builder.DatasetBuilder`). The path of one record::

    builder.read_source  ->  builder.prepare (LLM/MLLM, before any shard)  ->  builder.make_sample
    ->  image read + fully decoded  ->  record validated against builder.record_schema
    ->  ShardWriter (data/<split>-NNNNN.tar: <key>.<jpg|png> + <key>.json)
    ->  build_report.json, transcript.jsonl, README.md (card), manifest.json  ->  atomic swap into --out
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from finer_datasets._version import __version__
from finer_datasets.core.builder import (
    DEFAULT_MAX_SKIP_RATE,
    BuildContext,
    BuildReport,
    DatasetBuilder,
    Sample,
    labelled_version,
)
from finer_datasets.core.card import card_metadata, render_card
from finer_datasets.core.images import read_image
from finer_datasets.core.manifest import data_digest, file_entry, fingerprint_files, write_manifest
from finer_datasets.core.output import staged_output
from finer_datasets.core.shards import ShardWriter, encode_json, shard_pattern
from finer_datasets.core.validation import schema_name, validate
from finer_datasets.errors import FinerError, QualityError, SourceError, UsageError

__all__ = ["BuildResult", "build", "DEFAULT_MAX_SAMPLES", "DEFAULT_MAX_BYTES", "REPORT", "CARD", "TRANSCRIPT"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SAMPLES = 10_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
REPORT = "build_report.json"
TRANSCRIPT = "transcript.jsonl"
CARD = "README.md"
_IMAGE_THREADS = 2  # image reads + full decodes in flight while the next records are made


@dataclass
class BuildResult:
    """What :func:`build` produced."""

    out: Path
    manifest: dict[str, Any]
    report: BuildReport
    timings: dict[str, float] = field(default_factory=dict)


def build(
    builder: DatasetBuilder,
    *,
    source: str | Path | None,
    out: str | Path,
    seed: int = 0,
    strict: bool = False,
    overwrite: bool = False,
    max_skip_rate: float = DEFAULT_MAX_SKIP_RATE,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    command: Sequence[str] | None = None,
    repo_id: str | None = None,
    progress: bool | None = None,
    llm: Any = None,
    options: dict[str, Any] | None = None,
    protected: Sequence[Path] = (),
    version_label: str | None = None,
) -> BuildResult:
    """Build ``builder``'s dataset from ``source`` into the folder ``out`` (a Hub dataset repo).

    The build is made by ``builder.variant(options)`` (the builder itself unless its options ask
    for another way, e.g. ``from_release``); ``source=None`` is the folder those options name
    (``source_from_options``). ``llm`` is a :class:`finer_datasets.llm.LLMRun` when model stages
    run; ``options`` are the builder's own options (see its ``add_arguments``); ``command`` is recorded in the card;
    ``protected`` names more input paths that ``out`` must not contain (transcripts, files named
    by options); ``version_label`` makes the version ``<VERSION>+<label>`` (a PEP 440 local
    version: a user's own rebuild, released and tagged under that version). Output safety (lock, staging, atomic replace) is
    :func:`finer_datasets.core.output.staged_output`'s; a build that yields no record, or skips
    more than ``max_skip_rate`` of its elements for defects, fails with :class:`QualityError`
    and replaces nothing.
    """
    if max_samples < 1 or max_bytes < 1:
        raise UsageError("--shard-samples and --shard-bytes must be positive")
    options = dict(options or {})
    builder = builder.variant(options)
    version = labelled_version(builder.version, version_label)
    if not 0.0 <= max_skip_rate <= 1.0:
        raise UsageError(f"--max-skip-rate must be between 0 and 1, got {max_skip_rate}")
    if builder.requires_llm and llm is None:
        raise UsageError(f"{builder.pretty_name} needs a model: pass --llm-base-url and --llm-model, or --replay "
                         "TRANSCRIPT (--sample replays the bundled one by default)")
    source = source if source is not None else builder.source_from_options(options)
    if source is None:
        raise UsageError(f"{builder.pretty_name}: no source folder given")
    source = Path(source)
    if not source.is_dir():
        raise SourceError("source folder not found" if not source.exists() else "source is not a folder", path=source)
    guarded = [source, *protected, *builder.protected_paths(options)]
    with staged_output(Path(out), protected=guarded, overwrite=overwrite) as staging:
        ctx = BuildContext(builder=builder, source=source, seed=seed, llm=llm, options=options, progress=progress,
                           report=BuildReport(strict=strict, root=source, policy=builder.policy_skips))
        result = _build_into(builder, ctx, staging, max_skip_rate=max_skip_rate, max_samples=max_samples,
                             max_bytes=max_bytes, command=command, repo_id=repo_id, version=version)
    result.out = Path(out)
    logger.info("built %s %s into %s", builder.name, result.manifest["version"], out)
    return result


def _image(sample: Sample, source: Path) -> tuple[bytes, str]:
    """The bytes and extension of a sample's image; an image named inside the source must stay there."""
    file, record = sample.origin
    inside = isinstance(sample.image, (str, os.PathLike)) and \
        Path(os.path.abspath(sample.image)).is_relative_to(os.path.abspath(source))  # else a ShardMember
    try:
        data, info = read_image(sample.image, source if inside else None)
    except SourceError as exc:
        raise SourceError(f"image {sample.image}: {exc.reason}", path=file, record=record, field="image") from exc
    except FileNotFoundError as exc:
        raise SourceError(f"image file not found: {sample.image}", path=file, record=record, field="image") from exc
    except OSError as exc:
        raise SourceError(f"cannot read image {sample.image}: {exc.strerror or exc}", path=file, record=record,
                          field="image") from exc
    except ValueError as exc:
        raise SourceError(f"bad image {sample.image}: {exc}", path=file, record=record, field="image") from exc
    return data, info.extension


def _where(sample: Sample, source: Path) -> str:
    """A sample's image file (relative to the source when inside it) and its source record."""
    file, record = sample.origin
    if not isinstance(sample.image, (str, os.PathLike)):  # a ShardMember
        return f"{sample.image} ({Path(str(file)).name} record {record})"
    image = Path(os.path.abspath(sample.image))
    shown = image.relative_to(os.path.abspath(source)) if image.is_relative_to(os.path.abspath(source)) else image
    return f"{shown.as_posix()} ({Path(str(file)).name} record {record})"


class _Keys:
    """The WebDataset keys of one build, checked before a sample is written: unique (two source
    files that give one key are a one-line :class:`SourceError` naming both) and in the shard
    writer's order (plain string order, strictly increasing per split)."""

    def __init__(self, builder: str, source: Path):
        self.builder, self.source = builder, source
        self.seen: dict[str, Sample] = {}
        self.last: dict[str, Sample] = {}

    def check(self, sample: Sample) -> None:
        first = self.seen.get(sample.key)
        if first is not None:
            file, record = sample.origin
            raise SourceError(f"{_where(first, self.source)} and {_where(sample, self.source)} both become WebDataset "
                              f"key {sample.key!r} (rename one of the two files)", path=file, record=record,
                              field="image")
        last = self.last.get(sample.split)
        if last is not None and sample.key < last.key:
            raise FinerError(f"builder {self.builder}: samples must come in increasing key order, got {sample.key!r} "
                             f"({_where(sample, self.source)}) after {last.key!r} ({_where(last, self.source)}); "
                             "sort the units by their key")
        self.seen[sample.key] = self.last[sample.split] = replace(sample, record={})  # (records are not kept)


def _write_samples(builder: DatasetBuilder, units: list[Any], ctx: BuildContext, root: Path, timings: Counter[str],
                   *, max_samples: int, max_bytes: int) -> tuple[dict[str, Any], set[str], int]:
    """The per-unit loop; returns (shards by split, image extensions seen, images written).

    Records are made on this thread; each image is read and fully decoded by a small thread pool
    (Pillow's decoders release the GIL) while the next records are made, and the tar writing runs
    in its own thread: samples are still written strictly in unit order.
    """
    columns: set[str] = set()
    written = 0
    keys = _Keys(builder.name, ctx.source)
    pending: deque[tuple[Sample, Future]] = deque()
    with contextlib.ExitStack() as stack:
        writers = {split: stack.enter_context(ShardWriter(root / "data", split, max_samples=max_samples,
                                                          max_bytes=max_bytes, background=True))
                   for split in builder.splits}
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=_IMAGE_THREADS, thread_name_prefix="finer-image"))

        def flush(keep: int) -> None:
            nonlocal written
            while len(pending) > keep:
                sample, future = pending.popleft()
                t = time.perf_counter()
                data, extension = future.result()
                timings["images (waiting)"] += time.perf_counter() - t
                t = time.perf_counter()
                validate(builder.record_schema, sample.record, key=sample.key)
                timings["validate"] += time.perf_counter() - t
                t = time.perf_counter()
                writers[sample.split].write(sample.key, {extension: data, "json": encode_json(sample.record)})
                timings["write"] += time.perf_counter() - t
                columns.add(extension)
                written += 1

        bar = tqdm(units, desc=f"build {builder.name}", unit="img", disable=None if ctx.progress is None else not ctx.progress)
        for unit in bar:
            t = time.perf_counter()
            sample = builder.make_sample(unit, ctx)
            timings["records"] += time.perf_counter() - t
            if sample is None:
                continue
            if sample.split not in writers:
                raise UsageError(f"builder {builder.name}: sample {sample.key} names split {sample.split!r}, "
                                 f"not one of {builder.splits}")
            keys.check(sample)
            pending.append((sample, pool.submit(_image, sample, ctx.source)))
            flush(keep=2 * _IMAGE_THREADS)
        flush(keep=0)
        t = time.perf_counter()
        shards = {split: writer.close(keep_empty=True) for split, writer in writers.items()}
        timings["write"] += time.perf_counter() - t
    return shards, columns, written


def _nothing_kept(ctx: BuildContext) -> QualityError:
    """The error of a build that ends with no record: an empty source, or (with skips) every
    element of every image failed -- then what happened, with the skips counted by reason."""
    counts = ctx.report.skip_counts()
    if not counts:
        return QualityError(f"the source {ctx.source} holds no records; nothing was written")
    by_count = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda rn: (-rn[1], rn[0])))
    return QualityError(f"the build of {ctx.source} produced no records: no image kept a usable element "
                        f"({sum(counts.values())} skipped: {by_count}); see the log; nothing was written")


def _check_quality(ctx: BuildContext, written: int, max_skip_rate: float) -> None:
    report = ctx.report
    if written == 0:
        raise _nothing_kept(ctx)
    rate = report.defect_rate()
    if rate > max_skip_rate:
        top = ", ".join(f"{r} {n}" for r, n in report.skip_counts().items() if r not in report.policy)
        raise QualityError(f"{100 * rate:.1f}% of {report.considered + report.read_defects} elements were skipped for defects ({top}), "
                           f"more than --max-skip-rate {max_skip_rate}; nothing was written")


def _release_notes(builder: DatasetBuilder, version: str) -> str:
    if version == builder.version:
        return builder.version_notes
    label = version.partition("+")[2]
    return (f"{builder.pretty_name} {version}\n\nA local rebuild of {builder.version} labelled {label!r}, not an official "
            f"release.\n\n{builder.version_notes}")


def _build_into(builder: DatasetBuilder, ctx: BuildContext, root: Path, *, max_skip_rate: float, max_samples: int,
                max_bytes: int, command: Sequence[str] | None, repo_id: str | None, version: str) -> BuildResult:
    timings: Counter[str] = Counter()
    t0 = time.perf_counter()
    units = builder.read_source(ctx.source, ctx)
    ctx.report.end_of_read()
    timings["read_source"] += time.perf_counter() - t0
    if not units:
        raise _nothing_kept(ctx)
    t = time.perf_counter()
    builder.prepare(units, ctx)
    timings["prepare"] += time.perf_counter() - t

    shards, columns, written = _write_samples(builder, units, ctx, root, timings, max_samples=max_samples,
                                              max_bytes=max_bytes)
    _check_quality(ctx, written, max_skip_rate)

    t = time.perf_counter()
    (root / REPORT).write_text(json.dumps(ctx.report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    llm_block = None
    if ctx.llm is not None:
        entries = ctx.llm.store.export(ctx.llm.used_keys(), root / TRANSCRIPT)
        llm_block = ctx.llm.manifest(entries)
        logger.info("LLM usage %s; on the wire this run: %s", llm_block["usage"], ctx.llm.live())
    samples = {split: sum(s.samples for s in shards[split]) for split in builder.splits}
    counts = {"images": written, "samples": samples, "skips": ctx.report.skip_counts(),
              "fixes": dict(sorted(ctx.report.fixes.items())), **builder.counts(ctx)}
    files = [file_entry(root, REPORT)] + ([file_entry(root, TRANSCRIPT)] if llm_block is not None else [])
    for split in builder.splits:
        files += [{"path": f"data/{s.path}", "sha256": s.sha256, "size": s.size, "samples": s.samples, "split": split}
                  for s in shards[split]]
    manifest = {
        "dataset": builder.name,
        "pretty_name": builder.pretty_name,
        "version": version,
        "release_notes": _release_notes(builder, version),
        "builder": {"name": builder.name, "package_version": __version__, "strict": ctx.report.strict,
                    "max_skip_rate": max_skip_rate, "options": builder.recorded_options(ctx.options)},
        "seed": ctx.seed,
        "layout": "per-image/1",
        "record_schema": Path(builder.record_schema).name,
        "sources": [fingerprint_files(name, ctx.source, paths) for name, paths in builder.source_files(ctx.source)],
        "counts": counts,
        "provenance": builder.provenance(ctx),
        "llm": llm_block,
    }
    manifest["data_digest"] = data_digest(files)
    shard_bytes = {split: sum(s.size for s in shards[split]) for split in builder.splits}
    card = _card(builder, ctx, manifest, tuple(sorted(columns)) or ("jpg",), shard_bytes, command, repo_id,
                 shard_counts={split: len(shards[split]) for split in builder.splits})
    (root / CARD).write_text(card, encoding="utf-8")
    files.append(file_entry(root, CARD))
    manifest["files"] = sorted(files, key=lambda f: f["path"])
    manifest = write_manifest(root, manifest)
    timings["finish"] += time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return BuildResult(out=root, manifest=manifest, report=ctx.report, timings=dict(timings))


def _card(builder: DatasetBuilder, ctx: BuildContext, manifest: dict[str, Any], columns: tuple[str, ...],
          shard_bytes: dict[str, int], command: Sequence[str] | None, repo_id: str | None,
          shard_counts: dict[str, int]) -> str:
    counts = manifest["counts"]
    size = counts.get("records", sum(counts["samples"].values()))
    metadata = card_metadata(pretty_name=builder.pretty_name, license=builder.license,
                             record_schema=builder.record_schema, image_columns=columns, samples=counts["samples"],
                             shard_bytes=shard_bytes, size=size, task_categories=builder.task_categories,
                             tags=builder.tags, version=manifest["version"], data_digest=manifest.get("data_digest"))
    skips = ", ".join(f"{reason} {n}" for reason, n in counts["skips"].items()) or "none"
    values = {
        "pretty_name": builder.pretty_name,
        "version": manifest["version"],
        "builder": builder.name,
        "package_version": __version__,
        "seed": ctx.seed,
        "repo_id": repo_id or f"finer/{builder.name}",
        "tag": f"v{manifest['version']}",
        "images": counts["images"],
        "splits": ", ".join(f"`{s}` ({n} images)" for s, n in counts["samples"].items()),
        "image_column": columns[0],
        "record_schema": schema_name(builder.record_schema),
        "skips": skips,
        "command": " ".join(command) if command else f"finer build {builder.name} --source <SOURCE> --out <OUT> --seed {ctx.seed}",
        "models": ctx.llm.card_text() if ctx.llm is not None else "none",
        "transcript": ctx.llm.transcript_text() if ctx.llm is not None else "none (no model calls)",
        "license_text": builder.license_text,
        # the shards of each split as one brace pattern: ${shards_test} = test-{00000..00003}.tar
        **{f"shards_{split}": shard_pattern(split, n) for split, n in shard_counts.items()},
        "release_notes": builder.release_notes.strip(),
        **builder.card_values(ctx, manifest),
    }
    return render_card(builder.card_template, metadata, values, name=str(builder.card_path()))
