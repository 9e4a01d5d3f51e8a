"""The shared build pipeline: source -> scene graphs -> negatives -> MCQ pairs -> validated shards.

Everything is written into a temporary sibling of the output folder, which is renamed into place
only when the build succeeded: a failed build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from ._errors import FinerError, SourceError
from ._images import inspect_image
from ._schemas import validate
from ._version import __version__
from .builder import BuildReport, DatasetBuilder, SourceImage
from .card import LICENSE_TEXT, card_metadata, render_card
from .manifest import file_entry, fingerprint_files, write_manifest
from .negatives import LexicalNegatives, NegativesProvider, PrecomputedNegatives
from .pairs import SETTINGS, pairs_for_image
from .shards import ShardInfo, ShardWriter, encode_json

__all__ = ["BuildResult", "build", "DEFAULT_MAX_SAMPLES", "DEFAULT_MAX_BYTES"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SAMPLES = 10_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
SCENE_GRAPHS = "scene_graphs.jsonl"
REPORT = "build_report.json"
TRANSCRIPT = "transcript.jsonl"
CARD = "README.md"


@dataclass
class BuildResult:
    """What :func:`build` produced."""

    out: Path
    manifest: dict[str, Any]
    report: BuildReport
    timings: dict[str, float] = field(default_factory=dict)


def _provider(negatives: NegativesProvider | str | Path | None) -> NegativesProvider:
    if negatives is None:
        return LexicalNegatives()
    if isinstance(negatives, (str, Path)):
        return PrecomputedNegatives(negatives)
    return negatives


def build(
    builder: DatasetBuilder,
    *,
    source: str | Path,
    out: str | Path,
    seed: int = 0,
    negatives: NegativesProvider | str | Path | None = None,
    strict: bool = False,
    overwrite: bool = False,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    command: Sequence[str] | None = None,
    repo_id: str | None = None,
    progress: bool | None = None,
    llm: Any = None,
) -> BuildResult:
    """Build ``builder``'s dataset from ``source`` into the folder ``out`` (a Hub dataset repo).

    ``negatives`` is a provider, a path to a ``finer-negatives/1`` file, or ``None`` for the
    offline lexical generator (or the LLM, when ``llm`` is given). ``llm`` is an
    :class:`finer_datasets.llm.LLMRun`: its stages rewrite attributes, propose (and filter)
    negatives and write Wh questions, and the answers it used are exported as
    ``transcript.jsonl``. ``command`` is recorded in the card as the command that built it.
    """
    source, out = Path(source), Path(out)
    if out.exists() and not overwrite:
        raise FinerError(f"output folder {out} already exists (pass overwrite=True / --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is a normal folder
    try:
        if negatives is None and llm is not None and llm.negatives is not None:
            provider: NegativesProvider = llm.negatives
        else:
            provider = _provider(negatives)
        result = _build_into(
            builder, source, tmp, seed=seed, provider=provider, strict=strict, max_samples=max_samples,
            max_bytes=max_bytes, command=command, repo_id=repo_id, progress=progress, llm=llm,
        )
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old / "previous")
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.out = out
    logger.info("built %s %s into %s", builder.name, result.manifest["version"], out)
    return result


def _read_image(image: SourceImage) -> tuple[bytes, str]:
    try:
        data = image.path.read_bytes()
    except FileNotFoundError as exc:
        raise SourceError(f"image file not found: {image.path}", path=image.annotation_file, record=image.image_id, field="image") from exc
    except OSError as exc:
        raise SourceError(f"cannot read image {image.path}: {exc.strerror}", path=image.annotation_file, record=image.image_id, field="image") from exc
    try:
        info = inspect_image(data, image.path.suffix)
    except ValueError as exc:
        raise SourceError(f"corrupt image {image.path}: {exc}", path=image.annotation_file, record=image.image_id, field="image") from exc
    return data, info.extension


@dataclass
class _Tally:
    """What the per-image loop accumulates."""

    pairs_by_k: dict[str, Counter[int]] = field(default_factory=lambda: {s: Counter() for s in SETTINGS})
    image_columns: set[str] = field(default_factory=set)
    graph_lines: list[bytes] = field(default_factory=list)
    objects: int = 0
    attributes: int = 0
    relations: int = 0


def _write_image(
    builder: DatasetBuilder,
    image: SourceImage,
    writers: dict[str, ShardWriter],
    tally: _Tally,
    *,
    seed: int,
    provider: NegativesProvider,
    report: BuildReport,
    timings: Counter[str],
    wh_templates: dict | None = None,
) -> None:
    """Negatives, pairs, validation and shard writing for one image."""
    t = time.perf_counter()
    data, extension = _read_image(image)
    tally.image_columns.add(extension)
    timings["images"] += time.perf_counter() - t

    t = time.perf_counter()
    graph = image.graph
    negs = provider.negatives_for(graph, random.Random(f"{seed}:negatives:{image.image_id}"))
    for kind, element_id, text in graph.elements():
        if element_id not in negs:
            report.skip("no_negatives", path=image.annotation_file, record=image.image_id, field=element_id,
                        detail=f"{kind} {text!r}")
    timings["negatives"] += time.perf_counter() - t

    t = time.perf_counter()
    pairs, skipped = pairs_for_image(graph, negs, seed=seed, key=image.key, limits=builder.limits,
                                     wh_templates=wh_templates)
    for reason, detail in skipped:
        report.skip(reason, path=image.annotation_file, record=image.image_id, detail=detail)
    records = [
        pair.to_record(dataset=builder.dataset_field, image_id=image.image_id, image_file=graph.image_file)
        for pair in pairs
    ]
    sg = graph.to_dict(negs)
    timings["pairs"] += time.perf_counter() - t

    t = time.perf_counter()
    for record in records:
        validate("mcq_pair", record, key=record["pair_id"])
    validate("scene_graph", sg, key=image.image_id)
    timings["validate"] += time.perf_counter() - t

    t = time.perf_counter()
    for pair, record in zip(pairs, records):
        writers[pair.setting].write(pair.pair_id, {extension: data, "json": encode_json(record)})
        tally.pairs_by_k[pair.setting][pair.k] += 1
    tally.graph_lines.append(encode_json(sg))
    timings["write"] += time.perf_counter() - t
    tally.objects += len(graph.objects)
    tally.attributes += sum(len(o.attributes) for o in graph.objects)
    tally.relations += len(graph.relations)


def _build_into(
    builder: DatasetBuilder,
    source: Path,
    root: Path,
    *,
    seed: int,
    provider: NegativesProvider,
    strict: bool,
    max_samples: int,
    max_bytes: int,
    command: Sequence[str] | None,
    repo_id: str | None,
    progress: bool | None,
    llm: Any,
) -> BuildResult:
    timings: Counter[str] = Counter()
    t0 = time.perf_counter()
    report = BuildReport(strict=strict, root=source)
    images = builder.read_source(source, report, rewriter=llm.rewriter if llm is not None else None)
    timings["read_source"] += time.perf_counter() - t0
    t = time.perf_counter()
    prepare = getattr(provider, "prepare", None)
    if prepare is not None:  # e.g. LLM negatives: all prompts at once, before the per-image loop
        prepare(images)
    wh_templates = {}
    if llm is not None and llm.wh is not None:
        llm.wh.prepare(images)
        wh_templates = {image.image_id: llm.wh.for_image(image.image_id) for image in images}
    timings["llm"] += time.perf_counter() - t

    tally = _Tally()
    with contextlib.ExitStack() as stack:
        writers = {
            s: stack.enter_context(
                ShardWriter(root / "data", s, max_samples=max_samples, max_bytes=max_bytes, background=True)
            )
            for s in SETTINGS
        }
        for image in tqdm(images, desc=f"build {builder.name}", unit="img", disable=None if progress is None else not progress):
            _write_image(builder, image, writers, tally, seed=seed, provider=provider, report=report, timings=timings,
                         wh_templates=wh_templates.get(image.image_id))
        t = time.perf_counter()
        # an empty split still gets one (empty) shard, so every configured split loads
        shards = {setting: writer.close(keep_empty=True) for setting, writer in writers.items()}
        timings["write"] += time.perf_counter() - t

    t = time.perf_counter()
    graph_lines, pairs_by_k = tally.graph_lines, tally.pairs_by_k
    (root / SCENE_GRAPHS).write_bytes(b"\n".join(graph_lines) + (b"\n" if graph_lines else b""))
    report_doc = {"skips": report.skip_counts(), "fixes": dict(sorted(report.fixes.items())), "skipped": report.skips}
    (root / REPORT).write_text(json.dumps(report_doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    llm_block = None
    if llm is not None:
        entries = llm.store.export(llm.used_keys(), root / TRANSCRIPT)
        llm_block = llm.manifest(entries)
        logger.info("LLM usage %s; on the wire this run: %s", llm_block["usage"], llm.live())
    timings["write"] += time.perf_counter() - t

    pairs = {s: sum(pairs_by_k[s].values()) for s in SETTINGS}
    counts = {
        "images": len(images),
        "objects": tally.objects,
        "attributes": tally.attributes,
        "relations": tally.relations,
        "pairs": pairs,
        "pairs_by_k": {s: {str(k): n for k, n in sorted(pairs_by_k[s].items())} for s in SETTINGS},
        "skips": report.skip_counts(),
        "fixes": dict(sorted(report.fixes.items())),
    }
    t = time.perf_counter()
    columns = tuple(sorted(tally.image_columns)) or ("jpg",)
    shard_bytes = {s: sum(shard.size for shard in shards[s]) for s in SETTINGS}
    card = _card(builder, counts, columns, shard_bytes, seed, provider, command, repo_id, llm_block)
    (root / CARD).write_text(card, encoding="utf-8")
    timings["card"] += time.perf_counter() - t

    t = time.perf_counter()
    files = [file_entry(root, CARD), file_entry(root, REPORT), file_entry(root, SCENE_GRAPHS)]
    if llm_block is not None:
        files.append(file_entry(root, TRANSCRIPT))
    for setting in SETTINGS:
        for shard in shards[setting]:
            files.append({"path": f"data/{shard.path}", "sha256": shard.sha256, "size": shard.size,
                          "samples": shard.samples, "setting": setting})
    manifest = {
        "format": "finer-manifest/1",
        "dataset": builder.name,
        "pretty_name": builder.pretty_name,
        "version": builder.version,
        "release_notes": builder.version_notes,
        "builder": {"name": builder.name, "package_version": __version__, "strict": strict},
        "seed": seed,
        "negatives": {"kind": provider.kind, "fingerprint": provider.fingerprint()},
        "sources": [fingerprint_files(name, source, paths) for name, paths in builder.source_files(source)],
        "counts": counts,
        "llm": llm_block,
        "files": sorted(files, key=lambda f: f["path"]),
    }
    write_manifest(root, manifest)
    timings["manifest"] += time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return BuildResult(out=root, manifest=manifest, report=report, timings=dict(timings))


def _models_text(provider: NegativesProvider, llm_block: dict[str, Any] | None) -> str:
    if llm_block is None:
        return ("none: attributes rewritten and relations parsed by rules, negatives from the offline lexical generator"
                if provider.kind == "lexical" else "none; negatives from a precomputed file (see its fingerprint)")
    stages = {"negatives": "negatives", "rewrite": "attribute rewriting", "wh": "Wh questions"}
    text = f"LLM `{llm_block['model']}` ({', '.join(stages[s] for s in llm_block['stages'])})"
    if llm_block["mllm"]:
        text += f"; MLLM discriminator `{llm_block['mllm']['model']}` ({llm_block['mllm']['kind']})"
    filt = llm_block.get("entropy_filter")
    if filt:
        rows = "\n".join(
            f"  | {level} | {v['theta']} | {v['count']} | {v['regenerated']} | "
            f"{'-' if v['discriminator_accuracy'] is None else v['discriminator_accuracy']} |"
            for level, v in filt["levels"].items())
        text += ("\n\n  Entropy filter (up to " + str(filt["rounds"]) + " rounds; cf. Tables 7 and 8 of the paper):\n\n"
                 "  | level | θ | count | regenerated | discriminator accuracy (%) |\n  |---|---|---|---|---|\n" + rows)
    usage = llm_block["usage"]
    text += (f"\n\n  Usage: {usage['requests']} requests, {usage['unique_prompts']} unique prompts, "
             f"{usage['cache_hits']} cache hits, {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens")
    return text


def _transcript_text(llm_block: dict[str, Any] | None) -> str:
    if llm_block is None:
        return "none (no LLM calls)"
    return (f"`transcript.jsonl` ({llm_block['transcript']['entries']} entries: every model answer this build used, "
            "keyed by sha256 of backend, model, prompt and parameters); "
            "`finer build ... --replay transcript.jsonl` rebuilds this folder byte for byte with no model access")


def _card(
    builder: DatasetBuilder,
    counts: dict[str, Any],
    image_columns: tuple[str, ...],
    shard_bytes: dict[str, int],
    seed: int,
    provider: NegativesProvider,
    command: Sequence[str] | None,
    repo_id: str | None,
    llm_block: dict[str, Any] | None = None,
) -> str:
    rows = []
    for setting in SETTINGS:
        by_k = counts["pairs_by_k"][setting]
        ks = sorted(int(k) for k in by_k)
        k_range = f"({ks[0]},{ks[-1]})" if ks and setting != "wh" else "-"
        per_k = ", ".join(str(by_k[str(k)]) for k in ks) if setting != "wh" else str(counts["pairs"][setting])
        rows.append(f"| `{setting}` | {k_range} | {per_k or '-'} | {counts['pairs'][setting]} |")
    skips = ", ".join(f"{reason} {n}" for reason, n in counts["skips"].items()) or "none"
    total = sum(counts["pairs"].values())
    metadata = card_metadata(
        pretty_name=builder.pretty_name, license=builder.license, image_columns=image_columns, pairs=counts["pairs"],
        shard_bytes=shard_bytes,
    )
    values = {
        "pretty_name": builder.pretty_name,
        "version": builder.version,
        "builder": builder.name,
        "package_version": __version__,
        "seed": seed,
        "negatives": {"lexical": "offline lexical generator (bundled vocabularies)", "file": "precomputed negatives file",
                      "llm": "generated by the LLM (see How it was built)"}.get(
            provider.kind, provider.kind
        ) + f" (fingerprint `{provider.fingerprint()[:12]}`)",
        "total_pairs": total,
        "total_questions": 2 * total,
        "images": counts["images"],
        "repo_id": repo_id or f"finer/{builder.name}",
        "tag": f"v{builder.version}",
        "models": _models_text(provider, llm_block),
        "transcript": _transcript_text(llm_block),
        "negatives_fingerprint": provider.fingerprint(),
        "image_column": image_columns[0],
        "stats_rows": "\n".join(rows),
        "objects": counts["objects"],
        "attributes": counts["attributes"],
        "relations": counts["relations"],
        "skips": skips,
        "command": " ".join(command) if command else f"finer build {builder.name} --source <SOURCE> --out <OUT> --seed {seed}",
        "license_text": LICENSE_TEXT.get(builder.name, builder.license),
        "release_notes": builder.release_notes.strip(),
    }
    return render_card(builder.card_template, metadata, values)
