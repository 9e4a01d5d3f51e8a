"""The values of FINER-Tuning's card (``hub_cards/tuning.md``) beyond the core's, from the manifest."""

from __future__ import annotations

from typing import Any

__all__ = ["card_values"]

_TYPES = {"obj": "Obj (multi-object)", "attr": "Attr (multi-attribute)", "rel": "Rel (multi-relation)", "wh": "Wh"}


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
            "leakage": leak}
