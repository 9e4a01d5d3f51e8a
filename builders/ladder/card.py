"""The FINER-Ladder card's tables: sources, pairs per level, and one image's seven queries."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

__all__ = ["card_values"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def card_values(stats: Mapping[str, Any], manifest: Mapping[str, Any], forms: Sequence[str],
                levels: Sequence[tuple[int, str, str, str]], setting: Callable[[str, str], str]) -> dict[str, Any]:
    """Values of the ``$placeholders`` of ``hub_cards/ladder.md`` beyond the core's."""
    counts = manifest["counts"]
    sources = stats.get("sources", {})
    source_rows = [f"| {info['pretty_name']} {info['version']} (`{name}`, folder `{info['label']}`) | {info['images']} | "
                   f"{info['with_ladder']} | {info['draw']} | {info['drawn']} |" for name, info in sources.items()]
    level_rows = []
    for level, adds, kind, contradiction in levels:
        cells = [str(counts["pairs_by_level"].get(setting(form, name), {}).get(str(level), 0))
                 for name in sources for form in forms]
        level_rows.append(f"| {level} | {adds} ({kind}) | {contradiction} | " + " | ".join(cells) + " |")
    columns = [f"`{setting(form, name)}`" for name in sources for form in forms]
    example = stats.get("example")
    example_rows = []
    if example is not None:
        yesno = [p for p in example["pairs"] if p["form"] == "yesno"]
        for pair in sorted(yesno, key=lambda p: p["level"]):
            negated = pair["negated"]
            example_rows.append(f"| {pair['level']} | {pair['contradiction']} | {_cell(pair['positive']['question'])} | "
                                f"{_cell(pair['negative']['question'])} | {_cell(negated['positive'])} → "
                                f"{_cell(negated['negative'])} |")
    total = counts["records"]
    return {
        "total_pairs": total,
        "total_questions": 2 * total,
        "draw": manifest["builder"]["options"].get("draw", ""),
        "source_rows": "\n".join(source_rows),
        "level_header": " | ".join(columns),
        "level_align": "|".join("---:" for _ in columns),
        "level_rows": "\n".join(level_rows),
        "example_image": f"`{example['image_id']}` of {example['source']['dataset']}" if example else "none",
        "example_rows": "\n".join(example_rows) or "| – | – | – | – | – |",
    }
