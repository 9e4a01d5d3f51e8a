"""The FINER-DOCCI specific parts of the card: extraction counts and the entropy filter beside the paper's
(the pairs per setting and k beside Table 9 are :mod:`finer_datasets.mcq.paper`'s, shared with CompreCap)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["docci_card_values"]


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


_EXTRACTION_ROWS = (
    ("captions read (chosen split, usable)", "captions"),
    ("stage 1: answers unusable (image skipped)", "extraction_failed"),
    ("stage 1: images without any object (skipped)", "images_without_objects"),
    ("stage 1: objects kept", "objects"),
    ("stage 1: attributes kept", "attributes"),
    ("stage 1: object names not in the caption (dropped)", "dropped_objects"),
    ("stage 1: attributes not in the caption (dropped)", "dropped_attributes"),
    ("stage 1: objects beyond the per-image limit", "objects_over_limit"),
    ("stage 2: object pairs asked", "relation_pairs_asked"),
    ("stage 2: co-mentioned pairs left out by the bound", "relation_pairs_over_bound"),
    ("stage 2: no relation stated", "relations_none"),
    ("stage 2: phrase not in the caption (dropped)", "relations_not_in_caption"),
    ("stage 2: answers unusable", "relation_answers_unusable"),
    ("stage 2: repeated relations", "relations_duplicate"),
    ("stage 2: relations found", "relations_found"),
    ("validation: relations checked", "relations_validated"),
    ("validation: LLM disagreed (or no answer)", "validation_llm_disagreed"),
    ("validation: MLLM disagreed", "validation_mllm_disagreed"),
    ("validation: MLLM vote missing", "validation_mllm_missing"),
    ("validation: **discarded** (both disagreed)", "relations_discarded"),
    ("relations kept", "relations_kept"),
)


def _extraction_rows(extraction: dict[str, int]) -> str:
    return "\n".join(f"| {label} | {_n(extraction.get(key, 0))} |" for label, key in _EXTRACTION_ROWS)


def _filter_rows(manifest: dict[str, Any], levels: Sequence[tuple[str, str, int]]) -> str:
    llm = manifest.get("llm") or {}
    ours = ((llm.get("entropy_filter") or {}).get("levels")) or {}
    paper_counts = manifest["counts"]["paper"]["scene_graph"]
    rows = []
    for level, short, paper_regen in levels:
        mine = ours.get(level) or {}
        paper_count = paper_counts[f"{level}s"]
        theta = mine.get("theta", "-")
        rows.append(f"| {short} | {theta} | {_n(mine.get('count', '-'))} | {_n(mine.get('regenerated', '-'))} | "
                    f"{_n(paper_count)} | {_n(paper_regen)} |")
    return "\n".join(rows)


def docci_card_values(manifest: dict[str, Any], levels: Sequence[tuple[str, str, int]]) -> dict[str, Any]:
    """``$placeholders`` of ``hub_cards/docci.md`` only FINER-DOCCI has."""
    counts = manifest["counts"]
    docci = manifest["provenance"]["docci"]
    extraction = manifest["provenance"]["extraction"]
    skipped = ", ".join(f"{split} {n:,}" for split, n in docci["skipped_lines_by_split"].items()) or "none"
    lines = ", ".join(f"{split} {n:,}" for split, n in docci["lines_by_split"].items())
    return {
        "docci_split": docci["split"],
        "docci_lines": lines,
        "docci_skipped": skipped,
        "extraction_rows": _extraction_rows(counts["extraction"]),
        "filter_rows": _filter_rows(manifest, levels),
        "validation_mllm": f"`{extraction['validation_mllm']}`" if extraction["validation_mllm"] else
                           "none (no MLLM in this build: the LLM's vote alone decided)",
        "max_relation_pairs": extraction["max_relation_pairs"],
        "max_objects": extraction["max_objects"],
        "relations_discarded": _n(counts["extraction"].get("relations_discarded", 0)),
        "total_mcqs": _n(sum(counts["mcqs"].values())),
    }
