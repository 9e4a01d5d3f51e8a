"""The FINER vocabulary every layer shares, defined once.

``SETTINGS`` are the four benchmark settings in the paper's order; ``SETTING_ALIASES`` maps the
names of FINER's official release (``multi_object`` ...) and hyphenated spellings to ours, so a
setting can be named either way wherever one is named (:func:`canonical_setting`).
"""

from __future__ import annotations

from typing import Iterable

from finer_datasets.errors import UsageError

__all__ = ["LETTERS", "SETTINGS", "SETTING_ALIASES", "NEGATIVES_PER_ELEMENT", "canonical_setting",
           "canonical_settings"]

#: option letters of every FINER multiple-choice question, in display order
LETTERS = "ABCDE"
#: the benchmark settings (paper, section 2.2), in the order of Table 1
SETTINGS = ("multi_obj", "multi_attr", "multi_rel", "wh")
#: negatives per scene-graph element (paper, section B.3)
NEGATIVES_PER_ELEMENT = 4

SETTING_ALIASES = {
    "multi_object": "multi_obj",
    "multi_attribute": "multi_attr",
    "multi_relation": "multi_rel",
    "multi-obj": "multi_obj",
    "multi-attr": "multi_attr",
    "multi-rel": "multi_rel",
    "multi-object": "multi_obj",
    "multi-attribute": "multi_attr",
    "multi-relation": "multi_rel",
    "what": "wh",
}


def canonical_setting(name: str, *, option: str = "setting") -> str:
    """``multi_object`` / ``multi-obj`` / ``multi_obj`` -> ``multi_obj``; anything else is a
    :class:`~finer_datasets.errors.UsageError` naming the option and the valid names."""
    key = str(name).strip().lower()
    key = SETTING_ALIASES.get(key, key)
    if key not in SETTINGS:
        official = ", ".join(a for a in SETTING_ALIASES if "_" in a and a.startswith("multi"))
        raise UsageError(f"--{option} {name!r} is not a FINER setting; use one of {', '.join(SETTINGS)} "
                         f"(or the official names {official})")
    return key


def canonical_settings(names: Iterable[str] | str | None, *, option: str = "setting") -> tuple[str, ...]:
    """Every name through :func:`canonical_setting`, duplicates dropped, in ``SETTINGS`` order;
    ``None`` (or empty) means all settings."""
    if names is None:
        return SETTINGS
    if isinstance(names, str):
        names = [names]
    chosen = {canonical_setting(n, option=option) for n in names}
    return tuple(s for s in SETTINGS if s in chosen) or SETTINGS
