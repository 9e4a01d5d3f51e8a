"""The values of FINER-Tuning's card (``hub_cards/tuning.md``) beyond the core's, from the manifest."""

from __future__ import annotations

from typing import Any

from finer_datasets.preference.configs import PAPER_CANDIDATES, PAPER_SHARDS, PAPER_SIZES, PRESETS, short_text

from .category import CATEGORIES, PAPER_SHARES

__all__ = ["card_values"]

_TYPES = {"obj": "Obj (multi-object)", "attr": "Attr (multi-attribute)", "rel": "Rel (multi-relation)", "wh": "Wh"}
_TEMPLATES = {
    "paper": "the paper's five (appendix G: \"Does this image contain {X}?\", \"Does this image show {X}?\", "
             "\"Does this image include {X}?\", \"Can you see {X} in this image?\", \"Can {X} be seen in this image?\"; "
             "answers \"Yes, ... {Y} ...\" / \"No, but ... {Z} ...\"), shared by Obj, Attr and Rel, one drawn per tuple "
             "(seeded); the record's `template` is its number 1-5",
    "ours": "**our own fifteen** (`--templates ours`: five per type, none of them the paper's), one drawn per tuple "
            "(seeded); the record's `template` is its number 1-5 in `finer_datasets.preference.templates`",
}


def _size(s: dict[str, Any], target: dict[str, Any] | None, provenance: dict[str, Any]) -> str:
    if "part" in provenance:
        return "decided when `finer merge` joins the parts (the cap and the target apply to the whole build)"
    preset = PRESETS.get(s["preset"])
    custom = preset is None or preset.to_dict() != {k: s[k] for k in ("types", "queries", "sampling", "max_tuples")}
    paper = ("a custom selection (the preset's types, queries, sampling or cap were overridden)" if custom
             else PAPER_SIZES[s["preset"]])
    shards = (f"; at the paper's yield (about {PAPER_CANDIDATES:,} candidates from its first {PAPER_SHARDS} Pixmo-cap "
              f"shards, appendix C) this selection needs {s['shards_at_paper_yield']} shards")
    if target is None:
        return f"no target (no cap); the paper: {paper}"
    measured = (f"{target['selectable']:,} selectable tuples from {target['shards_read']:g} source shard(s) "
                f"({target['tuples_per_shard']:,g} per shard)")
    if target["reached"]:
        head = f"the {target['tuples']:,}-tuple target is reached ({measured})"
    else:
        head = f"**short of the target**: {short_text(target)}"
    return f"{head}. The paper: {paper}{shards if not custom else ''}"


def _categories(counts: dict[str, Any]) -> str:
    found = counts.get("image_category")
    if found is None:
        return ("off, as in the paper's release (appendix E.2: filtering to natural images made almost no difference, "
                "Table 12, so every image is kept)")
    total = sum(found["classes"].values())
    shares = ", ".join(f"{c} {found['classes'][c]:,} ({100 * found['classes'][c] / total if total else 0:.1f}%; "
                       f"paper {PAPER_SHARES[c]}%)" for c in CATEGORIES)
    return (f"**on** (`--image-category {','.join(found['kept'])}`, appendix E.2): the LLM sorted {total:,} captions: "
            f"{shares}; {found['unusable']} without a usable answer. Kept: {', '.join(found['kept'])} "
            f"({found['rows_kept']:,} rows went on to the image download)")


def _differences(manifest: dict[str, Any]) -> str:
    counts, provenance = manifest["counts"], manifest["provenance"]
    s, fetch = provenance["selection"], counts["fetch"]
    model = (manifest.get("llm") or {}).get("model", "none")
    out = [
        f"- **LLM**: `{model}` wrote the phrases, negatives and Wh pairs; the paper used Phi-4-14B (section 3). "
        "The prompts are ours (`prompts/` of the builder, JSON answers checked and re-asked), not the paper's "
        "figures 16-23.",
        "- **Phrases**: the LLM lists the caption's objects with their attributes and relations, and seeded code "
        "composes Ψ+ from them (2-4 objects; 1-3 attributes of one object; 1-2 relations of one object) and picks "
        "the instance to replace; in the paper the LLM writes each phrase (appendix G, figures 16-18).",
        f"- **Images**: Pixmo-cap lists image URLs, some of them dead by now: {fetch['dead']:,} of {fetch['urls']:,} "
        f"({100 * fetch['dead_rate']:.1f}%) gave no usable image here, and their rows give no tuples. The paper "
        f"had about {PAPER_CANDIDATES:,} candidates from {PAPER_SHARDS} shards (appendix C); this build has "
        f"{counts['tuples']['candidates']:,}.",
        "- **Captions**: the LLM sees the first 512 words of a caption (the paper: the first 512 tokens of its LLM).",
        "- **Negative queries**: the chosen answer is \"No, but ... Ψ+\" (names what the image shows) and the "
        "rejected one \"Yes, ... Ψ−\", as section 3 and the benchmarks' MCQs (appendix B.4) define them; appendix "
        "G's text for that configuration ({Y} = Ψ+, {Z} = Ψ−) would have the chosen answer name Ψ−.",
        "- **Leakage guard**: the paper excludes COCO and DOCCI-train images without saying how; here by URL "
        "pattern and an optional sha256 list (above).",
    ]
    if s["templates"] != "paper":
        out.append(f"- **Templates**: `{s['templates']}`, not the paper's five (appendix G).")
    if counts.get("image_category") is not None:
        out.append("- **Image categories**: filtered (appendix E.2's Table 12 ablation); the paper's release keeps "
                   "every image, and its classes came from Phi-4-14B.")
    target = counts["tuples"].get("target")
    if target is not None and not target["reached"]:
        out.append(f"- **Size**: {target['selectable']:,} tuples, short of the {target['tuples']:,} the paper "
                   "trained on (see Size above).")
    return "\n".join(out)


def card_values(manifest: dict[str, Any]) -> dict[str, Any]:
    counts, provenance = manifest["counts"], manifest["provenance"]
    tuples, fetch, leakage = counts["tuples"], counts["fetch"], counts["leakage"]
    s = provenance["selection"]
    cap = f"at most {s['max_tuples']:,} tuples (uniform, seeded)" if s["max_tuples"] else "no cap"
    selection = (f"preset `{s['preset']}`: types {', '.join(s['types'])}; queries {', '.join(s['queries'])}; "
                 f"sampling `{s['sampling']}`; {cap}; validation ratio {s['validation_ratio']}")
    if "part" in provenance:
        selection += (f". **This folder is part {provenance['part']} of a build split over machines**: the cap "
                      "applies when `finer merge` joins the parts")
    rows = []
    for kind, label in _TYPES.items():
        if kind in s["types"]:
            n = tuples["by_type"][kind]
            rows.append(f"| {label} | {n['positive'] + n['negative']} | {n['positive']} | {n['negative']} |")
    rows.append(f"| all | {tuples['selected']} | {tuples['by_query']['positive']} | {tuples['by_query']['negative']} |")
    files = provenance["source_files"]
    source = (f"{len(files)} Parquet file(s), {counts['rows']['read']:,} rows read, {counts['rows']['usable']:,} usable "
              f"(" + ", ".join(f"`{f['file']}`: {f['images_used']} images used" for f in files) + ")")
    reasons = ", ".join(f"{r} {n}" for r, n in fetch["dead_reasons"].items()) or "none"
    fetched = (f"{fetch['usable']:,} of {fetch['urls']:,} URLs gave a usable image; {fetch['dead']:,} dead "
               f"({100 * fetch['dead_rate']:.1f}%: {reasons})")
    guard = provenance["leakage_guard"]
    hashes = guard["exclusion_list"]
    listed = (f"an exclusion list of {hashes['hashes']:,} sha256 hashes (list sha256 `{hashes['sha256'][:12]}`) "
              f"removed {leakage['sha256']} downloaded image(s)" if hashes["sha256"]
              else "no sha256 exclusion list was given (`--exclude-sha256`), so only URLs were checked")
    leak = (f"{leakage['url_pattern']} row(s) with a COCO or DOCCI image URL were excluded (patterns in "
            f"`manifest.json`, provenance.leakage_guard); {listed}")
    return {"tuples_selected": f"{tuples['selected']:,}", "tuples_candidates": f"{tuples['candidates']:,}",
            "selection": selection, "tuples_rows": "\n".join(rows), "source_files": source, "fetch": fetched,
            "leakage": leak, "templates": _TEMPLATES[s["templates"]], "size": _size(s, tuples.get("target"), provenance),
            "image_category": _categories(counts), "differences": _differences(manifest)}
